import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, get } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Server, type TLSSocket } from 'node:tls';
import { createCsr, createIntermediateCa, createRootCa, readPrivateKey, signWorkloadCsr } from '@novamesh/ca';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, startCertificateAuthority, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachIdentity, connectMtls, createMtlsServer, mtlsAgent, type PeerRefusal, tlsContextFor } from './mtls';
import { certificateBlocks, normalizeSerial } from './pem';
import { type IdentityError, type IdentitySnapshot, WorkloadIdentity } from './workload-identity';

// Real nats-server, a real certificate-authority process and real TLS sockets. The CA's shortest
// certificate lifetime is 1 minute (CA_CERT_TTL's floor), so the identities renew at 5–10 % of it
// (3–6 s) instead of 50–80 %, and back off from 200 ms to 1 s: the same code path, shorter numbers.
const TD = 'novamesh.local';
const spiffe = (svc: string) => `spiffe://${TD}/ns/default/svc/${svc}`;
const POLICY = { renewBetween: [0.05, 0.1] as const, backoffInitialMs: 200, backoffMaxMs: 1_000 };

let nats: TestNats;
let caDir: string;
let work: string;
let ca: ManagedProcess;
let mesh: MeshManager;
let payment: WorkloadIdentity;
let frontend: WorkloadIdentity;
let server: Server;
let port: number;
const refusals: PeerRefusal[] = [];
/** Handshake failures as the server saw them (the verify error, for a chain that does not verify). */
const handshakeErrors: string[] = [];
const sockets = new Set<Socket>();
const identities: WorkloadIdentity[] = [];

function startCa(): Promise<ManagedProcess> {
  return startCertificateAuthority({ natsUrl: nats.url, instance: 'ca1', caDir, env: { CA_CERT_TTL: '1m' } });
}

async function identity(service: string): Promise<WorkloadIdentity> {
  const id = new WorkloadIdentity(mesh, { service, token: (await mesh.createJoinToken(service)).token, policy: POLICY });
  identities.push(id);
  await id.start();
  return id;
}

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-identity-ca-'));
  work = mkdtempSync(join(tmpdir(), 'novamesh-identity-files-'));
  ca = await startCa();
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 5_000 });
  await mesh.initialize();
  [payment, frontend] = await Promise.all([identity('payment'), identity('frontend')]);
  // payment greets every verified peer with its SPIFFE ID, then echoes.
  server = createMtlsServer(
    payment,
    (socket, peer) => {
      socket.write(`hello ${peer.spiffeId}\n`);
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (d === 'bye\n' ? socket.end('bye\n') : socket.write(d)));
      socket.on('error', () => undefined);
    },
    { onRefused: (r) => refusals.push(r) },
  );
  server.on('tlsClientError', (err, socket) => handshakeErrors.push(socket.authorizationError?.toString() ?? err.message));
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server?.close(r));
  for (const id of identities) id.close();
  await mesh?.close();
  await ca?.stop();
  await nats?.dispose();
  for (const d of [caDir, work]) if (d) rmSync(d, { recursive: true, force: true });
});

interface Conn {
  socket: TLSSocket;
  /** Everything received so far. */
  data: () => string;
  /** Resolves when the connection ends: with the error, if one ended it. */
  ended: Promise<Error | undefined>;
  serverSerial: () => string;
}

/** A client connection; `creds` undefined = as `frontend` through connectMtls. */
function open(creds?: { key?: string; cert?: string; ca: string }): Promise<Conn> {
  return new Promise((resolve) => {
    let data = '';
    const socket = creds
      ? connect({ host: '127.0.0.1', port, servername: 'payment', ...creds })
      : connectMtls(frontend, { host: '127.0.0.1', port, servername: 'payment', serverSpiffeId: spiffe('payment') });
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      data += d;
    });
    const ended = new Promise<Error | undefined>((r) => {
      socket.on('error', (e) => r(e));
      socket.on('close', () => r(undefined));
    });
    const conn: Conn = {
      socket,
      data: () => data,
      ended,
      serverSerial: () => normalizeSerial(socket.getPeerCertificate().serialNumber),
    };
    socket.once('secureConnect', () => resolve(conn));
    socket.once('error', () => resolve(conn));
  });
}

const nextRotation = (id: WorkloadIdentity, timeoutMs = 20_000) =>
  new Promise<IdentitySnapshot>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no rotation in time')), timeoutMs);
    id.once('rotated', (cur) => {
      clearTimeout(t);
      resolve(cur);
    });
  });

