import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { type PolicyInput, streams } from '@novamesh/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConfigDump, call, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// MESH_PROXY lost while proxy-config is down: the proxy-config that starts next finds no snapshot
// and numbers them from 1 again. Sidecars that kept running hold higher versions; they must still
// take the new ones (from a second read of what the stream holds), not wait until the numbers
// pass theirs.
let m: TestMesh;
let web: SidecarProcess;

const algorithmOf = (d: ConfigDump) => d.snapshot?.upstreams.find((u) => u.service === 'orders')?.loadBalancing.algorithm;
const traffic = (algorithm: string) =>
  ({ kind: 'TrafficPolicy', name: 'orders-traffic', serviceName: 'orders', loadBalancing: { algorithm } }) as PolicyInput;

beforeAll(async () => {
  m = await TestMesh.start();
  await m.sidecar('orders', await m.app('o1'), { token: false });
  web = await m.sidecar('web', await m.app('web'), { token: false, env: { SIDECAR_UPSTREAMS: 'orders' } });
  await m.until(web, 'the orders endpoint', (d) => d.snapshot?.upstreams[0]?.endpoints.length === 1);
}, 120_000);

afterAll(async () => {
  await m?.dispose();
});

describe('MESH_PROXY lost while proxy-config is down', () => {
  it('a running sidecar takes the snapshots numbered from 1 again, within seconds, and keeps serving meanwhile', async () => {
    for (const algorithm of ['random', 'least-request', 'round-robin', 'random', 'least-request']) {
      expect((await m.mesh.applyPolicy(traffic(algorithm))).ok).toBe(true);
      await m.until(web, `load balancing ${algorithm}`, (d) => algorithmOf(d) === algorithm);
    }
    const before = await web.version();
    expect(before).toBeGreaterThanOrEqual(5);

    await m.stopProxyConfig();
    const nc = await connect({ servers: m.nats.url });
    try {
      await (await jetstreamManager(nc)).streams.delete(streams.proxy);
    } finally {
      await nc.close();
    }
    expect((await call(web, 'orders', '/during')).status).toBe(200);
    await m.startProxyConfig();

    // proxy-config publishes web's snapshot as version 1 (least-request, as before), then the change as 2.
    expect((await m.mesh.applyPolicy(traffic('weighted'))).ok).toBe(true);
    const dump = await m.until(web, 'the change published after the restart', (d) => algorithmOf(d) === 'weighted', 30_000);
    expect(dump.snapshot?.version).toBeLessThan(before);
    expect(web.proc.output.some((l) => l.includes('its versions started over'))).toBe(true);
    expect((await call(web, 'orders', '/after')).status).toBe(200);

    // From then on changes arrive as usual, live.
    expect((await m.mesh.applyPolicy(traffic('round-robin'))).ok).toBe(true);
    await m.until(web, 'the next change', (d) => algorithmOf(d) === 'round-robin', 10_000);
  }, 90_000);
});
