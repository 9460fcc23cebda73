import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createCsr } from '@novamesh/ca';
import { MeshError, subjects } from '@novamesh/contracts';
import { MeshManager } from '@novamesh/sdk';
import { freePort, type ManagedProcess, startCertificateAuthority, TestNats } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const TRUST_DOMAIN = 'novamesh.local';
const YEAR_S = 365 * 86_400;

let nats: TestNats;
let nc: NatsConnection;
let mesh: MeshManager;
let ca: ManagedProcess;
let caDir: string;
let metricsPort: number;

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-ca-metrics-'));
  metricsPort = await freePort();
  ca = await startCertificateAuthority({
    natsUrl: nats.url,
    instance: 'metrics1',
    caDir,
    env: { CA_METRICS_PORT: String(metricsPort) },
  });
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await ca?.stop();
  await nats?.dispose();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

/** Scrapes /metrics over real HTTP: the text and every sample as `name{labels}` → value. */
async function scrape(): Promise<{ text: string; samples: Map<string, number>; contentType: string }> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, samples, contentType: res.headers.get('content-type') ?? '' };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => {
      expect(e).toBeInstanceOf(MeshError);
      return e as MeshError;
    },
  );

describe('the CA metrics endpoint', () => {
  it('starts with every series at zero, and the CA expiry gauges', async () => {
    const { samples, text, contentType } = await scrape();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samples.get('novamesh_ca_certificates_issued_total{kind="token"}')).toBe(0);
    expect(samples.get('novamesh_ca_certificates_issued_total{kind="renewal"}')).toBe(0);
    expect(samples.get('novamesh_ca_refusals_total{reason="token_used"}')).toBe(0);
    expect(samples.get('novamesh_ca_refusals_total{reason="csr_refused"}')).toBe(0);
    expect(text).toMatch(/^# TYPE novamesh_ca_sign_duration_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE novamesh_ca_seconds_until_expiry gauge$/m);
    expect(samples.get('novamesh_ca_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('counts issued certificates by kind and refusals by reason, and times signing', async () => {
    const first = await mesh.requestCertificate({ service: 'payment', token: (await mesh.createJoinToken('payment', { uses: 2 })).token });
    await mesh.requestCertificate({ service: 'orders', token: (await mesh.createJoinToken('orders')).token });
    await mesh.requestCertificate({ service: 'payment', certificatePem: first.certificatePem, keyPem: first.keyPem });

    const once = (await mesh.createJoinToken('shipping')).token;
    await mesh.requestCertificate({ service: 'shipping', token: once });
    await refusal(mesh.requestCertificate({ service: 'shipping', token: once })); // token_used
    await refusal(mesh.requestCertificate({ service: 'shipping', token: `nmjt_${'B'.repeat(43)}` })); // token_unknown
    await refusal(mesh.requestCertificate({ service: 'orders', token: (await mesh.createJoinToken('inventory')).token })); // identity_mismatch
    const weak = await createCsr({ spiffeId: `spiffe://${TRUST_DOMAIN}/ns/default/svc/billing`, keyPair: { kind: 'rsa', bits: 1024 } });
    const reply = await nc.request(
      subjects.ca('sign'),
      JSON.stringify({
        csr: weak.csrPem,
        identity: { namespace: 'default', service: 'billing' },
        proof: { token: (await mesh.createJoinToken('billing')).token },
      }),
      { timeout: 10_000 },
    );
    expect(reply.json<{ ok: boolean }>().ok).toBe(false); // csr_refused

    const { samples } = await scrape();
    expect(samples.get('novamesh_ca_certificates_issued_total{kind="token"}')).toBe(3);
    expect(samples.get('novamesh_ca_certificates_issued_total{kind="renewal"}')).toBe(1);
    expect(samples.get('novamesh_ca_refusals_total{reason="token_used"}')).toBe(1);
    expect(samples.get('novamesh_ca_refusals_total{reason="token_unknown"}')).toBe(1);
    expect(samples.get('novamesh_ca_refusals_total{reason="identity_mismatch"}')).toBe(1);
    expect(samples.get('novamesh_ca_refusals_total{reason="csr_refused"}')).toBe(1);
    expect(samples.get('novamesh_ca_refusals_total{reason="certificate_revoked"}')).toBe(0);
    expect(samples.get('novamesh_ca_sign_duration_seconds_count{outcome="issued"}')).toBe(4);
    expect(samples.get('novamesh_ca_sign_duration_seconds_count{outcome="refused"}')).toBe(4);
    expect(samples.get('novamesh_ca_sign_duration_seconds_bucket{le="+Inf",outcome="issued"}')).toBe(4);
    expect(samples.get('novamesh_ca_sign_duration_seconds_sum{outcome="issued"}')).toBeGreaterThan(0);
  });

  it('reports seconds until the root (≈ 10 years) and the intermediate (≈ 1 year) expire, computed at scrape time', async () => {
    const a = (await scrape()).samples;
    const root = a.get('novamesh_ca_seconds_until_expiry{ca="root"}') ?? 0;
    const intermediate = a.get('novamesh_ca_seconds_until_expiry{ca="intermediate"}') ?? 0;
    expect(root / YEAR_S).toBeGreaterThan(9.9);
    expect(root / YEAR_S).toBeLessThan(10.1);
    expect(intermediate / YEAR_S).toBeGreaterThan(0.98);
    expect(intermediate / YEAR_S).toBeLessThanOrEqual(1.01);
    await new Promise((r) => setTimeout(r, 1_100));
    const b = (await scrape()).samples;
    expect(b.get('novamesh_ca_seconds_until_expiry{ca="root"}')).toBeLessThan(root);
  });

  it('answers mesh.v1.ca.info with the root and intermediate it signs with', async () => {
    const info = (await nc.request(subjects.ca('info'), '', { timeout: 10_000 })).json<{
      ok: boolean;
      trustDomain: string;
      root: { fingerprint256: string; notAfter: string };
      intermediate: { notAfter: string };
      instance: string;
    }>();
    expect(info).toMatchObject({ ok: true, trustDomain: TRUST_DOMAIN, instance: 'metrics1' });
    const bundle = await mesh.getTrustBundle();
    expect(info.root.fingerprint256).toBe(bundle.roots[0]?.fingerprint256);
    expect(Date.parse(info.intermediate.notAfter)).toBeLessThan(Date.parse(info.root.notAfter));
    const bad = (await nc.request(subjects.ca('info'), JSON.stringify({ extra: 1 }), { timeout: 10_000 })).json<{ ok: boolean }>();
    expect(bad.ok).toBe(false);
  });

  it('binds to 127.0.0.1 by default and serves only /metrics', async () => {
    expect(ca.output.join('\n')).toContain(`metrics on http://127.0.0.1:${metricsPort}/metrics`);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/`)).status).toBe(404);
  });
});
