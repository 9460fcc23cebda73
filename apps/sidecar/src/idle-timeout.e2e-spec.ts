import { type ClientHttp2Session, type ClientHttp2Stream, connect as connectH2, type IncomingHttpHeaders } from 'node:http2';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoneSidecars, type SidecarProcess } from './mesh.e2e-helper';

// SIDECAR_IDLE_TIMEOUT, what a client sees, against real sidecar processes serving the last good
// snapshot from their data dir (NATS_URL points at a closed port), on the outbound and the inbound port:
//  - an HTTP/2 (h2c, prior knowledge) session without an open stream gets GOAWAY (NO_ERROR) after
//    the timeout and closes; a stream open longer than it, even one quiet for longer than it, keeps
//    its session, and the timeout counts from the end of the last stream;
//  - an idle HTTP/1.1 keep-alive connection closes after the timeout, on the fast path (at it) and on
//    node:http (which waits up to a second longer than it advertises). `Keep-Alive: timeout=` carries
//    whole seconds rounded down, as node:http writes it: never more than the connection is kept, so
//    500 ms is advertised as 0 (do not count on reuse) and 2500 ms as 2;
//  - by default (65 s) nothing changes; on SIGTERM an idle HTTP/2 session gets GOAWAY at once while an
//    open stream finishes.

let lone: LoneSidecars;
/** SIDECAR_IDLE_TIMEOUT=500ms: fast paths on / node:http only. */
let quick: SidecarProcess;
let quickSlow: SidecarProcess;
/** SIDECAR_IDLE_TIMEOUT=2500ms: not whole seconds. */
let seconds: SidecarProcess;
/** The defaults (65 s). */
let plain: SidecarProcess;
/** The defaults, SIDECAR_DRAIN=3s: stopped by its test. */
let draining: SidecarProcess;

const NODE_HTTP = { SIDECAR_FAST_PATH: 'false', SIDECAR_INBOUND_FAST_PATH: 'false' };
const SIDES = ['outbound', 'inbound'] as const;
type Side = (typeof SIDES)[number];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const port = (s: SidecarProcess, side: Side) => s.ports[side] as number;
const hostOf = (side: Side) => (side === 'outbound' ? 'orders.mesh' : 'shop');
const appOf = (side: Side) => (side === 'outbound' ? 'orders' : 'shop');

const startSidecar = (id: string, env: NodeJS.ProcessEnv): Promise<SidecarProcess> => {
  lone.seed(id);
  return lone.sidecar(id, env);
};

/** Polls `ok` every 10 ms until it holds or `ms` passed; whether it held. */
async function until(ok: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!ok() && performance.now() < deadline) await sleep(10);
  return ok();
}

/** A client HTTP/2 prior-knowledge session with when (performance.now()) it got GOAWAY, with which code, and closed. */
class H2Client {
  readonly session: ClientHttp2Session;
  goawayAt: number | undefined;
  goawayCode: number | undefined;
  closedAt: number | undefined;

  constructor(port: number) {
    this.session = connectH2(`http://127.0.0.1:${port}`);
    this.session.on('error', () => undefined);
    this.session.on('goaway', (code: number) => {
      this.goawayAt ??= performance.now();
      this.goawayCode ??= code;
    });
    this.session.once('close', () => {
      this.closedAt = performance.now();
    });
  }

  /** Waits, at most `ms`, for the session to close; whether it did. */
  closed(ms: number): Promise<boolean> {
    return until(() => this.closedAt !== undefined, ms);
  }
}

/** A response read whole, and when (performance.now()) it ended. */
interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  endedAt: number;
}

/** Reads the response of `stream` whole, failing after 10 s. */
function responseOf(stream: ClientHttp2Stream, what: string): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no whole response within 10 s`)), 10_000);
    let headers: IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => {
      headers = h;
    });
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      body += d;
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ status: Number(headers[':status']), headers, body, endedAt: performance.now() });
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${err.message}`));
    });
  });
}

/** One bodiless GET on `client`'s session to `side`'s service. */
function get(client: H2Client, side: Side, path: string): Promise<H2Response> {
  return responseOf(client.session.request({ ':path': path, ':authority': hostOf(side) }), `${side} GET ${path}`);
}

/** What an HTTP/1.1 client saw of one GET on a fresh keep-alive connection it then left idle. */
interface Http1Idle {
  status: number | undefined;
  headers: Record<string, string>;
  /** From the response head to the sidecar's close; undefined: still open when the client gave up. */
  closedAfterMs: number | undefined;
}

