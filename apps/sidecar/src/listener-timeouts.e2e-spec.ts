import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as connectH2 } from 'node:http2';
import { connect } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConfigDump,
  LoneSidecars,
  metrics,
  metricValue,
  type OwnCertificateFiles,
  type RawResponse,
  raw,
  type SidecarProcess,
} from './mesh.e2e-helper';

// How long a connection may hold a sidecar's listener without a request, against real sidecar
// processes serving the last good snapshot from their data dir (NATS_URL points at a closed port):
//  - SIDECAR_LISTENER_FILTERS_TIMEOUT (300 ms here): a connection that sends nothing, or stops
//    inside the HTTP/2 preface the listener sniffs, is closed after it, on the outbound and the
//    inbound port; once its first bytes decided the protocol, keep-alive and the headers timeout govern it;
//    on the inbound port a TLS handshake must also complete within it (bring-your-own certificates
//    made with openssl, so the lone sidecar terminates mutual TLS);
//  - after a local reply that ends a connection (400 malformed head or chunked body, 431 head too
//    large, 408 head too slow) the connection closes even when the client keeps writing and never
//    closes its side, on the fast path and on node:http (SIDECAR_FAST_PATH=false): after a parse
//    error both send the reply and cut the connection 1 s later, so the client reads the reply rather
//    than a reset; after its 408, node:http closes at once.

let lone: LoneSidecars;
/** SIDECAR_LISTENER_FILTERS_TIMEOUT=300ms, SIDECAR_HEADERS_TIMEOUT=1s: fast paths on / node:http only. */
let quick: SidecarProcess;
let quickSlow: SidecarProcess;
/** The defaults (15 s to decide the protocol). */
let plain: SidecarProcess;
/** SIDECAR_LISTENER_FILTERS_TIMEOUT=300ms, terminating mutual TLS with `tlsFiles`. */
let quickTls: SidecarProcess;
let tlsFiles: OwnCertificateFiles;

const FILTERS_TIMEOUT = { SIDECAR_LISTENER_FILTERS_TIMEOUT: '300ms', SIDECAR_HEADERS_TIMEOUT: '1s' };
const NODE_HTTP = { SIDECAR_FAST_PATH: 'false', SIDECAR_INBOUND_FAST_PATH: 'false' };
const SIDES = ['outbound', 'inbound'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const port = (s: SidecarProcess, side: 'outbound' | 'inbound') => s.ports[side] as number;
const hostOf = (side: 'outbound' | 'inbound') => (side === 'outbound' ? 'orders.mesh' : 'shop');

const startSidecar = (id: string, env: NodeJS.ProcessEnv): Promise<SidecarProcess> => {
  lone.seed(id);
  return lone.sidecar(id, env);
};

/** The first bytes of a TLS ClientHello: a record header and the start of the handshake message, then nothing. */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

/**
 * Opens a raw connection to `port`, writes `bytes` (if any) and waits, at most `timeoutMs`, for the
 * sidecar to close it: how long after connecting (undefined: still open) and how many bytes it sent first.
 */
async function closedAfter(
  port: number,
  bytes: string | undefined,
  timeoutMs: number,
): Promise<{ ms: number | undefined; received: number }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const t0 = performance.now();
  let received = 0;
  let ms: number | undefined;
  socket.on('data', (d: Buffer) => {
    received += d.length;
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) =>
    socket.once('close', () => {
      ms = performance.now() - t0;
      r();
    }),
  );
  if (bytes !== undefined) socket.write(bytes);
  await Promise.race([closed, sleep(timeoutMs)]);
  socket.destroy();
  return { ms, received };
}

/** What a client that will not stop writing saw. Times in ms from connecting. */
interface Outcome {
  reply: { status: number; headers: Record<string, string> } | undefined;
  replyMs: number | undefined;
  closedMs: number | undefined;
  /** Bytes written after the reply arrived (the client kept going). */
  sentAfterReply: number;
}

const CHUNK = Buffer.alloc(64 * 1024, 'x');

/**
 * A client that never closes its side (allowHalfOpen: the sidecar's FIN does not end it): writes
 * `head`, then — at once, or only once a reply arrived (`streamFrom: 'reply'`, waiting at most 3 s) —
 * 64 KiB chunks, one a millisecond or as the connection takes them, for at most 3 s and 5 000 chunks,
 * until the sidecar closes the connection.
 */
