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

afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  await m?.dispose();
});

/** Opens a WebSocket to `service` through web's outbound port, as an app in the mesh does. */
async function open(service: string, path: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${web.ports.outbound}${path}`, { headers: { host: `${service}.mesh` } });
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
async function refused(service: string, path: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  const ws = new WebSocket(`ws://127.0.0.1:${web.ports.outbound}${path}`, { headers: { host: `${service}.mesh` } });
  ws.on('error', () => undefined);
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
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
