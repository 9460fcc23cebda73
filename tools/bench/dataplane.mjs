import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ensureTool } from './lib/apt.mjs';
import { withCleanup } from './lib/cleanup.mjs';
import { measuredOn } from './lib/machine.mjs';
import { adminOf, MESH_BUILT, registerPlain, spawnScript, startControlPlane, startSidecar } from './lib/mesh.mjs';
import { startNginx } from './lib/nginx.mjs';
import { note } from './lib/progress.mjs';
import { int, ms, noiseObservation, spread, verdict } from './lib/report.mjs';
import { imgDirOf, natsLibs, profileDirOf, requireBuilt } from './lib/stack.mjs';
import { histogramFactory, medianByKey, ninesFor, percentileCurve, runsMeeting, stat, summarize } from './lib/stats.mjs';
import { barChart, percentileChart } from './lib/svg.mjs';
import { latency, perReqUs, probe, throughput, until200 } from './lib/traffic.mjs';

export const title = 'Data plane';
export const describe =
  'throughput (32 connections) and latency p50/p99 at a fixed 1,000 req/s of a small GET on loopback: direct, through nginx, through one sidecar, and along the mesh path sidecar → sidecar (plain and mTLS), with the CPU of every process';

const AIMS = { sidecarVsNginx: 0.5, meshAddedP99Ms: 1 };
const FULL = { connections: 32, tputSeconds: 8, tputWarmup: 2, rate: 1000, latSeconds: 10, latWarmup: 2, repetitions: 5 };
const QUICK = { ...FULL, tputSeconds: 3, tputWarmup: 1, latSeconds: 3, latWarmup: 1, repetitions: 1 };

/** The paths measured; `proxies` name the processes that do the proxying (for CPU per request). */
const CONFIGS = [
  { id: 'direct', label: 'direct', path: 'client → upstream', proxies: [], color: '#6b7280' },
  { id: 'nginx', label: 'nginx', path: 'client → nginx → upstream', proxies: ['nginx'], color: '#059669' },
  { id: 'sidecar', label: 'one sidecar', path: 'client → sidecar (outbound) → upstream', proxies: ['sidecar'], color: '#2563eb' },
  {
    id: 'sidecar-node',
    label: 'one sidecar, node:http path',
    path: 'client → sidecar (outbound, `SIDECAR_FAST_PATH=false`) → upstream',
    proxies: ['sidecar'],
    env: { SIDECAR_FAST_PATH: 'false' },
    color: '#7c3aed',
  },
  {
    id: 'mesh-plain',
    label: 'mesh, plain',
    path: 'client → sidecar A (outbound) → sidecar B (inbound) → app, plaintext',
    proxies: ['sidecar A', 'sidecar B'],
    color: '#d97706',
  },
  {
    id: 'mesh-mtls',
    label: 'mesh, mTLS',
    path: 'client → sidecar A (outbound) → mTLS → sidecar B (inbound) → app',
    proxies: ['sidecar A', 'sidecar B'],
    color: '#dc2626',
  },
];
const UPSTREAM = 'bench-upstream';
/** Paths measured a second time at the fixed rate with every process on the path on one core (taskset). */
const ONE_CORE = new Set(['direct', 'mesh-plain', 'mesh-mtls']);
const require = createRequire(import.meta.url);

function loadLibs(root) {
  requireBuilt(root, MESH_BUILT);
  return { ...natsLibs(), undici: require('undici'), hdr: require('hdr-histogram-js'), newHistogram: histogramFactory() };
}

