// Test-only helpers shared by this library's specs (excluded from the build by tsconfig).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { type CertifiedKey, createIntermediateCa, createRootCa, type WorkloadIdentity } from './index';

export const TD = 'novamesh.local';
export const PAYMENT: WorkloadIdentity = { trustDomain: TD, namespace: 'shop', service: 'payment' };
export const PAYMENT_ID = 'spiffe://novamesh.local/ns/shop/svc/payment';

/** Runs openssl(1) and returns what it said; never throws on a non-zero exit. */
export function openssl(args: string[], opts: { cwd?: string; input?: string } = {}): { code: number; out: string } {
  const r = spawnSync('openssl', args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A fresh temp dir, removed after the spec file. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'novamesh-ca-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `files` (name → text) into `dir`; returns dir. */
export function put(dir: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

export interface TestCa {
  root: CertifiedKey;
  intermediate: CertifiedKey;
  chainPems: string[];
}

export async function testCa(trustDomain = TD, now?: number): Promise<TestCa> {
  const root = await createRootCa({ trustDomain, now });
  const intermediate = await createIntermediateCa({ root, trustDomain, now });
  return { root, intermediate, chainPems: [intermediate.certPem, root.certPem] };
}

/** notBefore / notAfter as openssl prints them, as epoch ms. */
export function opensslDates(dir: string, file: string): { notBefore: number; notAfter: number } {
  const { out } = openssl(['x509', '-noout', '-dates', '-in', file], { cwd: dir });
  const get = (k: string) => Date.parse(new RegExp(`${k}=(.+)`).exec(out)?.[1] ?? 'x');
  return { notBefore: get('notBefore'), notAfter: get('notAfter') };
}