async function unstoppable(port: number, head: string, streamFrom: 'start' | 'reply'): Promise<Outcome> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  const t0 = performance.now();
  const out: Outcome = { reply: undefined, replyMs: undefined, closedMs: undefined, sentAfterReply: 0 };
  let buf = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    if (out.reply) return;
    buf = Buffer.concat([buf, d]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    out.reply = { status: Number(lines[0]?.slice(9, 12)), headers };
    out.replyMs = performance.now() - t0;
    wake?.();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    out.closedMs = performance.now() - t0;
    wake?.();
  });
  /** Resolves on the next event above, on 'drain', or after `ms`. */
  const nap = (ms: number) =>
    new Promise<void>((r) => {
      const done = () => {
        clearTimeout(timer);
        socket.off('drain', done);
        wake = undefined;
        r();
      };
      const timer = setTimeout(done, ms);
      wake = done;
      socket.once('drain', done);
    });
  socket.write(head);
  if (streamFrom === 'reply') {
    const until = performance.now() + 3_000;
    while (!out.reply && out.closedMs === undefined && performance.now() < until) await nap(50);
  }
  const until = performance.now() + 3_000;
  for (let i = 0; i < 5_000 && out.closedMs === undefined && !socket.destroyed && performance.now() < until; i++) {
    const ok = socket.write(CHUNK);
    if (out.reply) out.sentAfterReply += CHUNK.length;
    await (ok ? sleep(1) : nap(100));
  }
  // A write the sidecar refused (EPIPE, ECONNRESET) destroyed the socket; its 'close' follows.
  if (socket.destroyed && out.closedMs === undefined) await Promise.race([once(socket, 'close'), sleep(1_000)]);
  socket.destroy();
  return out;
}

beforeAll(async () => {
  // No control plane (see LoneSidecars): the sidecars serve the snapshot seeded into their data dir and never get another.
  lone = await LoneSidecars.start('listener-timeouts');
  tlsFiles = lone.seed('quick-tls', { certificates: true }) as OwnCertificateFiles;
  [quick, quickSlow, plain, quickTls] = await Promise.all([
    startSidecar('quick', FILTERS_TIMEOUT),
    startSidecar('quick-slow', { ...FILTERS_TIMEOUT, ...NODE_HTTP }),
    startSidecar('plain', {}),
    lone.sidecar('quick-tls', FILTERS_TIMEOUT),
  ]);
  await waitFor(async () => (await quickTls.admin<ConfigDump>('/config_dump')).body.certificate?.source === 'files', {
    timeoutMs: 15_000,
    what: 'the bring-your-own certificate in use',
  });
}, 60_000);

afterAll(async () => {
  await lone?.dispose();
});