/** One GET through a target; returns { status, text }. */
async function setUp(libs, scope, cfg, ctx, config, rep) {
  const { testing } = libs;
  if (config.id === 'direct') return { target: { url: `http://127.0.0.1:${ctx.upstreamPort}` }, pids: {} };
  if (config.id === 'nginx') {
    const port = await testing.freePort();
    const nginx = await startNginx(scope, testing, { bin: ctx.nginx.path, port, upstreamPort: ctx.upstreamPort });
    return { target: { url: `http://127.0.0.1:${port}` }, pids: { nginx: nginx.workerPid, 'nginx master': nginx.proc.pid } };
  }
  const sidecar = (opts) => startSidecar(scope, testing, ctx.cp, { profileDir: cfg.profileDir, ...opts });
  if (config.id === 'sidecar' || config.id === 'sidecar-node') {
    const id = `${config.id === 'sidecar' ? 'client' : 'client-node'}-r${rep}`;
    const sc = await sidecar({ id, service: id, appPort: ctx.upstreamPort, upstreams: [UPSTREAM], env: config.env ?? {} });
    const target = { url: `http://127.0.0.1:${sc.ports.outbound}`, host: `${UPSTREAM}.mesh` };
    await until200(libs, target, 'the sidecar to route to the upstream');
    return { target, pids: { sidecar: sc.proc.pid } };
  }
  // The mesh path: B in front of the app (the same upstream process), A calling B's service.
  const mtls = config.id === 'mesh-mtls';
  const suffix = `${mtls ? 'mtls' : 'plain'}-r${rep}`;
  const token = async (service) => (mtls ? (await ctx.cp.mesh.createJoinToken(service, { uses: 10, ttl: '1h' })).token : undefined);
  const b = await sidecar({
    id: `app-${suffix}`,
    service: `app-${suffix}`,
    appPort: ctx.upstreamPort,
    token: await token(`app-${suffix}`),
  });
  const a = await sidecar({
    id: `web-${suffix}`,
    service: `web-${suffix}`,
    appPort: ctx.upstreamPort,
    upstreams: [`app-${suffix}`],
    token: await token(`web-${suffix}`),
  });
  if (mtls) {
    // Both need their certificate before the first request: a connection A opens without one is
    // plaintext (permissive B accepts it) and keep-alive would reuse it for the whole run.
    for (const s of [a, b])
      await testing.waitFor(async () => (await adminOf(s, '/config_dump')).certificate, {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: `${s.id} to get its mesh certificate`,
      });
  }
  const target = { url: `http://127.0.0.1:${a.ports.outbound}`, host: `app-${suffix}.mesh` };
  await until200(libs, target, `${a.id} to route to ${b.id}`);
  // The inbound sidecar adds x-forwarded-client-cert only for a caller with a mesh certificate.
  const xfcc = JSON.parse((await probe(libs, target, '/whoami')).text).xfcc;
  if (mtls && !xfcc?.includes(`/svc/web-${suffix}`)) throw new Error(`the mTLS path is not mTLS: x-forwarded-client-cert ${xfcc}`);
  if (!mtls && xfcc) throw new Error(`the plain path carries a client certificate: ${xfcc}`);
  return { target, pids: { 'sidecar A': a.proc.pid, 'sidecar B': b.proc.pid }, xfcc };
}

/**
 * Runs `fn` with the processes `pids` (and their threads; children started meanwhile by this
 * process inherit it) allowed on core 0 only, then lets them use every core again.
 */
