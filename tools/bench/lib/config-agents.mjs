// Lightweight sidecars for the propagation benchmark, many in one process: each follows one
// service's snapshot subject `mesh.v1.config.proxy.<service>` exactly as a sidecar's control-plane
// link does (`followLastValue` of @novamesh/bus: a core NATS subscription for each change as it is
// published, and the stored last value read back from MESH_PROXY) and offers each snapshot to the
// sidecar's own SnapshotStore (apps/sidecar: JSON, the ProxySnapshotV1 schema, the service, the
// content hash, newer than the one it holds; a live one of the same version is left to the stored
// one) — without a data plane to compile it into or a disk to write it to.
// Usage: node config-agents.mjs '{"natsUrl":…,"services":[…],"shared":"…"}'. Prints JSON lines:
//   {"msg":"agents ready"} once every consumer exists, then for each snapshot applied
//   {"s":<service>,"v":<version>,"m":<marker>,"t":<epoch ms, µs precision>}, where the marker says
//   which benchmark change the snapshot carries (see markerOf), or {"s":…,"bad":true,"t":…} for a refused one.
import { createRequire } from 'node:module';

const opts = JSON.parse(process.argv[2] ?? '{}');
const require = createRequire(import.meta.url);
const { connect } = require('@nats-io/transport-node');
const { followLastValue } = require('@novamesh/bus');
const { streams, subjects } = require('@novamesh/contracts');
const { SnapshotStore } = require('../../../apps/sidecar/dist/snapshot-store.js');

const now = () => performance.timeOrigin + performance.now();
const CHANGE = /bench-change-(\d+)/;

/**
 * Which change a snapshot carries: the k of `bench-change-<k>` in its inbound authorization (the
 * mesh-wide AuthorizationPolicy scenario), or the shared upstream's request timeout − 10,000 ms
 * (the TrafficPolicy scenario); -1 for neither.
 */
function markerOf(snap) {
  const authz = JSON.stringify(snap.inbound.authorization).match(CHANGE);
  if (authz) return Number(authz[1]);
  const shared = snap.upstreams.find((u) => u.service === opts.shared);
  const t = shared?.timeouts?.request;
  return typeof t === 'number' && t > 10_000 ? t - 10_000 : -1;
}

const out = [];
const flush = () => {
  if (out.length) process.stdout.write(`${out.splice(0).join('\n')}\n`);
};
setInterval(flush, 20).unref();

const nc = await connect({ servers: opts.natsUrl, name: `bench-config-agents-${process.pid}` });
const followers = [];
for (let i = 0; i < opts.services.length; i += 25) {
  const batch = opts.services.slice(i, i + 25).map((service) => {
    // No data plane to apply to, and `persist: false`: nothing is written to disk.
    const store = new SnapshotStore(service, '/nonexistent', () => undefined);
    const follower = followLastValue({
      nc,
      stream: streams.proxy,
      subject: subjects.proxyConfig(service),
      onValue: (data, source) => {
        const t = now();
        const outcome = store.offer(data, { persist: false, live: source === 'live' });
        if (outcome.reason) out.push(JSON.stringify({ s: service, bad: true, t }));
        if (!outcome.applied) return;
        const snap = store.snapshot;
        out.push(JSON.stringify({ s: service, v: snap.version, m: markerOf(snap), t }));
      },
    });
    followers.push(follower);
    return follower.refresh();
  });
  await Promise.all(batch);
}
process.stdout.write(`${JSON.stringify({ msg: 'agents ready', services: opts.services.length })}\n`);
process.on('SIGTERM', async () => {
  flush();
  for (const f of followers) f.stop();
  await nc.close().catch(() => undefined);
  process.exit(0);
});