describe('SIDECAR_LISTENER_FILTERS_TIMEOUT: a connection must show what it speaks in time', () => {
  const cases = () =>
    SIDES.flatMap((side) =>
      [
        ['fast path', quick],
        ['node:http', quickSlow],
      ].map(([path, s]) => ({ name: `${side} ${path as string}`, side, s: s as SidecarProcess })),
    );

  it.each([
    ['sends nothing', undefined],
    ['sends only part of the HTTP/2 preface', 'PRI * HT'],
    ['sends only its first byte, which could start the preface', 'P'],
  ])('closes a connection that %s after 300 ms, outbound and inbound, and counts it', async (_what, bytes) => {
    const counted = async (c: { s: SidecarProcess; side: string }) =>
      metricValue(await metrics(c.s), 'novamesh_sidecar_listener_filters_timeouts_total', `listener="${c.side}"`);
    const before = await Promise.all(cases().map(counted));
    const results = await Promise.all(cases().map(async (c) => ({ ...c, ...(await closedAfter(port(c.s, c.side), bytes, 3_000)) })));
    for (const r of results) {
      expect(r.ms, `${r.name}: closed by the sidecar`).toBeDefined();
      // Not before the limit, and soon after it.
      expect(r.ms, r.name).toBeGreaterThanOrEqual(250);
      expect(r.ms, r.name).toBeLessThan(1_500);
      expect(r.received, `${r.name}: closed without an answer`).toBe(0);
    }
    const after = await Promise.all(cases().map(counted));
    expect(after.map((n, i) => n - (before[i] as number))).toEqual(cases().map(() => 1));
  });

  it('closes an inbound connection whose TLS handshake stops half-way after 300 ms, and counts it', async () => {
    const inbound = () =>
      metrics(quickTls).then((m) => metricValue(m, 'novamesh_sidecar_listener_filters_timeouts_total', 'listener="inbound"'));
    const before = await inbound();
    const r = await closedAfter(port(quickTls, 'inbound'), PARTIAL_CLIENT_HELLO.toString('latin1'), 3_000);
    expect(r.ms, 'closed by the sidecar').toBeDefined();
    // The first byte decided "TLS" at once; the handshake then had its own 300 ms (not node's 120 s).
    expect(r.ms).toBeGreaterThanOrEqual(250);
    expect(r.ms).toBeLessThan(1_500);
    expect(r.received).toBe(0);
    expect((await inbound()) - before).toBe(1);
  });

  it('leaves a completed mutual TLS handshake alone past the limit and serves its request', async () => {
    const socket = connectTls({
      host: '127.0.0.1',
      port: port(quickTls, 'inbound'),
      cert: readFileSync(tlsFiles.certPath),
      key: readFileSync(tlsFiles.keyPath),
      ca: readFileSync(tlsFiles.caPath),
      servername: 'shop',
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['http/1.1'],
    });
    socket.on('error', () => undefined);
    try {
      await once(socket, 'secureConnect');
      await sleep(800);
      expect(socket.destroyed, 'still open after the handshake').toBe(false);
      let reply = '';
      socket.on('data', (d: Buffer) => {
        reply += d.toString('latin1');
      });
      socket.write('GET /over-tls HTTP/1.1\r\nHost: shop\r\n\r\n');
      await waitFor(() => reply.includes('\r\n\r\n'), { timeoutMs: 5_000, intervalMs: 10, what: 'the response over TLS' });
      expect(reply.slice(0, 12)).toBe('HTTP/1.1 200');
      expect(reply.toLowerCase()).toContain('x-app: shop');
    } finally {
      socket.destroy();
    }
  });

  it('keeps the default (15 s) without SIDECAR_LISTENER_FILTERS_TIMEOUT: a silent connection is still open after 1.5 s', async () => {
    const results = await Promise.all(SIDES.map((side) => closedAfter(port(plain, side), undefined, 1_500)));
    for (const [i, r] of results.entries()) expect(r.ms, SIDES[i]).toBeUndefined();
  });

  it('serves requests sent promptly, also after an idle pause longer than the limit on a keep-alive connection', async () => {
    const results = await Promise.all(
      cases().map(async ({ name, side, s }) => {
        const r = await raw(
          port(s, side),
          async (write, responses) => {
            write(`GET /first HTTP/1.1\r\nHost: ${hostOf(side)}\r\n\r\n`);
            await waitFor(() => responses.length >= 1, { timeoutMs: 5_000, intervalMs: 10, what: `${name}: first response` });
            await sleep(800); // idle between requests: keep-alive's business (65 s), not the listener's
            write(`GET /second HTTP/1.1\r\nHost: ${hostOf(side)}\r\n\r\n`);
          },
          { count: 2, timeoutMs: 5_000 },
        );
        return { name, side, ...r };
      }),
    );
    for (const r of results) {
      expect(
        r.responses.map((x: RawResponse) => x.status),
        r.name,
      ).toEqual([200, 200]);
      expect(
        r.responses.map((x) => x.headers['x-app']),
        r.name,
      ).toEqual(r.side === 'outbound' ? ['orders', 'orders'] : ['shop', 'shop']);
      expect(r.closed, `${r.name}: connection kept`).toBe(false);
    }
  });

  it.each(SIDES)('leaves an HTTP/2 (h2c) connection alone once its preface arrived (%s)', async (side) => {
    for (const s of [quick, quickSlow]) {
      const session = connectH2(`http://127.0.0.1:${port(s, side)}`);
      session.on('error', () => undefined);
      try {
        await once(session, 'connect');
        await sleep(800); // past the limit: the preface decided the protocol
        expect(session.closed, s.id).toBe(false);
        const req = session.request({ ':path': '/h2', ':authority': hostOf(side) });
        const [headers] = (await Promise.race([
          once(req, 'response'),
          sleep(5_000).then(() => {
            throw new Error(`${s.id} ${side}: no h2 response`);
          }),
        ])) as [Record<string, string>];
        req.resume();
        await once(req, 'end');
        expect(headers[':status'], `${s.id} ${side}`).toBe(200);
        expect(headers['x-app'], `${s.id} ${side}`).toBe(side === 'outbound' ? 'orders' : 'shop');
      } finally {
        session.destroy();
      }
    }
  });

  it('leaves an incomplete HTTP/1.1 head to SIDECAR_HEADERS_TIMEOUT: 408 after 1 s, then the connection closes though the client keeps writing', async () => {
    const results = await Promise.all(
      cases().map(async (c) => ({
        ...c,
        ...(await unstoppable(port(c.s, c.side), `GET /late HTTP/1.1\r\nHost: ${hostOf(c.side)}\r\n`, 'reply')),
      })),
    );
    for (const r of results) {
      expect(r.reply?.status, r.name).toBe(408);
      expect(r.reply?.headers.connection, r.name).toBe('close');
      // Decided as HTTP/1.1 by its first byte: not cut at 300 ms, but by the headers timeout.
      expect(r.replyMs, r.name).toBeGreaterThanOrEqual(950);
      expect(r.closedMs, `${r.name}: closed by the sidecar`).toBeDefined();
      expect((r.closedMs as number) - (r.replyMs as number), r.name).toBeLessThan(2_000);
    }
  });
});