async function onOneCore(taskset, pids, fn) {
  const all = `0-${cpus().length - 1}`;
  const pin = (cpuList) => {
    for (const pid of pids) spawnSync(taskset, ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
  };
  pin('0');
  try {
    return await fn();
  } finally {
    pin(all);
  }
}

/**
 * One repetition: a fresh control plane and upstream, then every path in an order rotated by
 * `rep`, each with its own proxies: throughput, latency at the fixed rate, and (ONE_CORE paths,
 * with taskset) latency again on one core. A path that fails is reported, not fatal.
 */
async function runOnce(libs, cfg, tools, rep, configs) {
  return withCleanup(async (scope) => {
    const { testing } = libs;
    const cp = await startControlPlane(scope, testing, { ca: true });
    const upstream = await spawnScript(scope, testing, {
      name: 'upstream',
      script: 'http-upstream.mjs',
      args: [String(await testing.freePort())],
      ready: /"msg":"upstream ready"/,
    });
    const upstreamPort = JSON.parse(upstream.line).port;
    await registerPlain(cp.mesh, UPSTREAM, upstreamPort);
    const ctx = { cp, upstreamPort, ...tools };
    const out = {};
    const order = configs.map((_, i) => configs[(i + rep - 1) % configs.length]);
    for (const config of order) {
      if (config.id === 'nginx' && !tools.nginx.path) continue;
      // A path that cannot be set up (or fails mid-measurement) is reported, not fatal for the others.
      out[config.id] = await withCleanup(async (inner) => {
        const setup = await setUp(libs, inner, cfg, ctx, config, rep);
        const pids = { ...setup.pids, upstream: upstream.proc.pid };
        const tput = await throughput(libs, inner, cfg, ctx, setup.target, pids);
        const lat = await latency(libs, inner, cfg, ctx, setup.target, pids);
        // The same rate again with the generator, the proxies and the upstream all on core 0: every
        // hand-off is then a wake-up on the same core, none crosses to another (idle) core.
        const oneCore =
          tools.taskset.path && ONE_CORE.has(config.id)
            ? await onOneCore(tools.taskset.path, [process.pid, ...Object.values(pids)], () =>
                latency(libs, inner, cfg, ctx, setup.target, pids),
              )
            : undefined;
        const s = summarize(lat.latency);
        note(
          `  ${config.label}: ${int(tput.rps)} req/s (${tput.generator}), at ${cfg.rate}/s p50 ${ms(s?.p50)} p99 ${ms(s?.p99)}; errors ${tput.errors + lat.errors}, non-200 ${tput.non200 + lat.non200}`,
        );
        return { tput, lat, oneCore, xfcc: setup.xfcc };
      }).catch((e) => {
        note(`  ${config.label}: FAILED: ${e.message.split('\n')[0]}`);
        return { failed: e.message.split('\n')[0] };
      });
    }
    return out;
  });
}

/** The one-core latency runs of a path: percentiles, added vs direct's one-core run of the same repetition, CPU. */
function oneCoreOf(group, config, within) {
  const ones = group.filter((g) => g.oneCore);
  if (!ones.length) return undefined;
  const pct = (h, k) => summarize(h)?.[k];
  const added = (part, k) =>
    within((g, r) => (g.oneCore && r.direct?.oneCore ? pct(g.oneCore[part], k) - pct(r.direct.oneCore[part], k) : undefined));
  return {
    repetitions: ones.length,
    p50: stat(ones.map((g) => pct(g.oneCore.latency, 'p50'))),
    p99: stat(ones.map((g) => pct(g.oneCore.latency, 'p99'))),
    sendP50: stat(ones.map((g) => pct(g.oneCore.fromSend, 'p50'))),
    sendP99: stat(ones.map((g) => pct(g.oneCore.fromSend, 'p99'))),
    lagP99: stat(ones.map((g) => pct(g.oneCore.lag, 'p99'))),
    addedP50: added('latency', 'p50'),
    addedP99: added('latency', 'p99'),
    addedSendP99: added('fromSend', 'p99'),
    proxyUs: stat(ones.map((g) => perReqUs(g.oneCore.cpu, config.proxies, g.oneCore.rps))),
    errors: ones.reduce((a, g) => a + g.oneCore.errors, 0),
    non200: ones.reduce((a, g) => a + g.oneCore.non200, 0),
  };
}

function aggregate(libs, runs) {
  const aggs = [];
  for (const config of CONFIGS) {
    const group = runs.map((r) => r[config.id]).filter((g) => g && !g.failed);
    if (!group.length) continue;
    const pooled = libs.newHistogram();
    const pooledSend = libs.newHistogram();
    const pooledLag = libs.newHistogram();
    for (const g of group) {
      pooled.add(g.lat.latency);
      pooledSend.add(g.lat.fromSend);
      pooledLag.add(g.lat.lag);
    }
    const sums = group.map((g) => summarize(g.lat.latency));
    const sendSums = group.map((g) => summarize(g.lat.fromSend));
    // Ratios and added latency are taken within each repetition (same machine state), then the median.
    const ok = (g) => g && !g.failed;
    const within = (fn) => stat(runs.map((r) => (ok(r[config.id]) ? fn(r[config.id], r) : undefined)));
    const p = (g, k) => summarize(g.lat.latency)?.[k];
    aggs.push({
      id: config.id,
      config,
      repetitions: group.length,
      generator: group[0].tput.generator,
      rps: stat(group.map((g) => g.tput.rps)),
      vsDirect: within((g, r) => (ok(r.direct) ? g.tput.rps / r.direct.tput.rps : undefined)),
      vsNginx: within((g, r) => (ok(r.nginx) ? g.tput.rps / r.nginx.tput.rps : undefined)),
      tputP50: stat(group.map((g) => g.tput.p50)),
      tputP99: stat(group.map((g) => g.tput.p99)),
      p50: stat(sums.map((s) => s?.p50)),
      p99: stat(sums.map((s) => s?.p99)),
      p999: stat(sums.map((s) => s?.p999)),
      sendP50: stat(sendSums.map((s) => s?.p50)),
      sendP99: stat(sendSums.map((s) => s?.p99)),
      addedP50: within((g, r) => (ok(r.direct) ? p(g, 'p50') - p(r.direct, 'p50') : undefined)),
      addedP99: within((g, r) => (ok(r.direct) ? p(g, 'p99') - p(r.direct, 'p99') : undefined)),
      pooled: summarize(pooled),
      lag: summarize(pooledLag),
      curve: percentileCurve(pooled, ninesFor(pooled.totalCount)),
      maxNines: ninesFor(pooled.totalCount),
      errors: group.reduce((a, g) => a + g.tput.errors + g.lat.errors, 0),
      non200: group.reduce((a, g) => a + g.tput.non200 + g.lat.non200, 0),
      firstError: group.map((g) => g.lat.firstError).find(Boolean),
      requests: group.reduce((a, g) => a + (g.tput.requests ?? 0) + g.lat.requests, 0),
      cpuTput: medianByKey(group.map((g) => g.tput.cpu)),
      cpuLat: medianByKey(group.map((g) => g.lat.cpu)),
      proxyUsTput: stat(group.map((g) => perReqUs(g.tput.cpu, config.proxies, g.tput.rps))),
      proxyUsLat: stat(group.map((g) => perReqUs(g.lat.cpu, config.proxies, g.lat.rps))),
      oneCore: oneCoreOf(group, config, within),
      xfcc: group[0].xfcc,
    });
  }
  return aggs;
}

const rps = (n) => `${int(n)}/s`;
const ratio = (n) => (n === undefined ? '–' : `${(n * 100).toFixed(0)} %`);
const plusMs = (n) => (n === undefined ? '–' : `${n >= 0 ? '+' : ''}${ms(n)}`);
const us = (n) => (n === undefined ? '–' : `${int(n)} µs`);
const cores = (c, keys) =>
  keys
    .filter((k) => c[k] !== undefined)
    .map((k) => `${k} ${c[k].toFixed(2)}`)
    .join(', ');
const CPU_KEYS = ['nginx', 'sidecar', 'sidecar A', 'sidecar B', 'upstream', 'load generator', 'control plane', 'other', 'whole machine'];

function tables(aggs, cfg) {
  const reps = aggs[0]?.repetitions ?? 1;
  const med = reps > 1 ? `, median of ${reps} runs (range)` : '';
  const nginx = aggs.find((a) => a.id === 'nginx');
  const tput = [
    `| path | throughput, ${cfg.connections} connections${med} | vs direct | vs nginx | latency under that load: p50 / p99 | proxy CPU per request | cores busy |`,
    '|---|---:|---:|---:|---:|---:|---|',
    ...aggs.map((a) => {
      const aim =
        a.id === 'sidecar' && nginx ? ` (aim ≥ ${ratio(AIMS.sidecarVsNginx)})${verdict(a.vsNginx?.median >= AIMS.sidecarVsNginx)}` : '';
      return `| ${a.config.label}: ${a.config.path} | ${spread(a.rps, rps, int)} | ${a.id === 'direct' ? '—' : spread(a.vsDirect, ratio, ratio)} | ${a.id === 'nginx' || !nginx ? '—' : spread(a.vsNginx, ratio, ratio)}${aim} | ${ms(a.tputP50?.median)} / ${ms(a.tputP99?.median)} | ${a.config.proxies.length ? spread(a.proxyUsTput, us, int) : '—'} | ${cores(a.cpuTput, CPU_KEYS)} |`;
    }),
  ];
  const lat = [
    `| path | p50${med} | p99${med} | p99.9 | added vs direct: p50 / p99 | from actual send: p50 / p99 | proxy CPU per request | cores busy | requests / errors / non-200 (all runs, both phases) |`,
    '|---|---:|---:|---:|---:|---:|---:|---|---:|',
    ...aggs.map((a) => {
      const aim = a.id.startsWith('mesh')
        ? ` (aim ≤ +${ms(AIMS.meshAddedP99Ms)})${verdict(a.addedP99?.median <= AIMS.meshAddedP99Ms)}`
        : '';
      return `| ${a.config.label} | ${spread(a.p50, ms, (x) => ms(x).replace(' ms', ''))} | ${spread(a.p99, ms, (x) => ms(x).replace(' ms', ''))} | ${ms(a.p999?.median)} | ${a.id === 'direct' ? '—' : `${plusMs(a.addedP50?.median)} / ${plusMs(a.addedP99?.median)}${aim}`} | ${ms(a.sendP50?.median)} / ${ms(a.sendP99?.median)} | ${a.config.proxies.length ? spread(a.proxyUsLat, us, int) : '—'} | ${cores(a.cpuLat, CPU_KEYS)} | ${int(a.requests)} / ${int(a.errors)} / ${int(a.non200)} |`;
    }),
  ];
  const ones = aggs.filter((a) => a.oneCore);
  const sendAdded = (a) => (a.id === 'direct' ? '—' : plusMs(a.oneCore.addedSendP99?.median));
  const one = ones.length
    ? [
        `| path, every process on core 0 | p50${med} | p99${med} | added vs direct: p50 / p99 | from actual send: p50 / p99 (added p99) | generator lag p99 | proxy CPU per request | errors / non-200 |`,
        '|---|---:|---:|---:|---:|---:|---:|---:|',
        ...ones.map((a) => {
          const o = a.oneCore;
          return `| ${a.config.label} | ${spread(o.p50, ms, (x) => ms(x).replace(' ms', ''))} | ${spread(o.p99, ms, (x) => ms(x).replace(' ms', ''))} | ${a.id === 'direct' ? '—' : `${plusMs(o.addedP50?.median)} / ${plusMs(o.addedP99?.median)}`} | ${ms(o.sendP50?.median)} / ${ms(o.sendP99?.median)} (${sendAdded(a)}) | ${ms(o.lagP99?.median)} | ${a.config.proxies.length ? spread(o.proxyUs, us, int) : '—'} | ${int(o.errors)} / ${int(o.non200)} |`;
        }),
      ].join('\n')
    : '';
  return { tput: tput.join('\n'), lat: lat.join('\n'), one };
}

function aimsOf(aggs) {
  const aims = [];
  for (const sc of aggs.filter((a) => a.id === 'sidecar' && aggs.some((x) => x.id === 'nginx')))
    aims.push({
      name: 'one sidecar hop throughput vs nginx',
      aim: `≥ ${ratio(AIMS.sidecarVsNginx)}`,
      value: sc.vsNginx?.median,
      met: sc.vsNginx?.median >= AIMS.sidecarVsNginx,
      runs: sc.repetitions,
      runsMeetingAim: runsMeeting(sc.vsNginx, (v) => v >= AIMS.sidecarVsNginx),
    });
  for (const a of aggs.filter((x) => x.id.startsWith('mesh')))
    aims.push({
      name: `${a.config.label}: p99 added vs direct at 1,000 req/s`,
      aim: `≤ ${ms(AIMS.meshAddedP99Ms)}`,
      value: a.addedP99?.median,
      met: a.addedP99?.median <= AIMS.meshAddedP99Ms,
      runs: a.repetitions,
      runsMeetingAim: runsMeeting(a.addedP99, (v) => v <= AIMS.meshAddedP99Ms),
    });
  return aims;
}

/** The machine's own wake-up tail (calibration: one-byte loopback ping-pong between two processes), for the p99 observations. */
function pingTail(machine) {
  const c = machine.calibration;
  if (c?.pingP99Us === undefined) return '';
  return ` This machine's own floor, measured at the start of the run: a one-byte round trip between two processes over loopback (two wake-ups, no proxy work) took ${Math.round(c.pingP50Us)} µs at p50 and ${Math.round(c.pingP99Us)} µs at p99; a request makes one such round trip direct and three along the mesh path.`;
}

function observations(aggs, machine, tools, cfg, runs) {
  const obs = [];
  const by = Object.fromEntries(aggs.map((a) => [a.id, a]));
  const { direct, nginx, sidecar } = by;
  const mesh = by['mesh-plain'];
  const mtls = by['mesh-mtls'];
  if (direct && sidecar)
    obs.push(
      `Throughput is a CPU contest on ${machine.cores} cores: the load generator, the proxies and the upstream share them (whole machine ${sidecar.cpuTput['whole machine']?.toFixed(2)} cores busy with one sidecar). Direct, the upstream was ${direct.cpuTput.upstream?.toFixed(2)} cores busy for ${int(direct.rps?.median)} req/s; through one sidecar, the sidecar alone took ${sidecar.cpuTput.sidecar?.toFixed(2)} cores for ${int(sidecar.rps?.median)} req/s: ${us(sidecar.proxyUsTput?.median)} of sidecar CPU per request${nginx ? `, against ${us(nginx.proxyUsTput?.median)} for nginx (${nginx.cpuTput.nginx?.toFixed(2)} cores for ${int(nginx.rps?.median)} req/s)` : ''}. At the fixed 1,000 req/s the sidecar used ${us(sidecar.proxyUsLat?.median)} per request${nginx ? `, nginx ${us(nginx.proxyUsLat?.median)}` : ''}. A sidecar is one Node process, so its ceiling is one core: about 1 s ÷ its CPU per request.`,
    );
  if (mesh && mtls)
    obs.push(
      `The mesh path costs two proxies: sidecar A (outbound: route match, endpoint pick, pooled connection to B) and sidecar B (inbound: first-byte sniffing, mTLS peer check, authorization, pooled connection to the app) — ${us(mesh.proxyUsLat?.median)} of CPU per request for both together at 1,000 req/s plain, ${us(mtls.proxyUsLat?.median)} with mTLS. mTLS connections are opened once and kept alive (the handshake is off the per-request path); what it adds per request is encryption on both ends: ${plusMs((mtls.p50?.median ?? 0) - (mesh.p50?.median ?? 0))} at p50 and ${plusMs((mtls.p99?.median ?? 0) - (mesh.p99?.median ?? 0))} at p99 over plain.`,
    );
  if (direct?.lag)
    obs.push(
      `The latency generator sends on a schedule polled every millisecond (a busy loop would take a core from the proxies): it fell behind its schedule by ${ms(direct.lag.p50)} at p50 and ${ms(direct.lag.p99)} at p99 (direct run), which is counted in every latency above (coordinated-omission safe) and so in every path alike; "from actual send" leaves it out. The "added vs direct" column subtracts the direct path's percentiles from the same repetition.`,
    );
  const nodePath = by['sidecar-node'];
  if (nodePath && sidecar)
    obs.push(
      `The sidecar's outbound fast path (on by default: HTTP/1.1 requests are parsed and proxied over raw sockets, without node:http's and undici's per-request objects; see docs/architecture.md) against the node:http + undici path it hands off to (\`SIDECAR_FAST_PATH=false\`, the path every request took before): ${int(sidecar.rps?.median)} vs ${int(nodePath.rps?.median)} req/s (${ratio(sidecar.vsNginx?.median)} vs ${ratio(nodePath.vsNginx?.median)} of nginx) at ${us(sidecar.proxyUsTput?.median)} vs ${us(nodePath.proxyUsTput?.median)} of sidecar CPU per request; at 1,000 req/s ${plusMs(sidecar.addedP99?.median)} vs ${plusMs(nodePath.addedP99?.median)} at p99 over direct. Both mesh rows run with the fast path on both sides: sidecar A's outbound and sidecar B's inbound (\`SIDECAR_INBOUND_FAST_PATH\`, on by default: the same mTLS-mode, authorization and rate-limit checks, then raw pooled sockets to the app).`,
    );
  const missedHop = sidecar && nginx && !(sidecar.vsNginx?.median >= AIMS.sidecarVsNginx);
  if (missedHop)
    obs.push(
      `The throughput aim (one sidecar ≥ ${ratio(AIMS.sidecarVsNginx)} of nginx) is missed in this run: the sidecar reached ${ratio(sidecar.vsNginx?.median)} of nginx. Per request the sidecar spends ${(sidecar.proxyUsTput?.median / nginx.proxyUsTput?.median).toFixed(1)}× nginx's CPU; see "Where a sidecar's CPU goes" below.`,
    );
  for (const a of [mesh, mtls].filter((x) => x && !(x.addedP99?.median <= AIMS.meshAddedP99Ms)))
    obs.push(
      `${a.config.label}: p99 at 1,000 req/s is ${plusMs(a.addedP99?.median)} over direct, above the ${ms(AIMS.meshAddedP99Ms)} aim. One proxy hop alone adds ${[nginx ? `${plusMs(nginx.addedP99?.median)} for nginx` : '', sidecar ? `${plusMs(sidecar.addedP99?.median)} for one sidecar` : ''].filter(Boolean).join(' and ')} at p99 here; the mesh path has two, and four processes (generator, A, B, app) pass each request along on ${machine.cores} cores. At this rate a proxy's cost per request is mostly the kernel waking the next process and switching to it (see "At 1,000 req/s" below), here on a virtual machine whose idle vCPUs halt (CPU idle driver: ${machine.cpuIdle ?? 'unknown'}) and need a hypervisor exit to wake. At the tail a request waits for a core behind the other processes on its way, or behind whatever else those event loops do (garbage collection, timers, the control-plane link).${pingTail(machine)}`,
    );
  const pinned = [mesh, mtls].filter((a) => a?.oneCore?.addedP99 && a.addedP99);
  if (pinned.length)
    obs.push(
      `On one core: ${pinned.map((a) => `${a.config.label} added ${plusMs(a.oneCore.addedP99.median)} at p99 (${plusMs(a.oneCore.addedSendP99?.median)} from actual send) with the generator, both sidecars and the app on core 0, against ${plusMs(a.addedP99.median)} (${plusMs(a.sendP99?.median - direct?.sendP99?.median)}) with both cores`).join('; ')}. ${pinned.every((a) => a.oneCore.addedP99.median < a.addedP99.median) ? "On one core each hand-off wakes the next process on the core that is about to go idle anyway; with two, the next process is often woken on the other, idle core — a cross-core wake-up that this machine's halted vCPUs make slow, paid at every hop: it is a large part of the mesh's tail here. Running the path's processes on fewer cores is a deployment choice (CPU sets), not something the sidecar does by itself." : 'Pinning did not lower the added tail in this run.'}`,
    );
  for (const [k, r] of runs.entries())
    for (const c of CONFIGS) if (r[c.id]?.failed) obs.push(`Run ${k + 1}: ${c.label} could not be measured: ${r[c.id].failed}.`);
  if (!tools.nginx.path) obs.push(`nginx row skipped: ${tools.nginx.missing}.`);
  if (!tools.wrk.path)
    obs.push(
      `wrk is not available (${tools.wrk.missing}), so throughput was measured with the Node load generator (${cfg.connections} keep-alive connections, undici Pool), which needs more CPU per request than wrk and leaves less for the proxies: compare the paths with each other, not with runs that had wrk.`,
    );
  const installed = [tools.nginx, tools.wrk].filter((t) => t.installed).map((t) => t.path);
  if (installed.length) obs.push(`This run installed ${installed.join(' and ')} with apt-get (they were missing).`);
  const errs = aggs.filter((a) => a.errors || a.non200);
  if (errs.length)
    obs.push(
      `Errors: ${errs.map((a) => `${a.config.label}: ${a.errors} errors, ${a.non200} non-200 (first: ${a.firstError ?? '–'})`).join('; ')}.`,
    );
  if (direct?.p99 && direct.p99.max > 3 * direct.p99.min)
    obs.push(
      `Read the p99 columns with care: the direct path's own p99 ranged ${ms(direct.p99.min)}–${ms(direct.p99.max)} between runs, so tail latency in this run was set by other processes on the machine ("other" up to ${Math.max(...aggs.map((a) => a.cpuLat.other ?? 0)).toFixed(2)} cores) more than by the paths, and the p99 aim verdicts are not reliable (a negative "added" p99 is that noise). Rerun on a quiet machine.`,
    );
  const noise = noiseObservation(aggs.map((a) => a.cpuLat.other));
  if (noise) obs.push(noise);
  return obs;
}

export async function run({ root, quick = false, machine, cpuProf = false, repetitions, writeDoc = !quick, paths }) {
  const unknown = (paths ?? []).filter((id) => !CONFIGS.some((c) => c.id === id));
  if (unknown.length) throw new Error(`--paths: unknown path ${unknown.join(', ')} (known: ${CONFIGS.map((c) => c.id).join(', ')})`);
  const configs = paths ? CONFIGS.filter((c) => paths.includes(c.id)) : CONFIGS;
  const libs = loadLibs(root);
  const cfg = { ...(quick ? QUICK : FULL) };
  if (repetitions) cfg.repetitions = repetitions;
  if (cpuProf) cfg.profileDir = profileDirOf(root, 'dataplane');
  const started = Date.now();
  const tools = { nginx: ensureTool('nginx'), wrk: ensureTool('wrk'), taskset: ensureTool('taskset', 'util-linux') };
  if (cpus().length < 2) tools.taskset = { missing: 'one core only: nothing to compare with' };
  if (tools.nginx.missing) note(`dataplane benchmark: ${tools.nginx.missing}; the nginx row is skipped`);
  if (tools.wrk.missing) note(`dataplane benchmark: ${tools.wrk.missing}; throughput uses the Node load generator`);
  const runs = [];
  for (let k = 1; k <= cfg.repetitions; k++) {
    note(`dataplane benchmark: run ${k}/${cfg.repetitions}${quick ? ' (quick)' : ''}`);
    runs.push(await runOnce(libs, cfg, tools, k, configs));
  }
  const aggs = aggregate(libs, runs);
  const aims = aimsOf(aggs);
  const { tput, lat, one } = tables(aggs, cfg);

  const imgDir = imgDirOf(root, writeDoc);
  const nginx = aggs.find((a) => a.id === 'nginx');
  writeFileSync(
    join(imgDir, 'dataplane-throughput.svg'),
    barChart({
      title: `Data plane: requests per second at ${cfg.connections} connections (${aggs[0]?.generator === 'wrk' ? 'wrk' : 'Node load generator'})`,
      subtitle: `median of ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''} (whiskers: range); ${cfg.tputSeconds} s each; loopback, ${machine.cores} cores; dashed: aim for one sidecar`,
      bars: aggs.map((a) => ({
        name: a.config.label,
        value: a.rps?.median ?? 0,
        min: a.rps?.min,
        max: a.rps?.max,
        color: a.config.color,
        note:
          a.id === 'direct'
            ? ''
            : `${ratio(a.vsDirect?.median)} of direct${nginx && a.id !== 'nginx' ? `, ${ratio(a.vsNginx?.median)} of nginx` : ''}`,
      })),
      vlines: nginx ? [{ value: nginx.rps.median * AIMS.sidecarVsNginx, label: `${ratio(AIMS.sidecarVsNginx)} of nginx` }] : [],
      xLabel: 'requests per second',
    }),
  );
  writeFileSync(
    join(imgDir, 'dataplane-latency.svg'),
    percentileChart({
      title: `Data plane: latency at a fixed ${int(cfg.rate)} req/s, by percentile`,
      subtitle: `from the scheduled send (coordinated-omission safe); ${cfg.latSeconds} s per run${cfg.repetitions > 1 ? `, ${cfg.repetitions} runs pooled` : ''}; loopback, ${machine.cores} cores`,
      series: aggs.map((a) => ({ name: a.config.label, points: a.curve, color: a.config.color })),
      maxNines: Math.min(...aggs.map((a) => a.maxNines)),
    }),
  );

  const obs = observations(aggs, machine, tools, cfg, runs);
  const json = {
    suite: 'dataplane',
    quick,
    machine,
    config: { ...cfg, aims: AIMS, tools },
    aims,
    summary: aggs.map(({ curve: _c, config, ...a }) => ({ ...a, path: config.path })),
    runs: runs.map((r) =>
      Object.fromEntries(
        Object.entries(r).map(([k, v]) =>
          v.failed
            ? [k, v]
            : [
                k,
                {
                  tput: v.tput,
                  lat: { ...v.lat, latency: summarize(v.lat.latency), fromSend: summarize(v.lat.fromSend), lag: summarize(v.lat.lag) },
                  oneCore: v.oneCore && {
                    ...v.oneCore,
                    latency: summarize(v.oneCore.latency),
                    fromSend: summarize(v.oneCore.fromSend),
                    lag: summarize(v.oneCore.lag),
                  },
                },
              ],
        ),
      ),
    ),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  const section = [
    '## Data plane',
    '',
    `Measured ${measuredOn(machine)}; ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''}, each on a fresh control plane, upstream and proxies (\`--runs=N\` for more). Reproduce with \`npm run bench -- dataplane\` (raw numbers in \`bench-results/dataplane.json\`).`,
    '',
    `Setup, all on loopback: the upstream is a minimal node:http server in its own process answering every GET with the same 30-byte JSON body. A fresh control plane per run (nats-server, redis-server, discovery, policy, certificate authority, proxy-config, with their defaults) registers the upstream as a service without a sidecar (plain HTTP) and idles while traffic runs ("control plane" in the CPU columns). Then each path, in an order rotated per run, with its own fresh proxies:`,
    '',
    ...aggs.map((a) => `- **${a.config.label}**: ${a.config.path}.`),
    '',
    `nginx ${tools.nginx.path ? '' : '(not available in this run) '}runs with a generated config (1 worker, \`keepalive 64\` to the upstream, HTTP/1.1 upstream, access log off), checked with \`nginx -t\`; the suite installs it with apt-get when it is missing and skips its row when that fails. Sidecars are the compiled \`apps/sidecar\` with their defaults (\`SIDECAR_ACCESS_LOG\` errors, \`LOG_LEVEL\` info); the client calls the outbound port with \`Host: <service>.mesh\`. Plain mesh: no join tokens, so neither sidecar has a certificate. mTLS mesh: both get a join token and their certificate before the first request (the suite waits for it), so A opens TLS 1.3 to B with its SPIFFE certificate and B checks it; before measuring, a request to the upstream's \`/whoami\` must come back with B's \`x-forwarded-client-cert\` naming A (and without one on the plain path). Every path must answer 200 before it is measured; errors and non-200 answers are counted.`,
    '',
    `1. **Throughput**: ${tools.wrk.path ? `wrk (1 thread, ${cfg.connections} keep-alive connections)` : `the Node load generator (undici Pool, ${cfg.connections} keep-alive connections, closed loop)`} for ${cfg.tputWarmup} s unrecorded, then ${cfg.tputSeconds} s recorded. "vs direct" and "vs nginx" are taken within each run, then the median.`,
    `2. **Latency at a fixed rate**: the Node load generator (its own process; a minimal raw-socket HTTP/1.1 client, \`raw-client.mjs\`, so that its own CPU per request — on the same two cores as the proxies — stays small) sends ${int(cfg.rate)} GET/s over up to ${cfg.connections} keep-alive connections on a fixed schedule for ${cfg.latWarmup} s unrecorded, then ${cfg.latSeconds} s recorded, whatever the answers do (open loop); latency counts from each request's scheduled send time into an HDR histogram.`,
    '',
    `3. **Latency on one core**: ${
      one
        ? `for ${aggs
            .filter((a) => a.oneCore)
            .map((a) => a.config.label)
            .join(
              ', ',
            )}, the fixed-rate measurement again (same proxies, right after the first) with the load generator, the proxies and the upstream all allowed on core 0 only (\`taskset\`; the control plane stays free). Every hand-off along the path is then a wake-up on the same core, none crosses to another — idle — core, which on a virtual machine costs a hypervisor exit; the other processes of the path compete for that one core instead. This is a diagnosis of where the tail comes from, not the configuration the aim is judged on.`
        : `skipped in this run (${tools.taskset.missing}).`
    }`,
    '',
    'CPU: cores busy per process from `/proc/<pid>/stat` over the recorded part (nginx: its worker); "proxy CPU per request" is the proxies\' CPU time ÷ requests answered; "other" is whatever else ran on the machine.',
    '',
    tput,
    '',
    lat,
    '',
    one,
    '',
    ...(aims.length
      ? [
          `Aims (median of the runs): ${aims.map((a) => `${a.name} ${a.aim} — **${a.met ? 'met' : 'missed'}**${a.runs > 1 ? ` (${a.runsMeetingAim} of ${a.runs} runs within the aim)` : ''}`).join('; ')}.`,
          aims.some((a) => !a.met) ? '' : 'All aims met.',
        ]
      : []),
    '',
    '![Data plane throughput](img/dataplane-throughput.svg)',
    '',
    '![Data plane latency at 1,000 req/s by percentile](img/dataplane-latency.svg)',
    '',
    'Observations from this run:',
    '',
    ...obs.map((o) => `- ${o}`),
    '',
    "Where a sidecar's CPU goes on the node:http path (V8 CPU profiles of the sidecars from `--cpu-prof`, one quick run on an Intel Xeon machine, 2026-11-27, before the fast path; share of the process's busy time): about a third is the socket writes themselves — `writev` of the response to the client (~18–20 %) and the write of the request to the upstream (`writeLatin1String`, ~11–14 %), where the kernel does the loopback delivery inside the syscall; most of the rest is Node's HTTP server (parser, response stream) and undici's client (parser, request and stream bookkeeping) around each request, and garbage collection (4–6 %). The sidecar's own per-request code is small: the route/endpoint pick and headers in `OutboundProxy.handle` and `forward`, the prom-client histogram and counter (~1–2 %), and the per-request AbortController that `forward()` creates to cancel the upstream request when the client goes away (`createAbortSignal`, undici's add/removeSignal and the listeners: ~4 %). With mTLS the encryption runs inside the same native writes; no handshakes show up once the pooled connections are open. On the fast path the same profile is dominated by the two socket writes per request (the request to the upstream, the response to the client); the parsing and bookkeeping around them are a few microseconds.",
    "At 1,000 req/s the picture changes (`perf record -g` of sidecar A on the plain mesh path after a throughput warm-up, AMD EPYC 2-core virtual machine, 2026-11-27): 47 % of its samples are in the kernel — a quarter of all in the context-switch and wake-up paths (`finish_task_switch` 15 %, `_raw_spin_unlock_irqrestore` under `sock_def_readable` 10 %), the rest loopback TCP and the syscalls — 34 % in Node's C++ and V8's builtins, 13 % in JIT-compiled JavaScript (the fast path's parsers, Node's stream writes, prom-client), 6 % in libc. Each request wakes each sidecar twice (request in, response back), and at this rate every wake-up serves one request, where under load one serves several: hence 70 µs of sidecar CPU per request at 1,000 req/s against 23 µs at saturation. Its own JavaScript is a small part of the latency a sidecar adds; the process hand-offs are most of it.",
    '',
    'To see where a sidecar spends its time, `node tools/bench/run.mjs dataplane --runs=1 --cpu-prof` writes V8 CPU profiles of the sidecars to `bench-results/profiles/` (open them in Chrome DevTools or speedscope).',
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  return { json, table: `${tput}\n\n${lat}${one ? `\n\n${one}` : ''}`, section, aims };
}
