#!/usr/bin/env node
// The `npm start` demo: two small HTTP services (two endpoints each) that register themselves
// through the SDK, heartbeat, and answer discovery's health checks — so `meshctl get services`
// shows something real a few seconds after start. NOVAMESH_DEMO=0 turns it off.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { MeshManager } = createRequire(import.meta.url)(join(root, 'libs/sdk/dist/index.js'));
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';

function serve(name, id) {
  return new Promise((resolve) => {
    const srv = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ service: name, endpoint: id, path: req.url }));
    });
    srv.listen(0, '127.0.0.1', () => resolve({ srv, port: srv.address().port }));
  });
}

const mesh = new MeshManager({ servers: natsUrl, name: 'novamesh-demo', heartbeat: { ttl: '15s' } });
for (let attempt = 0; ; attempt++) {
  try {
    await mesh.initialize();
    break;
  } catch (e) {
    if (attempt >= 40) throw e;
    await new Promise((r) => setTimeout(r, 250)); // discovery may still be provisioning streams
  }
}
const servers = [];
for (const [name, version] of [
  ['payment', 'v1'],
  ['catalog', 'v2'],
]) {
  const endpoints = [];
  for (const i of [1, 2]) {
    const { srv, port } = await serve(name, `${name}-${i}`);
    servers.push(srv);
    endpoints.push({ id: `${name}-${i}`, address: '127.0.0.1', port, labels: { version, zone: i === 1 ? 'a' : 'b' } });
  }
  await mesh.registerService(
    { name, type: 'http', port: 8080, endpoints, healthCheck: { protocol: 'http', path: '/healthz', interval: '5s', timeout: '1s' } },
    { wait: true },
  );
}
// A canary route for catalog, so `meshctl get policies` and the effective policy show something.
for (let attempt = 0; attempt < 40; attempt++) {
  try {
    await mesh.applyPolicy({
      kind: 'RouteRule',
      name: 'catalog-canary',
      serviceName: 'catalog',
      subsets: [
        { name: 'zone-a', labels: { zone: 'a' } },
        { name: 'zone-b', labels: { zone: 'b' } },
      ],
      routes: [
        {
          name: 'default',
          split: [
            { subset: 'zone-a', weight: 90 },
            { subset: 'zone-b', weight: 10 },
          ],
        },
      ],
    });
    break;
  } catch (e) {
    if (e?.code !== 'MESH_UNAVAILABLE' && e?.code !== 'MESH_TIMEOUT') throw e;
    await new Promise((r) => setTimeout(r, 250)); // the policy service may still be starting
  }
}
process.stderr.write(
  'demo: registered payment and catalog (2 endpoints each), applied RouteRule catalog-canary — try `npx meshctl get services` and `npx meshctl get policies`\n',
);

const stop = async () => {
  await mesh.deregisterService('payment', { drain: 0 }).catch(() => undefined);
  await mesh.deregisterService('catalog', { drain: 0 }).catch(() => undefined);
  await mesh.close();
  for (const s of servers) s.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
