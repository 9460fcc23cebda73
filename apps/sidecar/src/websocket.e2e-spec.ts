import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PolicyInput } from '@novamesh/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// WebSockets (HTTP/1.1 Upgrade) through the mesh: app → sidecar A (outbound) → mTLS → sidecar B
// (inbound) → a real WebSocket server (the `ws` library), with real clients.
let m: TestMesh;
let web: SidecarProcess;
let chat: SidecarProcess;
let server: Server;
/** What the chat app saw of each upgrade request it accepted. */
const upgrades: { url: string; headers: IncomingMessage['headers'] }[] = [];

beforeAll(async () => {
  m = await TestMesh.start();
  server = createServer((_req, res) => res.end('plain http'));
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/declined') {
      socket.end('HTTP/1.1 409 Conflict\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nroom is full\n');
      return;
    }
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  chat = await m.sidecar('chat', { name: 'chat', port });
  web = await m.sidecar('web', await m.app('web'), { env: { SIDECAR_UPSTREAMS: 'chat' } });
  await m.until(
    web,
    'the chat endpoint and a certificate',
    (d) => d.snapshot?.upstreams[0]?.endpoints.length === 1 && d.certificate !== null,
  );
  await m.until(chat, 'a certificate', (d) => d.certificate !== null);
}, 120_000);

/** Opens a WebSocket made by `connect`, again while its upgrade is refused as OVERLOADED (a slot given back is freed once the old connection's close is seen). */
async function waitForOpen(connect: () => WebSocket): Promise<WebSocket> {
  for (let i = 0; ; i++) {
    try {
      return await opened(connect());
    } catch (err) {
      if (i >= 50 || !String(err).includes('503')) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  await m?.dispose();
});

/** Opens a WebSocket to `service` through the outbound port of `via` (web), as an app in the mesh does. */
async function open(service: string, path: string, via: SidecarProcess = web): Promise<WebSocket> {
  return opened(new WebSocket(`ws://127.0.0.1:${via.ports.outbound}${path}`, { headers: { host: `${service}.mesh` } }));
}

/** Resolves with `ws` once it is open; rejects with the status and reason of a refused upgrade. */
async function opened(ws: WebSocket): Promise<WebSocket> {
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`upgrade refused: ${res.statusCode} ${res.headers['x-novamesh-reason']}`)),
    );
  });
  return ws;
}

/** Sends `data` and resolves with the next message. */
async function echo(ws: WebSocket, data: string | Buffer): Promise<Buffer> {
  const got = once(ws, 'message') as Promise<[Buffer, boolean]>;
  ws.send(data);
  return (await got)[0];
}

/** An upgrade that does not succeed: its status, headers and body. */
async function refused(
  service: string,
  path: string,
  via: SidecarProcess = web,
): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return refusal(new WebSocket(`ws://127.0.0.1:${via.ports.outbound}${path}`, { headers: { host: `${service}.mesh` } }));
}

/** How the upgrade of `ws` was refused: its status, headers and body. */
async function refusal(ws: WebSocket): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  ws.on('error', () => undefined);
  const accepted = once(ws, 'open').then(() => {
    ws.terminate();
    throw new Error('the upgrade was accepted');
  });
  const [, res] = (await Promise.race([once(ws, 'unexpected-response'), accepted])) as [unknown, IncomingMessage];
  let body = '';
  for await (const chunk of res) body += chunk;
  return { status: res.statusCode ?? 0, headers: res.headers, body };
}

async function apply(policy: PolicyInput): Promise<void> {
  expect((await m.mesh.applyPolicy(policy)).ok).toBe(true);
}

