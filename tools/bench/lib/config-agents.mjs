// Lightweight sidecars for the propagation benchmark, many in one process: each follows one
// service's snapshot subject `mesh.v1.config.proxy.<service>` through JetStream exactly as a
// sidecar's control-plane link does (`followLastValues` of @novamesh/bus: an ordered consumer,
// last value per subject first, then every change) and checks each snapshot as the sidecar's
// SnapshotStore does (JSON, the ProxySnapshotV1 schema, the content hash) — without a data plane
// to compile it into or a disk to write it to.
// Usage: node config-agents.mjs '{"natsUrl":…,"services":[…],"shared":"…"}'. Prints JSON lines:
//   {"msg":"agents ready"} once every consumer exists, then for each snapshot received
//   {"s":<service>,"v":<version>,"m":<marker>,"t":<epoch ms, µs precision>}, where the marker says
//   which benchmark change the snapshot carries (see markerOf).
import { createRequire } from 'node:module';

const opts = JSON.parse(process.argv[2] ?? '{}');
const require = createRequire(import.meta.url);
const { connect } = require('@nats-io/transport-node');
const { jetstream } = require('@nats-io/jetstream');
const { followLastValues } = require('@novamesh/bus');
const { ProxySnapshotV1, streams, subjects } = require('@novamesh/contracts');
const { hashSnapshot } = require('@novamesh/proxy-config');

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
const js = jetstream(nc);
const followers = [];
for (let i = 0; i < opts.services.length; i += 25) {
  const batch = opts.services.slice(i, i + 25).map((service) =>
    followLastValues({
      js,
      stream: streams.proxy,
      filterSubject: subjects.proxyConfig(service),
      onMessage: (m) => {
        const t = now();
        const parsed = ProxySnapshotV1.safeParse(JSON.parse(m.string()));
        if (!parsed.success || parsed.data.service !== service || hashSnapshot(parsed.data) !== parsed.data.hash) {
          out.push(JSON.stringify({ s: service, bad: true, t }));
          return;
        }
        out.push(JSON.stringify({ s: service, v: parsed.data.version, m: markerOf(parsed.data), t }));
      },
    }),
  );
  followers.push(...(await Promise.all(batch)));
}
process.stdout.write(`${JSON.stringify({ msg: 'agents ready', services: opts.services.length })}\n`);
process.on('SIGTERM', async () => {
  flush();
  await Promise.all(followers.map((f) => f.stop())).catch(() => undefined);
  await nc.close().catch(() => undefined);
  process.exit(0);
});