describe('after a malformed request, the connection closes even while the client keeps writing', () => {
  const heads = [
    // A complete head the parser refuses, then garbage.
    ['a malformed head', 400, 'FOO /x HTTP/1.1\r\nHost: orders.mesh\r\n\r\n'],
    // A head that never ends: refused once it is over 16 KiB.
    ['a head too large', 431, 'GET /x HTTP/1.1\r\nHost: orders.mesh\r\nx-big: '],
  ] as const;

  it.each(heads)('fast path (outbound): %s gets %i with connection: close, then the connection is cut', async (_what, status, head) => {
    const hits = lone.orders.hits.length;
    const r = await unstoppable(port(quick, 'outbound'), head, 'start');
    expect(r.reply?.status).toBe(status);
    expect(r.reply?.headers.connection).toBe('close');
    expect(r.reply?.headers['x-novamesh-error'], 'the fast path answered').toBe('BAD_REQUEST');
    expect(r.sentAfterReply, 'the client kept writing after the reply').toBeGreaterThan(0);
    expect(r.closedMs, 'closed by the sidecar').toBeDefined();
    // The sidecar waits a second for the client to close after its reply, then cuts it: well before the client's 3 s.
    expect((r.closedMs as number) - (r.replyMs as number)).toBeLessThan(2_000);
    expect(lone.orders.hits.length).toBe(hits);
  });

  it.each(heads)(
    'node:http (SIDECAR_FAST_PATH=false): %s gets %i with connection: close, then the connection is cut',
    async (_what, status, head) => {
      const r = await unstoppable(port(quickSlow, 'outbound'), head, 'start');
      expect(r.reply?.status).toBe(status);
      expect(r.reply?.headers.connection).toBe('close');
      expect(r.closedMs, 'closed by the sidecar').toBeDefined();
      expect((r.closedMs as number) - (r.replyMs as number)).toBeLessThan(2_000);
    },
  );

  it('fast path (outbound): a chunked body that breaks its framing gets 400 with connection: close, then the connection is cut', async () => {
    const head = 'POST /x HTTP/1.1\r\nHost: orders.mesh\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n';
    const r = await unstoppable(port(quick, 'outbound'), head, 'start');
    expect(r.reply?.status).toBe(400);
    expect(r.reply?.headers.connection).toBe('close');
    expect(r.reply?.headers['x-novamesh-reason']).toMatch(/^malformed request body/);
    expect(r.closedMs, 'closed by the sidecar').toBeDefined();
    expect((r.closedMs as number) - (r.replyMs as number)).toBeLessThan(2_000);
  });

  it('the fast path keeps serving new connections afterwards', async () => {
    const r = await raw(port(quick, 'outbound'), (write) => write('GET /after HTTP/1.1\r\nHost: orders.mesh\r\n\r\n'), { count: 1 });
    expect(r.responses.map((x) => x.status)).toEqual([200]);
  });
});