describe('WebSocket through two sidecars over mTLS', () => {
  it('carries text and binary messages both ways; the app sees the path and the caller’s mesh identity', async () => {
    const ws = await open('chat', '/rooms/1?user=ann');
    try {
      expect((await echo(ws, 'hello')).toString()).toBe('hello');
      const big = Buffer.alloc(256 * 1024, 7);
      expect(Buffer.compare(await echo(ws, big), big)).toBe(0);
      const last = upgrades.at(-1);
      expect(last?.url).toBe('/rooms/1?user=ann');
      expect(last?.headers['x-forwarded-client-cert']).toContain('URI=spiffe://novamesh.local/ns/default/svc/web');
      expect(last?.headers['x-request-id']).toMatch(/.+/);
    } finally {
      ws.close();
    }
  });

  it('keeps an open WebSocket across new snapshots on both sidecars', async () => {
    const ws = await open('chat', '/rooms/2');
    try {
      const before = { web: await web.version(), chat: await chat.version() };
      await apply({
        kind: 'TrafficPolicy',
        name: 'chat-traffic',
        serviceName: 'chat',
        loadBalancing: { algorithm: 'random' },
      } as PolicyInput);
      await apply({
        kind: 'AuthorizationPolicy',
        name: 'chat-audit',
        serviceName: 'chat',
        action: 'AUDIT',
        rules: [{ to: { paths: ['/audited'] } }],
      });
      await m.until(web, 'a new snapshot', (d) => (d.snapshot?.version ?? 0) > before.web);
      await m.until(chat, 'a new snapshot', (d) => (d.snapshot?.version ?? 0) > before.chat);
      expect((await echo(ws, 'still here')).toString()).toBe('still here');
    } finally {
      ws.close();
      await m.mesh.deletePolicy('AuthorizationPolicy', 'chat-audit');
      await m.mesh.deletePolicy('TrafficPolicy', 'chat-traffic');
    }
  });

  it('authorizes the upgrade like any request: a DENY gets 403 with the reason, before the app sees anything', async () => {
    await apply({
      kind: 'AuthorizationPolicy',
      name: 'chat-deny-private',
      serviceName: 'chat',
      action: 'DENY',
      rules: [{ to: { paths: ['/private/*'] } }],
    });
    try {
      await m.until(
        chat,
        'the DENY policy',
        (d) => d.snapshot?.inbound.authorization.policies.some((p) => p.name === 'chat-deny-private') === true,
      );
      const seen = upgrades.length;
      const r = await refused('chat', '/private/room');
      expect(r.status).toBe(403);
      expect(r.headers['x-novamesh-error']).toBe('RBAC_DENIED');
      expect(r.headers['x-novamesh-reason']).toContain('chat-deny-private');
      expect(JSON.parse(r.body).code).toBe('RBAC_DENIED');
      expect(upgrades.length).toBe(seen);
      // Other paths still upgrade.
      const ws = await open('chat', '/rooms/3');
      expect((await echo(ws, 'ok')).toString()).toBe('ok');
      ws.close();
    } finally {
      await m.mesh.deletePolicy('AuthorizationPolicy', 'chat-deny-private');
    }
  });

  it('relays an upgrade the app declines, with its status and body', async () => {
    const r = await refused('chat', '/declined');
    expect(r.status).toBe(409);
    expect(r.body).toBe('room is full\n');
    expect(r.headers['x-novamesh-error']).toBeUndefined();
  });

  it('answers an upgrade to a service it may not call with its own 404 NO_ROUTE', async () => {
    const r = await refused('nosuch', '/rooms/1');
    expect(r.status).toBe(404);
    expect(r.headers['x-novamesh-error']).toBe('NO_ROUTE');
  });
});

