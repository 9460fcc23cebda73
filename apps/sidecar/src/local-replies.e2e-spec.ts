import { waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLog, LoneSidecars, metrics, metricValue, type RawResponse, raw, type SidecarProcess } from './mesh.e2e-helper';

// Answers the sidecar makes without any control plane, against real sidecar processes whose NATS_URL
// points at a closed loopback port (no nats-server, so no snapshot can ever arrive), each pair run
// with the fast paths (the default) and with node:http (SIDECAR_FAST_PATH=false,
// SIDECAR_INBOUND_FAST_PATH=false):
//  - without a snapshot (empty data dir) every request gets 503 NO_SNAPSHOT, on the outbound and the inbound port;
//  - SIDECAR_HEADERS_TIMEOUT: with a snapshot from the data dir (static stability), a request head
//    incomplete after 1 s gets 408 and the connection closes; a complete one sent slowly is served.
const REASON = 'this sidecar has not received its configuration yet';

let lone: LoneSidecars;
/** No snapshot, default SIDECAR_HEADERS_TIMEOUT: fast paths on / node:http only. */
let bare: SidecarProcess;
let bareSlow: SidecarProcess;
/** The snapshot from the data dir, SIDECAR_HEADERS_TIMEOUT=1s: fast paths on / node:http only. */
let timed: SidecarProcess;
let timedSlow: SidecarProcess;

