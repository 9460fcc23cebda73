import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DetailedPeerCertificate, Server, TLSSocket } from 'node:tls';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, runMeshctl, startCertificateAuthority, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectMtls, createMtlsServer } from './mtls';
import { certificateBlocks, parseCertificates } from './pem';
import { WorkloadIdentity } from './workload-identity';

// Root rotation under continuous traffic: a real nats-server, a real certificate-authority process,
// meshctl, and two WorkloadIdentities talking mutual TLS over a new connection every 20 ms. The
// identities re-issue 4–5 s after the bundle gains the new root (newRootRenewWithinMs), so `finish`
// right after `begin` is deterministically refused; their regular renewal (50–80 % of 1 min) stays
// outside the run.
const TD = 'novamesh.local';
const spiffe = (svc: string) => `spiffe://${TD}/ns/default/svc/${svc}`;
const POLICY = { backoffInitialMs: 200, backoffMaxMs: 1_000, newRootRenewWithinMs: [4_000, 5_000] as const };

let nats: TestNats;
let caDir: string;
let work: string;
let ca: ManagedProcess;
/** A second replica on the same CA directory: it must follow a rotation the first one handled (or vice versa). */
let ca2: ManagedProcess;
let mesh: MeshManager;
let payment: WorkloadIdentity;
let frontend: WorkloadIdentity;
let server: Server;
let port: number;
const identities: WorkloadIdentity[] = [];
const serverHandshakeErrors: string[] = [];

const startCa = (instance = 'ca1') => startCertificateAuthority({ natsUrl: nats.url, instance, caDir, env: { CA_CERT_TTL: '1m' } });
const meshctl = (...args: string[]) => runMeshctl(['--nats', nats.url, ...args]);
const norm = (fp: string) => fp.toLowerCase().replace(/:/g, '');

/** Fingerprint of the root that Node's verification chained a peer certificate to. */
function rootOf(cert: DetailedPeerCertificate): string {
  let c = cert;
  for (let i = 0; i < 8 && c.issuerCertificate && c.issuerCertificate !== c; i++) c = c.issuerCertificate;
  return norm(c.fingerprint256);
}

/** Fingerprint of the root an identity's own chain leads to (by signature). */
function chainRoot(id: WorkloadIdentity, roots: { pem: string; fingerprint256: string }[]): string | undefined {
  const chain = parseCertificates(id.current().chainPem);
  const top = chain[chain.length - 1];
  return roots.find((r) => {
    const [root] = parseCertificates(r.pem);
    return !!top && !!root && (top.fingerprint256 === root.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey)));
  })?.fingerprint256;
}

async function identity(service: string): Promise<WorkloadIdentity> {
  const id = new WorkloadIdentity(mesh, { service, token: (await mesh.createJoinToken(service)).token, policy: POLICY });
  identities.push(id);
  await id.start();
  return id;
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('timeout', ['10', cmd, ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-rotation-ca-'));
  work = mkdtempSync(join(tmpdir(), 'novamesh-rotation-files-'));
  ca = await startCa();
  ca2 = await startCa('ca2');
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 5_000 });
  await mesh.initialize();
  [payment, frontend] = await Promise.all([identity('payment'), identity('frontend')]);
  // payment answers every verified client with the root the client's certificate chained to.
  server = createMtlsServer(payment, (socket) => {
    socket.on('error', () => undefined);
    socket.end(`ok ${rootOf(socket.getPeerCertificate(true))}\n`);
  });
  server.on('tlsClientError', (err, socket) => serverHandshakeErrors.push(socket.authorizationError?.toString() ?? err.message));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  for (const id of identities) id.close();
  await mesh?.close();
  await ca?.stop();
  await ca2?.stop();
  await nats?.dispose();
  for (const d of [caDir, work]) if (d) rmSync(d, { recursive: true, force: true });
});

interface Outcome {
  at: number;
  ok: boolean;
  error?: string;
  /** Roots the server's and the client's certificates chained to. */
  serverRoot?: string;
  clientRoot?: string;
}