describe('tunnels are bounded like requests', () => {
  // web2 calls chat through a sidecar of its own that holds at most 2 requests (outbound) and
  // closes tunnels idle for 1.5 s; room's sidecar (in front of the same WebSocket server) holds at
  // most 2 (inbound) and closes idle tunnels after 1.5 s, reached here straight on its inbound port
  // (permissive mTLS), so each side's bound is seen on its own.
  let web2: SidecarProcess;
  let room: SidecarProcess;
  const bounds = { SIDECAR_MAX_IN_FLIGHT: '2', SIDECAR_TUNNEL_IDLE_TIMEOUT: '1500ms' };
  const direct = (path: string) => new WebSocket(`ws://127.0.0.1:${room.ports.inbound}${path}`);
  /** Resolves when `ws` closes (with its code and the time it took), or after 10 s with code 0: still open. */
  const closing = async (ws: WebSocket) => {
    const t0 = performance.now();
    const stillOpen = new Promise<[number]>((r) => setTimeout(() => r([0]), 10_000).unref());
    const [code] = (await Promise.race([once(ws, 'close'), stillOpen])) as [number];
    return { code, ms: performance.now() - t0 };
  };

  beforeAll(async () => {
    const port = (server.address() as AddressInfo).port;
    [web2, room] = await Promise.all([
      m.sidecar('web2', await m.app('web2'), { env: { ...bounds, SIDECAR_UPSTREAMS: 'chat' } }),
      m.sidecar('room', { name: 'room', port }, { env: bounds }),
    ]);
    await m.until(
      web2,
      'the chat endpoint and a certificate',
      (d) => d.snapshot?.upstreams[0]?.endpoints.length === 1 && d.certificate !== null,
    );
    await m.until(room, 'a snapshot', (d) => d.snapshot !== null);
  }, 60_000);

  it('an open WebSocket holds one of SIDECAR_MAX_IN_FLIGHT until it closes, outbound and inbound: past the bound 503 OVERLOADED', async () => {
    for (const side of [
      {
        name: 'outbound',
        connect: (path: string) => new WebSocket(`ws://127.0.0.1:${web2.ports.outbound}${path}`, { headers: { host: 'chat.mesh' } }),
        plain: `http://127.0.0.1:${web2.ports.outbound}/plain`,
        host: 'chat.mesh',
      },
      { name: 'inbound', connect: direct, plain: `${room.inbound}/plain`, host: undefined },
    ]) {
      const first = await opened(side.connect('/held/1'));
      const second = await opened(side.connect('/held/2'));
      try {
        const third = await refusal(side.connect('/held/3'));
        expect({ side: side.name, status: third.status, error: third.headers['x-novamesh-error'] }).toEqual({
          side: side.name,
          status: 503,
          error: 'OVERLOADED',
        });
        expect(third.headers['x-novamesh-reason']).toContain('SIDECAR_MAX_IN_FLIGHT (2)');
        // Ordinary requests share the bound.
        const plain = await fetch(side.plain, side.host ? { headers: { host: side.host } } : {});
        expect(plain.status).toBe(503);
        expect((await echo(first, 'still open')).toString()).toBe('still open');
        // A closed tunnel gives its slot back.
        first.close();
        await once(first, 'close');
        const again = await waitForOpen(() => side.connect('/held/4'));
        expect((await echo(again, 'in')).toString()).toBe('in');
        again.close();
        await once(again, 'close');
      } finally {
        // Closed, and their slots given back, before the next test opens tunnels through the same sidecars.
        for (const ws of [first, second])
          if (ws.readyState !== WebSocket.CLOSED) {
            const closed = once(ws, 'close');
            ws.close();
            await closed;
          }
      }
    }
  });

  it('closes a tunnel that carried nothing for SIDECAR_TUNNEL_IDLE_TIMEOUT (1.5 s here), not one in use, outbound and inbound', async () => {
    // Slots the previous test gave back are free once web2 has seen those connections close.
    const through = (path: string) =>
      waitForOpen(() => new WebSocket(`ws://127.0.0.1:${web2.ports.outbound}${path}`, { headers: { host: 'chat.mesh' } }));
    const busy = await through('/busy');
    const idle = await through('/idle');
    const idleClosed = closing(idle);
    // busy exchanges a message every 300 ms for 3 s: twice the idle timeout.
    let lastEcho = 0;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      expect((await echo(busy, `tick ${i}`)).toString()).toBe(`tick ${i}`);
      lastEcho = performance.now();
    }
    const { code, ms } = await idleClosed;
    expect(code).toBe(1006); // cut by the proxy, without a close frame
    expect(ms).toBeLessThan(3_000); // closed while busy went on
    expect(busy.readyState).toBe(WebSocket.OPEN);
    // Left alone now, busy goes the same way, the idle time counted from its last message.
    const busyClosed = await closing(busy);
    expect(busyClosed.code).toBe(1006);
    expect(performance.now() - lastEcho).toBeGreaterThanOrEqual(1_400);
    // The inbound side's own timer, with nothing in front of it.
    const inbound = await waitForOpen(() => direct('/idle-inbound'));
    const inboundClosed = await closing(inbound);
    expect(inboundClosed.code).toBe(1006);
    expect(inboundClosed.ms).toBeGreaterThanOrEqual(1_400);
  });
});

describe('SIGTERM', () => {
  it('keeps open WebSockets through the drain after SIGTERM (SIDECAR_DRAIN, 200 ms here), then ends them', async () => {
    const ws = await open('chat', '/rooms/4');
    expect((await echo(ws, 'before')).toString()).toBe('before');
    const closed = once(ws, 'close');
    const t0 = performance.now();
    chat.proc.kill('SIGTERM');
    const [code] = (await closed) as [number];
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
    expect(code).toBe(1006); // the connection ended without a WebSocket close frame: the proxy cut it
    await chat.proc.stop('SIGTERM', 10_000);
  });
});