const NODE_HTTP = { SIDECAR_FAST_PATH: 'false', SIDECAR_INBOUND_FAST_PATH: 'false' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const startSidecar = (id: string, env: NodeJS.ProcessEnv): Promise<SidecarProcess> =>
  lone.sidecar(id, { SIDECAR_ACCESS_LOG: 'errors', ...env });

async function snapshotVersion(s: SidecarProcess): Promise<number | null> {
  const { body } = await s.admin<{ snapshot: { version: number } | null }>('/config_dump');
  return body.snapshot?.version ?? null;
}

const port = (s: SidecarProcess, side: 'outbound' | 'inbound') => s.ports[side] as number;

/** A response without its Date header. */
function stable(r: RawResponse | undefined): { status: number; headers: Record<string, string>; body: string } {
  const { date, ...headers } = r?.headers ?? {};
  expect(date).toBeTruthy();
  return { status: r?.status ?? 0, headers, body: r?.body.toString() ?? '' };
}

/** Waits (bounded) until `n` responses arrived on a raw connection. */
async function responsesReached(responses: RawResponse[], n: number): Promise<void> {
  await waitFor(() => responses.length >= n, { timeoutMs: 5_000, intervalMs: 10, what: `${n} responses` });
}

beforeAll(async () => {
  // No control plane (see LoneSidecars): the sidecars keep trying to connect in the background and never get a snapshot.
  lone = await LoneSidecars.start('local-replies');
  lone.seed('timed');
  lone.seed('timed-slow');
  const timeout = { SIDECAR_HEADERS_TIMEOUT: '1s' };
  [bare, bareSlow, timed, timedSlow] = await Promise.all([
    startSidecar('bare', {}),
    startSidecar('bare-slow', NODE_HTTP),
    startSidecar('timed', timeout),
    startSidecar('timed-slow', { ...timeout, ...NODE_HTTP }),
  ]);
  expect(await snapshotVersion(bare)).toBeNull();
  expect(await snapshotVersion(bareSlow)).toBeNull();
  expect(await snapshotVersion(timed)).toBe(1);
  expect(await snapshotVersion(timedSlow)).toBe(1);
}, 60_000);

afterAll(async () => {
  await lone?.dispose();
});

describe('a sidecar without a snapshot answers every request itself: 503 NO_SNAPSHOT', () => {
  const pairs = () =>
    [
      ['fast path', bare],
      ['node:http', bareSlow],
    ] as const;

  it.each(['outbound', 'inbound'] as const)(
    'on the %s port, with identical answers, access-log records and metrics on both paths',
    async (side) => {
      const answers: Record<string, unknown> = {};
      const logs: Record<string, unknown> = {};
      for (const [path, s] of pairs()) {
        const from = s.proc.output.length;
        const workloadHits = lone.workload.hits.length;
        const ordersHits = lone.orders.hits.length;
        const before = await metrics(s);
        // On one keep-alive connection: a GET, a POST with a body (dropped unread), a HEAD, then the connection is still good.
        const host = side === 'outbound' ? 'orders.mesh' : 'shop';
        const { responses, closed } = await raw(
          port(s, side),
          async (write, got) => {
            write(`GET /no-snapshot?x=1 HTTP/1.1\r\nHost: ${host}\r\nx-request-id: rid-get\r\n\r\n`);
            await responsesReached(got, 1);
            write(
              `POST /orders HTTP/1.1\r\nHost: ${host}\r\nx-request-id: rid-post\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nhello world`,
            );
            await responsesReached(got, 2);
            write(`HEAD /head HTTP/1.1\r\nHost: ${host}\r\nx-request-id: rid-head\r\n\r\n`);
            await responsesReached(got, 3);
            write(`GET /last HTTP/1.1\r\nHost: ${host}\r\nx-request-id: rid-last\r\n\r\n`);
          },
          { count: 4, methods: ['GET', 'POST', 'HEAD', 'GET'], timeoutMs: 10_000 },
        );
        expect(closed, `${path}: the connection stays open after local replies`).toBe(false);
        expect(responses).toHaveLength(4);
        const body = JSON.stringify({ code: 'NO_SNAPSHOT', message: REASON });
        const expected = {
          status: 503,
          headers: {
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
            'x-novamesh-error': 'NO_SNAPSHOT',
            'x-novamesh-reason': REASON,
            connection: 'keep-alive',
            'keep-alive': 'timeout=65',
          },
        };
        const got = responses.map(stable);
        expect(got[0], path).toEqual({ ...expected, body });
        expect(got[1], path).toEqual({ ...expected, body });
        expect(got[2], `${path}: HEAD has the headers, no body`).toEqual({ ...expected, body: '' });
        expect(got[3], path).toEqual({ ...expected, body });
        answers[path] = got;
        // Nothing reached a workload: the answers are the sidecar's own.
        expect(lone.workload.hits.length).toBe(workloadHits);
        expect(lone.orders.hits.length).toBe(ordersHits);

        // The access log (SIDECAR_ACCESS_LOG=errors writes every local reply) and the request metrics.
        const records = await waitFor(
          () => {
            const r = accessLog(s, from, (l) => l.includes(`"direction":"${side}"`));
            return r.length >= 4 ? r : undefined;
          },
          { timeoutMs: 5_000, what: `${path}: four ${side} access-log records` },
        );
        expect(records).toHaveLength(4);
        const common =
          side === 'outbound'
            ? { direction: 'outbound', status: 503, upstream: 'orders', error: 'NO_SNAPSHOT' }
            : { direction: 'inbound', status: 503, error: 'NO_SNAPSHOT' };
        const expectedRecords = [
          ['GET', '/no-snapshot', 'rid-get'],
          ['POST', '/orders', 'rid-post'],
          ['HEAD', '/head', 'rid-head'],
          ['GET', '/last', 'rid-last'],
        ].map(([method, p, requestId]) => ({
          level: 'info',
          service: 'sidecar',
          meshService: 'shop',
          component: 'access',
          msg: 'access',
          ...common,
          method,
          path: p,
          ...(side === 'outbound' ? { requestId } : {}),
        }));
        expect(records, `${path}: access log`).toEqual(expectedRecords);
        logs[path] = records;

        const after = await metrics(s);
        const labels = `direction="${side}",upstream="${side === 'outbound' ? 'orders' : ''}",status="503",error="NO_SNAPSHOT"`;
        expect(
          metricValue(after, 'novamesh_sidecar_requests_total', labels) - metricValue(before, 'novamesh_sidecar_requests_total', labels),
        ).toBe(4);
        // Which path answered: the fast path counts what it served itself, node:http does not.
        const served =
          side === 'outbound' ? 'novamesh_sidecar_fast_path_requests_total' : 'novamesh_sidecar_inbound_fast_path_requests_total';
        expect(metricValue(after, served) - metricValue(before, served), `${path}: requests the fast path served`).toBe(
          path === 'fast path' ? 4 : 0,
        );
      }
      expect(answers['fast path']).toEqual(answers['node:http']);
      expect(logs['fast path']).toEqual(logs['node:http']);
      // And still no snapshot: nothing above came from a control plane.
      expect(await snapshotVersion(bare)).toBeNull();
      expect(await snapshotVersion(bareSlow)).toBeNull();
    },
  );
});

describe('SIDECAR_HEADERS_TIMEOUT: a request head must arrive whole in time', () => {
  const cases = () =>
    (['outbound', 'inbound'] as const).flatMap((side) =>
      [
        ['fast path', timed],
        ['node:http', timedSlow],
      ].map(([path, s]) => ({ name: `${side} ${path as string}`, side, s: s as SidecarProcess })),
    );

  /** Sends `send` on a raw connection to each case's port at once; the outcome and how long until it was known. */
  async function allAt(
    list: { name: string; side: 'outbound' | 'inbound'; s: SidecarProcess }[],
    send: (write: (b: string) => void, responses: RawResponse[]) => Promise<void> | void,
    count: number,
    timeoutMs: number,
  ) {
    return Promise.all(
      list.map(async ({ name, side, s }) => {
        const t0 = performance.now();
        const r = await raw(port(s, side), send, { count, timeoutMs });
        return { name, ms: performance.now() - t0, ...r };
      }),
    );
  }

  it('answers half a request head with 408 after 1 s and closes the connection (fast path and node:http, outbound and inbound)', async () => {
    const hits = lone.workload.hits.length + lone.orders.hits.length;
    const results = await allAt(cases(), (write) => write('GET /half HTTP/1.1\r\nHost: orders.mesh\r\nx-par'), 1, 6_000);
    for (const r of results) {
      expect(
        r.responses.map((x) => x.status),
        r.name,
      ).toEqual([408]);
      expect(r.responses[0]?.headers.connection, r.name).toBe('close');
      expect(r.closed, `${r.name}: connection closed`).toBe(true);
      // Not at once (the limit is 1 s), and within a couple of seconds (node:http checks every quarter of it).
      expect(r.ms, r.name).toBeGreaterThanOrEqual(950);
      expect(r.ms, r.name).toBeLessThan(3_000);
    }
    expect(lone.workload.hits.length + lone.orders.hits.length).toBe(hits);
  });

  it('counts from the first byte: a head trickling in a byte at a time still gets 408 after 1 s', async () => {
    const head = `GET /trickle HTTP/1.1\r\nHost: orders.mesh\r\nx-slow: ${'a'.repeat(100)}`;
    const results = await allAt(
      cases(),
      async (write, responses) => {
        for (let i = 0; i < head.length && responses.length === 0; i++) {
          write(head[i] as string);
          await sleep(50);
        }
      },
      1,
      4_000,
    );
    for (const r of results) {
      expect(
        r.responses.map((x) => x.status),
        r.name,
      ).toEqual([408]);
      expect(r.closed, r.name).toBe(true);
      expect(r.ms, r.name).toBeGreaterThanOrEqual(950);
      expect(r.ms, r.name).toBeLessThan(3_000);
    }
  });

  it('serves complete heads sent slowly within the limit, also after an idle pause longer than the limit on a keep-alive connection', async () => {
    const ordersHits = lone.orders.hits.length;
    const workloadHits = lone.workload.hits.length;
    /** A head in 4 parts 200 ms apart (about 600 ms in all, under the 1 s limit). */
    const slowly = async (write: (b: string) => void, head: string) => {
      const parts = [head.slice(0, 10), head.slice(10, 25), head.slice(25, 40), head.slice(40)];
      for (const [i, part] of parts.entries()) {
        if (i > 0) await sleep(200);
        write(part);
      }
    };
    const results = await allAt(
      cases(),
      async (write, responses) => {
        await slowly(write, 'GET /slow/1 HTTP/1.1\r\nHost: orders.mesh\r\nx-request-id: slow-1\r\nx-pad: 0123456789\r\n\r\n');
        await responsesReached(responses, 1);
        await sleep(1_300); // idle between requests: not a head in progress, so no 408
        await slowly(write, 'GET /slow/2 HTTP/1.1\r\nHost: orders.mesh\r\nx-request-id: slow-2\r\nx-pad: 0123456789\r\n\r\n');
      },
      2,
      8_000,
    );
    for (const r of results) {
      expect(
        r.responses.map((x) => x.status),
        `${r.name}: ${r.responses.map((x) => x.body.toString()).join(' | ')}`,
      ).toEqual([200, 200]);
      expect(r.closed, `${r.name}: connection kept`).toBe(false);
      const apps = r.responses.map((x) => x.headers['x-app']);
      expect(apps, r.name).toEqual(r.name.startsWith('outbound') ? ['orders', 'orders'] : ['shop', 'shop']);
      expect(r.responses.map((x) => (JSON.parse(x.body.toString()) as { url: string }).url)).toEqual(['/slow/1', '/slow/2']);
    }
    expect(lone.orders.hits.length - ordersHits).toBe(4);
    expect(lone.workload.hits.length - workloadHits).toBe(4);
  });

  it('keeps the default (60 s) without SIDECAR_HEADERS_TIMEOUT: half a head is still waiting after 2 s', async () => {
    const list = (['outbound', 'inbound'] as const).flatMap((side) => [
      { name: `${side} fast path`, side, s: bare },
      { name: `${side} node:http`, side, s: bareSlow },
    ]);
    const results = await allAt(list, (write) => write('GET /half HTTP/1.1\r\nHost: orders.mesh\r\nx-par'), 1, 2_000);
    for (const r of results) {
      expect(r.responses, r.name).toEqual([]);
      expect(r.closed, r.name).toBe(false);
    }
  });
});
