import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PAYMENT, PAYMENT_ID, type TestCa, testCa } from './ca.spec-helper';
import { createCsr, type IssuedCertificate, signWorkloadCsr, type WorkloadIdentity } from './index';

const FRONTEND: WorkloadIdentity = { trustDomain: 'novamesh.local', namespace: 'shop', service: 'frontend' };
const FRONTEND_ID = 'spiffe://novamesh.local/ns/shop/svc/frontend';

async function workload(ca: TestCa, identity: WorkloadIdentity, spiffe: string, dnsNames: string[] = []) {
  const { csrPem, keyPem } = await createCsr({ spiffeId: spiffe, dnsNames });
  const cert: IssuedCertificate = await signWorkloadCsr({ csrPem, issuer: ca.intermediate, chainPems: ca.chainPems, identity });
  return { key: keyPem, cert: cert.chainPem };
}

let ca: TestCa;
let other: TestCa;
let server: Server | undefined;
beforeAll(async () => {
  [ca, other] = await Promise.all([testCa(), testCa()]);
});
afterEach(() => {
  server?.close();
  server = undefined;
});

/** A mutual-TLS server (payment) that reports each verified peer's SAN, and its port. */
async function paymentServer() {
  const peers: string[] = [];
  // Node verifies the client chain after the handshake and then destroys the socket, so the
  // refusal reason is the socket's authorizationError, not the (generic) error it reports.
  const refusals: string[] = [];
  server = createServer(
    {
      ...(await workload(ca, PAYMENT, PAYMENT_ID, ['payment.shop.svc'])),
      ca: [ca.root.certPem],
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      peers.push(socket.getPeerCertificate().subjectaltname ?? '');
      socket.end('hello from payment');
    },
  );
  server.on('tlsClientError', (err, socket) => refusals.push(socket.authorizationError?.toString() ?? err.message));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, peers, refusals };
}

/** Connects as a client with `creds`; resolves with what the server sent, or the error that ended it. */
function call(port: number, creds: { key?: string; cert?: string }): Promise<{ data: string; serverSan?: string; error?: Error }> {
  return new Promise((resolve) => {
    let data = '';
    let serverSan: string | undefined;
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'payment.shop.svc', ca: [ca.root.certPem], ...creds }, () => {
      serverSan = socket.getPeerCertificate().subjectaltname;
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      data += chunk;
    });
    socket.on('error', (error) => resolve({ data, serverSan, error }));
    socket.on('close', () => resolve({ data, serverSan }));
  });
}

describe('mutual TLS with issued certificates', () => {
  it('succeeds between two workloads of one CA; each side sees the other SPIFFE ID', async () => {
    const { port, peers } = await paymentServer();
    const result = await call(port, await workload(ca, FRONTEND, FRONTEND_ID));
    expect(result.error).toBeUndefined();
    expect(result.data).toBe('hello from payment');
    expect(result.serverSan).toBe(`URI:${PAYMENT_ID}, DNS:payment.shop.svc`);
    expect(peers).toEqual([`URI:${FRONTEND_ID}`]);
  });

  it("refuses a client certificate from another CA's root", async () => {
    const { port, peers, refusals } = await paymentServer();
    const result = await call(port, await workload(other, FRONTEND, FRONTEND_ID));
    expect(result.data).toBe('');
    expect(peers).toEqual([]);
    await expect.poll(() => refusals).toEqual(['UNABLE_TO_GET_ISSUER_CERT_LOCALLY']);
  });

  it('refuses a client without a certificate', async () => {
    const { port, peers, refusals } = await paymentServer();
    const result = await call(port, {});
    expect(result.data).toBe('');
    expect(peers).toEqual([]);
    expect(result.error?.message).toContain('alert certificate required');
    await expect.poll(() => refusals.length).toBe(1);
    expect(refusals[0]).toContain('peer did not return a certificate');
  });
});