function run(cmd: string, args: string[], input = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    // Every external command is bounded: timeout(1) kills it after 10 s.
    const child = execFile('timeout', ['10', cmd, ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
    child.stdin?.end(input);
  });
}

describe('mutual TLS between two WorkloadIdentities and a real CA', () => {
  it('completes a mutual handshake: each side sees the other SPIFFE ID and current serial', async () => {
    const c = await open();
    await waitFor(() => c.data().includes('\n'), { timeoutMs: 5_000, what: 'greeting' });
    expect(c.data()).toBe(`hello ${spiffe('frontend')}\n`);
    expect(c.serverSerial()).toBe(normalizeSerial(payment.current().serial));
    c.socket.end();
  });

  it('after a rotation new connections present the new serial, while an established one keeps working', async () => {
    const established = await open();
    await waitFor(() => established.data().startsWith('hello'), { timeoutMs: 5_000 });
    const before = normalizeSerial(payment.current().serial);
    expect(established.serverSerial()).toBe(before);
    const rotated = await nextRotation(payment); // scheduled renewal, 3–6 s after issue
    expect(rotated.serial).not.toBe(before);
    const fresh = await open();
    expect(fresh.serverSerial()).toBe(normalizeSerial(rotated.serial));
    // The old connection still carries data both ways after the swap.
    established.socket.write('ping after rotation\n');
    await waitFor(() => established.data().includes('ping after rotation\n'), { timeoutMs: 5_000, what: 'echo on the old connection' });
    expect(established.serverSerial()).toBe(before);
    established.socket.end();
    fresh.socket.end();
  });

  it('refuses a client without a certificate, and one from another CA', async () => {
    const bundle = payment.current().trustBundlePem;
    const none = await open({ ca: bundle });
    expect(String(await none.ended)).toMatch(/certificate required/);
    expect(none.data()).toBe('');
    await waitFor(() => handshakeErrors.some((e) => /peer did not return a certificate/.test(e)), { timeoutMs: 5_000 });

    const root = await createRootCa({ trustDomain: TD });
    const intermediate = await createIntermediateCa({ root, trustDomain: TD });
    const { csrPem, keyPem } = await createCsr({ spiffeId: spiffe('frontend') });
    const foreign = await signWorkloadCsr({
      csrPem,
      issuer: intermediate,
      chainPems: [intermediate.certPem, root.certPem],
      identity: { trustDomain: TD, namespace: 'default', service: 'frontend' },
    });
    const other = await open({ ca: bundle, key: keyPem, cert: foreign.chainPem });
    await other.ended;
    expect(other.data()).toBe('');
    await waitFor(() => handshakeErrors.includes('UNABLE_TO_GET_ISSUER_CERT_LOCALLY'), { timeoutMs: 5_000, what: 'the verify error' });
  });

  it('refuses a client whose certificate from the mesh CA has expired', async () => {
    const bundle = payment.current().trustBundlePem;
    // Signed by the mesh's own intermediate (read from the CA directory), valid for one second.
    const intermediate = {
      certPem: readFileSync(join(caDir, 'intermediate.pem'), 'utf8'),
      keyPem: await readPrivateKey(join(caDir, 'intermediate-key.pem')),
    };
    const { csrPem, keyPem } = await createCsr({ spiffeId: spiffe('frontend') });
    const shortLived = await signWorkloadCsr({
      csrPem,
      issuer: intermediate,
      chainPems: [intermediate.certPem, readFileSync(join(caDir, 'root.pem'), 'utf8')],
      identity: { trustDomain: TD, namespace: 'default', service: 'frontend' },
      lifetimeMs: 1_000,
      backdateMs: 0,
    });
    await new Promise((r) => setTimeout(r, 1_500));
    const expired = await open({ ca: bundle, key: keyPem, cert: shortLived.chainPem });
    await expired.ended;
    expect(expired.data()).toBe('');
    await waitFor(() => handshakeErrors.includes('CERT_HAS_EXPIRED'), { timeoutMs: 5_000, what: 'the expiry verify error' });
  });

  it('refuses a revoked client, and closes a connection whose peer is revoked while it is open', async () => {
    const rogue = await identity('rogue');
    const serial = rogue.current().serial;
    const asRogue = () => open({ ca: rogue.current().trustBundlePem, key: rogue.current().keyPem, cert: rogue.current().chainPem });
    const live = await asRogue();
    await waitFor(() => live.data().startsWith(`hello ${spiffe('rogue')}`), { timeoutMs: 5_000 });
    rogue.close(); // it would otherwise re-bootstrap; its single-use token is spent anyway
    await mesh.revokeCertificate(serial, { reason: 'integration test' });
    await waitFor(() => payment.isRevoked(serial), { timeoutMs: 10_000, what: 'the revocation to reach payment' });
    await live.ended;
    expect(refusals.map((r) => r.reason)).toContain(`certificate ${serial} was revoked`);
    const again = await asRogue();
    await again.ended;
    expect(again.data()).toBe('');
    expect(refusals.map((r) => r.reason)).toContain(`certificate ${serial} is revoked`);
    expect(refusals.at(-1)?.peer.spiffeId).toBe(spiffe('rogue'));
  });

  it('an https Agent presents the current certificate: after the client rotates, new requests carry the new serial', async () => {
    const https = createHttpsServer({ ...tlsContextFor(payment), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(`${peer.subjectaltname?.split(', ')[0]} ${normalizeSerial(peer.serialNumber)}`);
    });
    const { detach } = attachIdentity(https, payment);
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const agent = mtlsAgent(frontend, { serverSpiffeId: spiffe('payment'), keepAlive: false });
    const fetchBody = () =>
      new Promise<string>((resolve, reject) => {
        get({ host: '127.0.0.1', port: (https.address() as { port: number }).port, path: '/', agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve(body));
        }).on('error', reject);
      });
    try {
      expect(await fetchBody()).toBe(`URI:${spiffe('frontend')} ${normalizeSerial(frontend.current().serial)}`);
      const rotated = await frontend.rotate();
      expect(await fetchBody()).toBe(`URI:${spiffe('frontend')} ${normalizeSerial(rotated.serial)}`);
    } finally {
      agent.destroy();
      detach();
      await new Promise((r) => https.close(r));
    }
  });

  it('openssl s_client: handshake and greeting with the client certificate; "certificate required" without', async () => {
    const s = frontend.current();
    const [leaf, ...intermediates] = certificateBlocks(s.chainPem);
    const f = (name: string, text: string) => {
      const p = join(work, name);
      writeFileSync(p, `${text.trim()}\n`, { mode: 0o600 });
      return p;
    };
    const files = {
      bundle: f('bundle.pem', payment.current().trustBundlePem),
      cert: f('cert.pem', leaf ?? ''),
      chain: f('chain.pem', intermediates.join('\n')),
      key: f('key.pem', s.keyPem),
    };
    const base = [
      's_client',
      '-connect',
      `127.0.0.1:${port}`,
      '-servername',
      'payment',
      '-CAfile',
      files.bundle,
      '-verify_return_error',
      '-ign_eof',
    ];
    const withCert = await run('openssl', [...base, '-cert', files.cert, '-cert_chain', files.chain, '-key', files.key], 'bye\n');
    expect(withCert.out).toContain('Verify return code: 0 (ok)');
    expect(withCert.out).toContain(`hello ${spiffe('frontend')}`);
    expect(withCert.code).toBe(0);
    const without = await run('openssl', base, 'bye\n');
    expect(without.out).toMatch(/certificate required/);
    expect(without.out).not.toContain('hello');
  });

  it('keeps its certificate while the CA is down and retries; renews once the CA is back', async () => {
    await ca.stop();
    const kept = frontend.current();
    const errors: IdentityError[] = [];
    const onError = (e: IdentityError) => errors.push(e);
    frontend.on('error', onError);
    await expect(frontend.rotate()).rejects.toMatchObject({ code: 'MESH_UNAVAILABLE', phase: 'renew' });
    await waitFor(() => errors.length >= 3, { timeoutMs: 10_000, what: 'three failed renewals' });
    expect(frontend.current()).toBe(kept);
    expect(errors.every((e) => e.retryable && e.retryInMs !== undefined && e.retryInMs <= 1_000)).toBe(true);
    // Connections keep working on the kept certificate.
    const c = await open();
    await waitFor(() => c.data().startsWith('hello'), { timeoutMs: 5_000 });
    c.socket.end();
    const renewed = nextRotation(frontend);
    ca = await startCa();
    expect((await renewed).serial).not.toBe(kept.serial);
    frontend.off('error', onError);
  });
});