/** Sends one GET on a new connection to `port`, then waits, at most `waitMs` after the response (5 s for it), for the sidecar to close the connection. */
async function oneThenIdle(port: number, host: string, waitMs: number): Promise<Http1Idle> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const out: Http1Idle = { status: undefined, headers: {}, closedAfterMs: undefined };
  let buf = '';
  let headAt: number | undefined;
  let closedAt: number | undefined;
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    if (headAt !== undefined) return;
    buf += d;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    headAt = performance.now();
    const lines = buf.slice(0, end).split('\r\n');
    out.status = Number(lines[0]?.slice(9, 12));
    for (const l of lines.slice(1)) out.headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  });
  socket.once('close', () => {
    closedAt = performance.now();
  });
  socket.write(`GET /idle HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  await until(() => headAt !== undefined || closedAt !== undefined, 5_000);
  if (headAt !== undefined) await until(() => closedAt !== undefined, waitMs);
  if (headAt !== undefined && closedAt !== undefined) out.closedAfterMs = closedAt - headAt;
  socket.destroy();
  return out;
}

beforeAll(async () => {
  // No control plane (see LoneSidecars): the sidecars serve the snapshot seeded into their data dir and never get another.
  lone = await LoneSidecars.start('idle-timeout');
  [quick, quickSlow, seconds, plain, draining] = await Promise.all([
    startSidecar('quick', { SIDECAR_IDLE_TIMEOUT: '500ms' }),
    startSidecar('quick-slow', { SIDECAR_IDLE_TIMEOUT: '500ms', ...NODE_HTTP }),
    startSidecar('seconds', { SIDECAR_IDLE_TIMEOUT: '2500ms' }),
    startSidecar('plain', {}),
    startSidecar('draining', { SIDECAR_DRAIN: '3s' }),
  ]);
}, 60_000);

afterAll(async () => {
  await lone?.dispose();
});

describe('SIDECAR_IDLE_TIMEOUT: HTTP/2 sessions without an open stream get GOAWAY', () => {
  it.each(SIDES)('%s: an h2c session left idle after its response gets GOAWAY (NO_ERROR) after 0.5 s, then closes', async (side) => {
    const client = new H2Client(port(quick, side));
    try {
      const r = await get(client, side, '/idle');
      expect(r.status).toBe(200);
      expect(r.headers['x-app']).toBe(appOf(side));
      expect(await client.closed(3_000), 'closed by the sidecar within 3 s').toBe(true);
      expect(client.goawayAt, 'GOAWAY before the close').toBeDefined();
      expect(client.goawayCode).toBe(0);
      const idleMs = (client.goawayAt as number) - r.endedAt;
      expect(idleMs).toBeGreaterThanOrEqual(400);
      expect(idleMs).toBeLessThan(3_000);
    } finally {
      client.session.destroy();
    }
  });

  it.each(SIDES)('%s: a session that never opens a stream gets GOAWAY after 0.5 s', async (side) => {
    const client = new H2Client(port(quick, side));
    try {
      const t0 = performance.now();
      expect(await client.closed(3_000), 'closed by the sidecar within 3 s').toBe(true);
      expect(client.goawayCode).toBe(0);
      expect((client.goawayAt as number) - t0).toBeGreaterThanOrEqual(400);
    } finally {
      client.session.destroy();
    }
  });

  it.each(SIDES)(
    '%s: a stream open for 2 s (its body quiet for 0.7 s at a time) keeps its session; GOAWAY comes 0.5 s after the stream ends',
    async (side) => {
      const client = new H2Client(port(quick, side));
      try {
        const stream = client.session.request({ ':method': 'POST', ':path': '/long', ':authority': hostOf(side) }, { endStream: false });
        const response = responseOf(stream, `${side} POST /long`);
        const t0 = performance.now();
        // The workload answers only once the body ends: until then the stream is open, and mostly silent.
        for (let i = 0; i < 3; i++) {
          stream.write(`chunk ${i}\n`);
          await sleep(700);
        }
        expect(client.goawayAt, 'no GOAWAY while the stream is open').toBeUndefined();
        expect(client.closedAt).toBeUndefined();
        stream.end('last\n');
        const r = await response;
        expect(r.status).toBe(200);
        expect(r.headers['x-app']).toBe(appOf(side));
        expect(JSON.parse(r.body)).toMatchObject({ method: 'POST', url: '/long' });
        expect(r.endedAt - t0).toBeGreaterThanOrEqual(2_000);
        expect(client.goawayAt, 'no GOAWAY before the response completed').toBeUndefined();
        expect(await client.closed(3_000), 'closed by the sidecar once idle').toBe(true);
        expect(client.goawayCode).toBe(0);
        expect((client.goawayAt as number) - r.endedAt).toBeGreaterThanOrEqual(400);
      } finally {
        client.session.destroy();
      }
    },
  );

  it('by default (65 s) an idle h2c session is still open after 1.5 s, on both ports', async () => {
    const clients = SIDES.map((side) => new H2Client(port(plain, side)));
    try {
      const responses = await Promise.all(SIDES.map((side, i) => get(clients[i] as H2Client, side, '/idle')));
      expect(responses.map((r) => r.status)).toEqual([200, 200]);
      await sleep(1_500);
      for (const c of clients) expect(c.goawayAt ?? c.closedAt).toBeUndefined();
    } finally {
      for (const c of clients) c.session.destroy();
    }
  });
});

describe('SIDECAR_IDLE_TIMEOUT: HTTP/1.1 keep-alive', () => {
  it('closes an idle keep-alive connection after 0.5 s, both ports, fast path and node:http, both advertising timeout=0', async () => {
    const cases = SIDES.flatMap((side) =>
      [
        ['fast path', quick],
        ['node:http', quickSlow],
      ].map(([path, s]) => ({ name: `${side} ${path as string}`, side, s: s as SidecarProcess })),
    );
    const results = await Promise.all(cases.map(async (c) => ({ ...c, ...(await oneThenIdle(port(c.s, c.side), hostOf(c.side), 4_000)) })));
    for (const r of results) {
      expect(r.status, r.name).toBe(200);
      expect(r.headers['x-app'], r.name).toBe(appOf(r.side));
      expect(r.headers.connection, r.name).toBe('keep-alive');
      // Whole seconds rounded down, as node:http writes it: 500 ms is less than a second the client can count on.
      expect(r.headers['keep-alive'], r.name).toBe('timeout=0');
      expect(r.closedAfterMs, `${r.name}: closed by the sidecar`).toBeDefined();
      expect(r.closedAfterMs, r.name).toBeGreaterThanOrEqual(400);
      // The fast path closes at the timeout, node:http up to a second after it.
      expect(r.closedAfterMs, r.name).toBeLessThan(r.name.endsWith('fast path') ? 1_500 : 3_000);
    }
  });

  it('advertises the timeout in whole seconds, rounded down (2500ms: timeout=2), and timeout=65 by default', async () => {
    const results = await Promise.all(
      [seconds, plain].flatMap((s) =>
        SIDES.map(async (side) => ({ name: `${s.id} ${side}`, ...(await oneThenIdle(port(s, side), hostOf(side), 0)) })),
      ),
    );
    expect(results.map((r) => [r.name, r.status, r.headers['keep-alive']])).toEqual([
      ['seconds outbound', 200, 'timeout=2'],
      ['seconds inbound', 200, 'timeout=2'],
      ['plain outbound', 200, 'timeout=65'],
      ['plain inbound', 200, 'timeout=65'],
    ]);
  });
});

describe('drain (SIGTERM)', () => {
  it('sends GOAWAY to an idle HTTP/2 session at once, lets an open stream finish, then exits 0', async () => {
    const idle = new H2Client(port(draining, 'outbound'));
    const busy = new H2Client(port(draining, 'inbound'));
    try {
      expect((await get(idle, 'outbound', '/before')).status).toBe(200);
      const stream = busy.session.request({ ':method': 'POST', ':path': '/drain', ':authority': 'shop' }, { endStream: false });
      const response = responseOf(stream, 'inbound POST /drain');
      stream.write('first\n');
      await sleep(200);
      const t0 = performance.now();
      draining.proc.kill('SIGTERM');
      // The sidecar waits up to 1 s before it closes its listeners, then drains for SIDECAR_DRAIN (3 s).
      expect(await idle.closed(2_500), 'the idle session closed well before the drain ran out').toBe(true);
      expect(idle.goawayCode, 'closed with GOAWAY, not cut').toBe(0);
      expect(await until(() => busy.goawayAt !== undefined, 1_000), 'the busy session was told too').toBe(true);
      expect(busy.closedAt, 'the busy session stays while its stream is open').toBeUndefined();
      stream.end('last\n');
      const r = await response;
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ method: 'POST', url: '/drain' });
      expect(await busy.closed(2_000), 'the busy session closed after its stream').toBe(true);
      const code = await Promise.race([draining.proc.exited, sleep(8_000).then(() => 'still running')]);
      expect(code).toBe(0);
      expect(performance.now() - t0).toBeLessThan(8_000);
    } finally {
      idle.session.destroy();
      busy.session.destroy();
    }
  });
});