/** One request over a new mutual-TLS connection from frontend to payment. */
function request(): Promise<Outcome> {
  const at = Date.now();
  return new Promise((resolve) => {
    let data = '';
    let serverRoot: string | undefined;
    const socket: TLSSocket = connectMtls(
      frontend,
      { host: '127.0.0.1', port, servername: 'payment', serverSpiffeId: spiffe('payment') },
      () => {
        serverRoot = rootOf(socket.getPeerCertificate(true));
      },
    );
    const timer = setTimeout(() => socket.destroy(new Error('no answer in 5 s')), 5_000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      data += d;
    });
    const done = (error?: Error) => {
      clearTimeout(timer);
      const m = /^ok ([0-9a-f]+)\n$/.exec(data);
      resolve(
        !error && m
          ? { at, ok: true, serverRoot, clientRoot: m[1] }
          : { at, ok: false, error: error?.message ?? `unexpected answer ${JSON.stringify(data)}` },
      );
    };
    socket.once('error', done);
    socket.once('end', () => done());
  });
}

describe('root rotation under continuous mutual-TLS traffic', () => {
  it('begin → both identities re-issue under the new root → finish (refused while old-root certificates live) loses no request', async () => {
    const oldRoot = (await mesh.getTrustBundle()).roots[0]!.fingerprint256;
    const outcomes: Outcome[] = [];
    let stop = false;
    const deadline = Date.now() + 15_000;
    const traffic = (async () => {
      while (!stop && Date.now() < deadline) {
        outcomes.push(await request());
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await waitFor(() => outcomes.length >= 10, { timeoutMs: 5_000, what: 'traffic before the rotation' });

      const begin = await meshctl('ca', 'rotate', 'begin');
      expect(begin.stderr).toBe('');
      expect(begin.code).toBe(0);
      const beginAt = Date.now();
      expect(begin.stdout).toMatch(/^root rotation begun on replica ca[12]: new root [0-9a-f]{64}; the trust bundle holds both roots\./);
      // The replica that did not handle the command reloads the CA directory when the bundle changes.
      const other = begin.stdout.includes('replica ca1') ? ca2 : ca;
      await other.waitForLine(/"msg":"CA state reloaded: another replica changed the roots"/, 5_000);
      const bundle = await mesh.getTrustBundle();
      expect(bundle.roots).toHaveLength(2);
      const newRoot = bundle.roots.find((r) => r.fingerprint256 !== oldRoot)!.fingerprint256;
      expect(bundle.roots.map((r) => r.fingerprint256)).toContain(oldRoot);
      expect(begin.stdout).toContain(newRoot);

      // The identities still hold old-root certificates (they re-issue 4–5 s after the bundle changed).
      const refused = await meshctl('ca', 'rotate', 'finish');
      expect(Date.now() - beginAt).toBeLessThan(4_000);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^error: 2 live certificate\(s\) still chain to the old root [0-9a-f]{16}…/);
      expect(refused.stderr).toContain(spiffe('payment'));
      expect(refused.stderr).toContain(spiffe('frontend'));
      await expect(meshctl('ca', 'rotate', 'begin')).resolves.toMatchObject({
        code: 1,
        stderr: expect.stringMatching(/already in progress/),
      });

      await waitFor(() => [payment, frontend].every((id) => chainRoot(id, bundle.roots) === newRoot), {
        timeoutMs: 10_000,
        what: 'both identities to re-issue under the new root',
      });
      const status = await meshctl('ca', 'rotate', 'status', '-o', 'json');
      expect(status.code).toBe(0);
      const roots = (JSON.parse(status.stdout) as { roots: { role: string; fingerprint256: string; liveCertificates: number }[] }).roots;
      expect(roots).toEqual([
        expect.objectContaining({ role: 'current', fingerprint256: newRoot, liveCertificates: 2 }),
        expect.objectContaining({ role: 'previous', fingerprint256: oldRoot, liveCertificates: 0 }),
      ]);

      const finish = await meshctl('ca', 'rotate', 'finish');
      expect(finish.stderr).toBe('');
      expect(finish.code).toBe(0);
      expect(finish.stdout).toContain(`root rotation finished: the trust bundle holds only root ${newRoot}`);
      expect((await mesh.getTrustBundle()).roots.map((r) => r.fingerprint256)).toEqual([newRoot]);
      // Both replicas converge: whichever answers, it holds only the new root.
      const answered = new Set<string>();
      await waitFor(
        async () => {
          const s = await mesh.rotateRoot('status');
          expect(s.roots.map((r) => [r.role, r.fingerprint256])).toEqual([['current', newRoot]]);
          answered.add(s.instance);
          return answered.size === 2;
        },
        { timeoutMs: 10_000, what: 'both replicas to answer with the new root' },
      );
      await waitFor(() => [payment, frontend].every((id) => certificateBlocks(id.current().trustBundlePem).length === 1), {
        timeoutMs: 5_000,
        what: 'the one-root bundle to reach both identities',
      });
      const finishedAt = Date.now();
      await waitFor(() => outcomes.filter((o) => o.at > finishedAt).length >= 20, { timeoutMs: 5_000, what: 'traffic after finish' });
      stop = true;
      await traffic;

      const failed = outcomes.filter((o) => !o.ok);
      expect(failed).toEqual([]);
      expect(serverHandshakeErrors).toEqual([]);
      expect(outcomes.length).toBeGreaterThan(100);
      // Both roots carried traffic; after finish every connection chained to the new root on both sides.
      expect(outcomes.some((o) => o.serverRoot === oldRoot && o.clientRoot === oldRoot)).toBe(true);
      expect(outcomes.some((o) => o.serverRoot === newRoot && o.clientRoot === newRoot)).toBe(true);
      const after = outcomes.filter((o) => o.at > finishedAt);
      expect(after.every((o) => o.serverRoot === newRoot && o.clientRoot === newRoot)).toBe(true);

      // openssl accepts the new leaf against the new root alone.
      const [leaf, ...intermediates] = certificateBlocks(frontend.current().chainPem);
      const rootPem = (await mesh.getTrustBundle()).roots[0]!.pem;
      const f = (name: string, text: string) => {
        const p = join(work, name);
        writeFileSync(p, `${text.trim()}\n`);
        return p;
      };
      const verified = await run('openssl', [
        'verify',
        '-CAfile',
        f('newroot.pem', rootPem),
        '-untrusted',
        f('intermediate.pem', intermediates.join('\n')),
        f('leaf.pem', leaf ?? ''),
      ]);
      expect(verified.out).toMatch(/leaf\.pem: OK/);
      expect(verified.code).toBe(0);

      // The old CA is kept (retired, keys still 0600); the new one is in place.
      const retired = readdirSync(join(caDir, 'retired'));
      expect(retired).toHaveLength(1);
      for (const key of ['root-key.pem', 'intermediate-key.pem']) {
        expect(statSync(join(caDir, 'retired', retired[0]!, key)).mode & 0o777).toBe(0o600);
        expect(statSync(join(caDir, key)).mode & 0o777).toBe(0o600);
      }
      expect(readFileSync(join(caDir, 'root.pem'), 'utf8').trim()).toBe(rootPem.trim());
    } finally {
      stop = true;
      await traffic;
    }
  });

  it('a CA restart after the rotation keeps the new root', async () => {
    const before = await mesh.getTrustBundle();
    expect(before.roots).toHaveLength(1);
    await Promise.all([ca.stop(), ca2.stop()]);
    ca = await startCa();
    ca2 = await startCa('ca2');
    const status = await mesh.rotateRoot('status');
    expect(status.rotating).toBe(false);
    expect(status.roots.map((r) => r.fingerprint256)).toEqual([before.roots[0]!.fingerprint256]);
    expect((await mesh.getTrustBundle()).roots.map((r) => r.fingerprint256)).toEqual([before.roots[0]!.fingerprint256]);
    // New certificates chain to it.
    const renewed = await frontend.rotate();
    expect(chainRoot(frontend, before.roots)).toBe(before.roots[0]!.fingerprint256);
    expect(renewed.serial).not.toBe('');
    const meshctlStatus = await meshctl('ca', 'rotate', 'status');
    expect(meshctlStatus.code).toBe(0);
    expect(meshctlStatus.stdout).toMatch(/^no root rotation in progress\.\n/);
  });
});
