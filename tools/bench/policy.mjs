// Policy benchmark: apply → effective policy received by a subscriber at a steady rate, the
// apply round trip, validatePolicy throughput in-process, and the resident memory of a policy
// replica holding 10,000 policies. Everything runs against a nats-server (JetStream, file store)
// and a redis-server started on free loopback ports for this run only, a discovery replica (so
// services exist) and the compiled policy app (apps/policy/dist). See docs/benchmarks.md.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { withCleanup } from './lib/cleanup.mjs';
import { measuredOn } from './lib/machine.mjs';
import { boundedAll, drain, pacedSend } from './lib/pace.mjs';
import { cpuMeter, memoryOf } from './lib/proc.mjs';
import { Progress, spinner } from './lib/progress.mjs';
import {
  aimsParagraph,
  cpuCell,
  int,
  mib,
  mibNum,
  ms,
  noiseObservation,
  num,
  plural,
  replicaTable,
  spread,
  verdict,
} from './lib/report.mjs';
import { connectScoped, imgDirOf, natsLibs, profileDirOf, requireBuilt, spawnApp, startServers, watchDeadLetters } from './lib/stack.mjs';
import { histogramFactory, medianByKey, ninesFor, percentileCurve, runsMeeting, stat, summarize } from './lib/stats.mjs';
import { runGroups } from './lib/suite.mjs';
import { lineChart, percentileChart } from './lib/svg.mjs';
import { makeService, serviceName } from './lib/workload.mjs';

export const title = 'Policy';
export const describe =
  'apply → effective policy received by a subscriber at a steady 100 applies/s (and the apply round trip), `validatePolicy` throughput on valid and invalid documents (one core), and the RSS of one policy replica holding 10,000 policies';

const AIMS = {
  p99Ms: 25,
};

const FULL = {
  services: 100,
  endpointsPerService: 2,
  setupInFlight: 16,
  setupTimeoutMs: 30_000,
  latencyRate: 100,
  latencySeconds: 20,
  warmupSeconds: 1,
  latencyInFlight: 64,
  validationSeconds: 3,
  validationWarmupSeconds: 0.5,
  validationMaxCalls: 20_000_000,
  memoryServices: 5_000,
  memoryInFlight: 64,
  memoryTimeoutMs: 120_000,
  settleMs: 3_000,
  idleMs: 2_000,
  repetitions: 2,
};

const QUICK = {
  ...FULL,
  latencySeconds: 5,
  validationSeconds: 1,
  validationWarmupSeconds: 0.2,
  memoryServices: 1_000,
  settleMs: 1_000,
  repetitions: 1,
};

const EFFECTIVE_PREFIX = 'mesh.v1.config.policy.';
const POLICY_BUCKET_STREAM = 'KV_mesh_policies';
const FIXTURES = 'libs/policy/src/__fixtures__/valid';
const SEQ_RE = /bench-seq=(\d+)/;
const MEMORY_TAG = 'bench-mem';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const require = createRequire(import.meta.url);

// ─── documents: the fixtures, and policies derived from them ─────────────────────────────────

function loadLibs(root) {
  requireBuilt(root, [
    'libs/testing/dist/index.js',
    'libs/policy/dist/index.js',
    'libs/sdk/dist/index.js',
    'apps/policy/dist/main.js',
    'apps/discovery/dist/main.js',
  ]);
  return {
    ...natsLibs(),
    policy: require('@novamesh/policy'),
    sdk: require('@novamesh/sdk'),
    newHistogram: histogramFactory(),
  };
}

/** Every document of the valid fixtures, as a user writes them (YAML parsed, not yet validated). */
function loadFixtures(root, policyLib) {
  const dir = join(root, FIXTURES);
  const docs = [];
  for (const f of readdirSync(dir)
    .filter((x) => x.endsWith('.yaml'))
    .sort()) {
    for (const d of policyLib.parsePolicyDocuments(readFileSync(join(dir, f), 'utf8'))) {
      if (d.error) throw new Error(`${FIXTURES}/${f} document ${d.index}: ${d.error}`);
      docs.push({ file: f, value: d.value });
    }
  }
  return docs;
}

/**
 * Templates for the applied policies: the fixtures' richest TrafficPolicy (payment-traffic) and
 * RouteRule (reviews-canary), re-targeted at a service. The RouteRule's subsets select the
 * registered endpoints by zone, so the policy service's cross-checks find them.
 */
function templates(fixtures) {
  const pick = (kind, name) =>
    fixtures.find((d) => d.value.kind === kind && d.value.name === name)?.value ?? fixtures.find((d) => d.value.kind === kind)?.value;
  const traffic = pick('TrafficPolicy', 'payment-traffic');
  const route = pick('RouteRule', 'reviews-canary');
  if (!traffic || !route) throw new Error(`${FIXTURES} has no TrafficPolicy or RouteRule to derive policies from`);
  return { traffic, route };
}

function trafficDoc(tpl, svc, description) {
  return { ...structuredClone(tpl.traffic), name: `${svc}-traffic`, serviceName: svc, description };
}

/** The fixture's canary RouteRule for `svc`; its 90/10 split becomes weight / 100 − weight. */
function routeDoc(tpl, svc, description, weight) {
  const doc = structuredClone(tpl.route);
  doc.name = `${svc}-routes`;
  doc.serviceName = svc;
  doc.description = description;
  doc.subsets = [
    { name: 'v1', labels: { 'topology.kubernetes.io/zone': 'eu-west-1a' } },
    { name: 'v2', labels: { 'topology.kubernetes.io/zone': 'eu-west-1b' } },
  ];
  for (const r of doc.routes ?? []) {
    if (r.split?.length === 2) {
      r.split[0].weight = weight;
      r.split[1].weight = 100 - weight;
    }
  }
  return doc;
}

/** Sequence numbers carried in the descriptions of an effective policy's traffic policy and routes. */
function seqsOf(e) {
  const out = [];
  const m = SEQ_RE.exec(e.traffic?.description ?? '');
  if (m) out.push(Number(m[1]));
  for (const r of e.routes ?? []) {
    const mr = SEQ_RE.exec(r.description ?? '');
    if (mr) out.push(Number(mr[1]));
  }
  return out;
}

// ─── 2. validation throughput, in-process (measured once per suite run) ─────────────────────

function validationRate(validatePolicy, docs, expectOk, cfg, label) {
  const bar = new Progress(`  ${label}: validatePolicy on ${docs.length} documents for ${cfg.validationSeconds}s`);
  const loop = (seconds, maxCalls) => {
    let calls = 0;
    let wrong = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    while (calls < maxCalls) {
      for (let k = 0; k < docs.length; k++) if (validatePolicy(docs[k]).ok !== expectOk) wrong++;
      calls += docs.length;
      const now = performance.now();
      if (now >= end) break;
      bar.update(calls);
    }
    return { calls, wrong, seconds: (performance.now() - t0) / 1000 };
  };
  loop(cfg.validationWarmupSeconds, cfg.validationMaxCalls); // let the JIT settle first
  const cpu0 = process.cpuUsage();
  const r = loop(cfg.validationSeconds, cfg.validationMaxCalls);
  const cpu = process.cpuUsage(cpu0);
  const bytes = docs.reduce((n, d) => n + JSON.stringify(d).length, 0);
  const result = {
    documents: docs.length,
    avgJsonBytes: Math.round(bytes / docs.length),
    calls: r.calls,
    seconds: Number(r.seconds.toFixed(3)),
    perSec: Math.round(r.calls / r.seconds),
    usPerPolicy: Number(((r.seconds * 1e6) / r.calls).toFixed(2)),
    cpuCores: Number(((cpu.user + cpu.system) / 1e6 / r.seconds).toFixed(2)),
    unexpectedResults: r.wrong,
  };
  bar.finish(`  ${label}: ${int(result.perSec)} policies/s (${result.usPerPolicy} µs each, ${docs.length} documents)`);
  return result;
}

function phaseValidation(libs, fixtures, cfg) {
  const valid = fixtures.map((d) => d.value);
  const invalid = libs.policy.INVALID_POLICIES.map((c) => c.policy);
  const kinds = {};
  for (const d of valid) kinds[d.kind] = (kinds[d.kind] ?? 0) + 1;
  return {
    valid: { ...validationRate(libs.policy.validatePolicy, valid, true, cfg, 'validation 1/2 valid fixtures'), kinds },
    invalid: validationRate(libs.policy.validatePolicy, invalid, false, cfg, 'validation 2/2 invalid policies'),
  };
}

// ─── one run: servers + discovery + N policy replicas + the measurements ─────────────────────

async function startStack(scope, libs, replicas, profileDir) {
  const spin = spinner(`[${plural(replicas)}] starting nats-server, redis-server, discovery, policy`);
  try {
    const { nats, redis } = await startServers(scope, libs.testing);
    const discovery = spawnApp(scope, libs.testing, {
      name: 'discovery-1',
      script: 'apps/discovery/dist/main.js',
      env: { NATS_URL: nats.url, REDIS_URL: redis.url, DISCOVERY_INSTANCE: 'bench-1', LOG_LEVEL: 'info' },
    });
    await discovery.waitForLine(/"msg":"discovery ready"/, 30_000);
    const policy = [];
    for (let r = 1; r <= replicas; r++) {
      policy.push(
        spawnApp(scope, libs.testing, {
          name: `policy-${r}`,
          script: 'apps/policy/dist/main.js',
          env: { NATS_URL: nats.url, POLICY_INSTANCE: `bench-${r}`, LOG_LEVEL: 'info' },
          profileDir,
          profileName: `policy-${replicas}r-${r}.cpuprofile`,
        }),
      );
    }
    await Promise.all(policy.map((p) => p.waitForLine(/"msg":"policy ready"/, 30_000)));

    const watchNc = await connectScoped(scope, libs.nats, nats.url, 'bench-watcher', 'watcher connection');
    const jsm = await libs.js.jetstreamManager(watchNc);
    const mesh = new libs.sdk.MeshManager({ servers: nats.url, name: 'bench-sdk', heartbeat: false, timeoutMs: 10_000 });
    scope.defer('SDK connection', () => mesh.close());
    await mesh.initialize();

    const ctx = {
      replicas,
      nats,
      redis,
      discovery,
      policy,
      mesh,
      jsm,
      onEffective: () => undefined,
      effectiveMessages: 0,
      unreadable: 0,
      deadLetters: 0,
      firstDeadLetter: undefined,
      pids: {
        ...Object.fromEntries(policy.map((p, i) => [`policy${replicas > 1 ? `-${i + 1}` : ''}`, p.pid])),
        discovery: discovery.pid,
        'nats-server': nats.proc?.pid,
        'redis-server': redis.proc?.pid,
      },
    };
    // A core NATS subscriber, as any client of the public contract could be.
    watchNc.subscribe(`${EFFECTIVE_PREFIX}>`, {
      callback: (err, msg) => {
        if (err) return;
        const now = performance.now();
        let e;
        try {
          e = msg.json();
        } catch {
          ctx.unreadable++;
          return;
        }
        ctx.effectiveMessages++;
        ctx.onEffective(e, now);
      },
    });
    watchDeadLetters(watchNc, ctx);
    await watchNc.flush();
    spin.finish(`[${plural(replicas)}] nats-server ${nats.url}, redis-server ${redis.url}, discovery and ${replicas} policy ready`);
    return ctx;
  } finally {
    spin.finish();
  }
}

async function waitUntil(done, timeoutMs, bar, total, extra) {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until && !done()) {
    bar?.update(total(), extra());
    await sleep(20);
  }
  return done();
}

/** Registers the services with the SDK and gives each a TrafficPolicy and a RouteRule. */
async function phaseSetup(ctx, cfg, tpl) {
  const names = Array.from({ length: cfg.services }, (_, i) => serviceName(i));
  const known = new Set();
  const withPolicies = new Set();
  ctx.onEffective = (e) => {
    known.add(e.service);
    if (e.traffic?.description?.includes('bench-seq=init') && e.routes?.some((r) => r.description?.includes('bench-seq=init')))
      withPolicies.add(e.service);
  };
  const t0 = performance.now();
  const bar = new Progress(
    `  setup: ${cfg.services} services registered with the SDK, each given a TrafficPolicy and a RouteRule`,
    cfg.services * 2,
  );
  await Promise.all(names.map((_, i) => ctx.mesh.registerService(makeService(i, cfg.endpointsPerService))));
  const allKnown = await waitUntil(
    () => names.every((n) => known.has(n)),
    cfg.setupTimeoutMs,
    bar,
    () => known.size,
    () => 'services with an effective policy',
  );
  if (!allKnown)
    throw new Error(
      `setup: only ${known.size}/${cfg.services} registered services got an effective policy within ${cfg.setupTimeoutMs / 1000} s`,
    );
  const stats = { acked: 0, errors: 0, attempted: 0 };
  await boundedAll({
    count: names.length * 2,
    inFlight: cfg.setupInFlight,
    deadlineAt: performance.now() + cfg.setupTimeoutMs,
    stats,
    start: (k) => {
      const svc = names[k >> 1];
      return ctx.mesh.applyPolicy(k % 2 ? routeDoc(tpl, svc, 'Canary (bench-seq=init)', 90) : trafficDoc(tpl, svc, 'bench-seq=init'));
    },
  });
  if (stats.errors) throw new Error(`setup: ${stats.errors} of ${names.length * 2} applies failed, first: ${stats.firstError}`);
  const allApplied = await waitUntil(
    () => withPolicies.size >= names.length,
    cfg.setupTimeoutMs,
    bar,
    () => names.length + withPolicies.size,
    () => 'with their policies in effect',
  );
  if (!allApplied) throw new Error(`setup: only ${withPolicies.size}/${cfg.services} services show their policies in effect`);
  const seconds = (performance.now() - t0) / 1000;
  bar.finish(`  setup: ${cfg.services} services and ${names.length * 2} policies in effect after ${seconds.toFixed(1)}s`);
  return { names, seconds: Number(seconds.toFixed(2)), policies: names.length * 2 };
}

/** 1. Apply → effective policy received, at a steady rate; each apply changes one policy of one service. */
async function phaseLatency(ctx, cfg, libs, names, tpl) {
  const n = names.length;
  const rate = cfg.latencyRate;
  const warmup = Math.round(rate * cfg.warmupSeconds);
  const total = warmup + Math.round(rate * cfg.latencySeconds);
  const sentAt = new Float64Array(total);
  const received = new Uint8Array(total);
  const effRevision = new Float64Array(total);
  const replyRevision = new Float64Array(total);
  const latency = libs.newHistogram();
  const rtt = libs.newHistogram();
  const lag = libs.newHistogram();
  const perSecond = [];
  let receivedCount = 0;
  let repeats = 0;
  const messages0 = ctx.effectiveMessages;
  ctx.onEffective = (e, now) => {
    let fresh = 0;
    for (const i of seqsOf(e)) {
      if (!(i >= 0 && i < total) || sentAt[i] === 0 || received[i]) continue;
      received[i] = 1;
      effRevision[i] = e.revision;
      receivedCount++;
      fresh++;
      if (i < warmup) continue;
      const us = Math.max(1, Math.round((now - sentAt[i]) * 1000));
      latency.recordValue(us);
      const sec = Math.floor((i - warmup) / rate);
      perSecond[sec] ??= libs.newHistogram();
      perSecond[sec].recordValue(us);
    }
    if (!fresh) repeats++;
  };

  const bar = new Progress(
    `  1/2 latency: ${rate.toLocaleString('en-US')} applies/s for ${cfg.latencySeconds}s (+${cfg.warmupSeconds}s warm-up) over ${n} services`,
    total,
  );
  const meter = cpuMeter(ctx.pids);
  const mono0 = process.hrtime.bigint();
  const stats = { ok: 0, errors: 0, unchanged: 0, warned: 0 };
  const send = (i) => {
    const svc = names[i % n];
    const round = Math.floor(i / n);
    const description = `Canary of ${svc} (bench-seq=${i})`;
    const doc = round % 2 === 0 ? trafficDoc(tpl, svc, description) : routeDoc(tpl, svc, description, 50 + (i % 50));
    const t = performance.now();
    sentAt[i] = t;
    return ctx.mesh.applyPolicy(doc).then(
      (r) => {
        stats.ok++;
        replyRevision[i] = r.revision;
        if (r.unchanged) stats.unchanged++;
        if (r.warnings?.length) stats.warned++;
        if (i >= warmup) rtt.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
      },
      (e) => {
        stats.errors++;
        stats.firstError ??= String(e?.message ?? e);
      },
    );
  };
  let sent = 0;
  const tick = () => bar.update(sent, `sent · ${receivedCount.toLocaleString('en-US')} effective`);
  const paced = await pacedSend({
    rate,
    total,
    maxInFlight: cfg.latencyInFlight,
    maxSeconds: cfg.latencySeconds + cfg.warmupSeconds + 20,
    send,
    onLag: (us) => lag.recordValue(us),
    onTick: (k) => {
      sent = k;
      tick();
    },
  });
  sent = paced.sent;
  await drain({ until: paced.tSent + 10_000, pending: () => paced.inFlight() > 0 || receivedCount < stats.ok, onTick: tick });
  const cpu = meter.stop();
  const mono1 = process.hrtime.bigint();
  let mismatched = 0;
  for (let i = 0; i < total; i++) if (received[i] && replyRevision[i] && effRevision[i] !== replyRevision[i]) mismatched++;
  const sendSeconds = (paced.tSent - paced.t0) / 1000;
  const result = {
    rate,
    seconds: cfg.latencySeconds,
    warmupSeconds: cfg.warmupSeconds,
    services: n,
    sent,
    achievedRate: Math.round(sent / sendSeconds),
    replies: stats.ok,
    applyErrors: stats.errors,
    firstApplyError: stats.firstError,
    unchanged: stats.unchanged,
    withWarnings: stats.warned,
    received: receivedCount,
    lost: sent - stats.errors - receivedCount,
    revisionMismatches: mismatched,
    effectiveMessages: ctx.effectiveMessages - messages0,
    messagesWithoutNewChange: repeats,
    inFlightLimitHits: paced.blocked,
    latencyMs: summarize(latency),
    applyRoundTripMs: summarize(rtt),
    senderLagMs: summarize(lag),
    perSecond: perSecond.map((h, s) => ({ second: s + 1, ...summarize(h) })),
    cpuCores: cpu,
    // CLOCK_MONOTONIC in µs, the clock of V8 CPU profiles: to pick this phase out of a --cpu-prof profile.
    monotonicUs: [Number(mono0 / 1000n), Number(mono1 / 1000n)],
  };
  const l = result.latencyMs;
  bar.finish(
    `  1/2 latency: ${receivedCount.toLocaleString('en-US')}/${sent.toLocaleString('en-US')} effective policies received at ${result.achievedRate}/s; p50 ${l?.p50 ?? '–'} ms, p99 ${l?.p99 ?? '–'} ms, max ${l?.max ?? '–'} ms; apply round trip p50 ${result.applyRoundTripMs?.p50 ?? '–'} ms`,
  );
  for (const h of [lag, ...perSecond]) h?.destroy?.();
  return { result, hist: latency, rttHist: rtt };
}

/** 2. Apply a TrafficPolicy and a RouteRule to each of memoryServices services, then read the replica's RSS. */
async function phaseMemory(ctx, cfg, tpl) {
  const pid = ctx.policy[0].pid;
  const before = memoryOf(pid);
  const count = cfg.memoryServices * 2;
  const index = new Map();
  for (let j = 0; j < cfg.memoryServices; j++) index.set(serviceName(j), j);
  // bit 1: its TrafficPolicy, bit 2: its RouteRule seen in an effective policy
  const inEffect = new Uint8Array(cfg.memoryServices);
  let effectiveCount = 0;
  ctx.onEffective = (e) => {
    const j = index.get(e.service);
    if (j === undefined) return;
    let bits = 0;
    if (e.traffic?.description === MEMORY_TAG) bits |= 1;
    if (e.routes?.some((r) => r.description === MEMORY_TAG)) bits |= 2;
    const added = bits & ~inEffect[j];
    if (added) {
      effectiveCount += (added & 1) + ((added >> 1) & 1);
      inEffect[j] |= bits;
    }
  };
  const label = `  2/2 memory: ${count.toLocaleString('en-US')} policies (TrafficPolicy + RouteRule for ${cfg.memoryServices.toLocaleString('en-US')} services)`;
  const bar = new Progress(label, count);
  const meter = cpuMeter(ctx.pids);
  const stats = { acked: 0, errors: 0, attempted: 0 };
  const replyTimes = new Float64Array(count);
  let replies = 0;
  let created = 0;
  let warned = 0;
  const t0 = performance.now();
  const deadlineAt = t0 + cfg.memoryTimeoutMs;
  let tReplied;
  let inEffectAtLastReply;
  const applied = boundedAll({
    count,
    inFlight: cfg.memoryInFlight,
    deadlineAt,
    stats,
    start: (k) => {
      const j = k >> 1;
      const svc = serviceName(j);
      const doc = k % 2 ? routeDoc(tpl, svc, MEMORY_TAG, 50 + (j % 50)) : trafficDoc(tpl, svc, MEMORY_TAG);
      return ctx.mesh.applyPolicy(doc).then((r) => {
        replyTimes[replies++] = performance.now();
        if (r.created) created++;
        if (r.warnings?.length) warned++;
      });
    },
  }).then(() => {
    tReplied = performance.now();
    inEffectAtLastReply = effectiveCount;
  });
  const timeline = [];
  let lastSample = -1;
  while (performance.now() < deadlineAt) {
    const el = (performance.now() - t0) / 1000;
    if (Math.floor(el * 4) !== lastSample) {
      lastSample = Math.floor(el * 4);
      timeline.push([Number(el.toFixed(2)), stats.acked, effectiveCount]);
    }
    bar.update(stats.acked, `applied · ${effectiveCount.toLocaleString('en-US')} in effect`);
    if (tReplied !== undefined && effectiveCount >= stats.acked) break;
    await sleep(50);
  }
  await Promise.race([applied, sleep(100)]);
  const tEffective = performance.now();
  const cpu = meter.stop();
  timeline.push([Number(((tEffective - t0) / 1000).toFixed(2)), stats.acked, effectiveCount]);
  const rss = memoryOf(pid);
  const settleUntil = performance.now() + cfg.settleMs;
  while (performance.now() < settleUntil) {
    bar.update(stats.acked, 'applied · letting it settle');
    await sleep(100);
  }
  const settled = memoryOf(pid);
  const bucket = await ctx.jsm.streams.info(POLICY_BUCKET_STREAM).catch(() => undefined);
  const n = replies;
  const tenth = Math.max(1, Math.floor(n / 10));
  const rateBetween = (a, b) => (b > a ? Math.round((b - a) / ((replyTimes[b] - (a < 0 ? t0 : replyTimes[a])) / 1000)) : undefined);
  const applySeconds = ((tReplied ?? performance.now()) - t0) / 1000;
  const result = {
    policies: count,
    services: cfg.memoryServices,
    registeredServices: cfg.services,
    inFlight: cfg.memoryInFlight,
    applied: n,
    created,
    withWarnings: warned,
    applyErrors: stats.errors,
    firstApplyError: stats.firstError,
    complete: n === count && effectiveCount >= count,
    applySeconds: Number(applySeconds.toFixed(2)),
    appliesPerSec: Math.round(n / applySeconds),
    firstTenthPerSec: n > 1 ? rateBetween(-1, tenth - 1) : undefined,
    lastTenthPerSec: n > tenth ? rateBetween(n - tenth - 1, n - 1) : undefined,
    inEffect: effectiveCount,
    inEffectAtLastReply,
    inEffectSeconds: Number(((tEffective - t0) / 1000).toFixed(2)),
    policiesInBucket: bucket?.state?.num_subjects,
    rssBeforeBytes: before?.rss,
    rssBytes: rss?.rss,
    rssSettledBytes: settled?.rss,
    peakRssBytes: settled?.hwm,
    settleMs: cfg.settleMs,
    natsServerRssBytes: memoryOf(ctx.nats.proc?.pid)?.rss,
    cpuCores: cpu,
    timeline,
  };
  bar.finish(
    `  2/2 memory: ${n.toLocaleString('en-US')} policies applied in ${result.applySeconds}s (${int(result.appliesPerSec)}/s; first tenth ${int(result.firstTenthPerSec)}/s, last ${int(result.lastTenthPerSec)}/s), all in effect after ${result.inEffectSeconds}s; policy RSS ${mib(result.rssBytes)} (after ${cfg.settleMs / 1000}s: ${mib(result.rssSettledBytes)}, peak ${mib(result.peakRssBytes)})`,
  );
  return result;
}

async function runOnce(libs, cfg, tpl, replicas, withMemory) {
  return withCleanup(async (scope) => {
    const ctx = await startStack(scope, libs, replicas, cfg.profileDir);
    const run = { replicas };
    run.rssAtStartBytes = ctx.policy.map((p) => memoryOf(p.pid)?.rss);
    const setup = await phaseSetup(ctx, cfg, tpl);
    run.setup = { seconds: setup.seconds, policies: setup.policies };
    run.rssAfterSetupBytes = ctx.policy.map((p) => memoryOf(p.pid)?.rss);
    // CPU with nothing to do, to tell background work from the cost of an apply.
    const idle = cpuMeter(ctx.pids);
    await sleep(cfg.idleMs);
    run.idleCpuCores = idle.stop();
    const lat = await phaseLatency(ctx, cfg, libs, setup.names, tpl);
    run.latency = lat.result;
    // Histograms are merged across repetitions for the chart, then freed; not part of the JSON.
    Object.defineProperty(run, 'hists', { value: { latency: lat.hist, rtt: lat.rttHist }, enumerable: false });
    run.rssAfterLatencyBytes = ctx.policy.map((p) => memoryOf(p.pid)?.rss);
    if (withMemory) run.memory = await phaseMemory(ctx, cfg, tpl);
    run.deadLetters = ctx.deadLetters;
    run.firstDeadLetter = ctx.firstDeadLetter;
    run.unreadableEffective = ctx.unreadable;
    run.policyWarnings = ctx.policy.flatMap((p) => p.output.filter((l) => /"level":"(warn|error|fatal)"/.test(l)).slice(0, 5));
    run.policyAlive = ctx.policy.map((p) => p.running);
    return run;
  });
}

// ─── aggregation over repetitions ────────────────────────────────────────────────────────────

function aggregate(libs, group) {
  const merged = libs.newHistogram();
  const mergedRtt = libs.newHistogram();
  for (const r of group) {
    if (r.hists?.latency) merged.add(r.hists.latency);
    if (r.hists?.rtt) mergedRtt.add(r.hists.rtt);
  }
  const pick = (f) => stat(group.map(f));
  const withMem = group.filter((r) => r.memory);
  const agg = {
    replicas: group[0].replicas,
    repetitions: group.length,
    latency: {
      lost: group.reduce((n, r) => n + r.latency.lost, 0),
      applyErrors: group.reduce((n, r) => n + r.latency.applyErrors, 0),
      revisionMismatches: group.reduce((n, r) => n + r.latency.revisionMismatches, 0),
      achievedRate: pick((r) => r.latency.achievedRate),
      p50: pick((r) => r.latency.latencyMs?.p50),
      p99: pick((r) => r.latency.latencyMs?.p99),
      p999: pick((r) => r.latency.latencyMs?.p999),
      max: pick((r) => r.latency.latencyMs?.max),
      rttP50: pick((r) => r.latency.applyRoundTripMs?.p50),
      rttP99: pick((r) => r.latency.applyRoundTripMs?.p99),
      messagesPerApply: pick((r) => r.latency.effectiveMessages / Math.max(1, r.latency.sent)),
      pooled: summarize(merged),
      pooledRtt: summarize(mergedRtt),
      cpuCores: medianByKey(group.map((r) => r.latency.cpuCores)),
    },
    memory: withMem.length
      ? {
          complete: withMem.every((r) => r.memory.complete),
          policies: withMem[0].memory.policies,
          rssBytes: stat(withMem.map((r) => r.memory.rssBytes)),
          rssSettledBytes: stat(withMem.map((r) => r.memory.rssSettledBytes)),
          peakRssBytes: stat(withMem.map((r) => r.memory.peakRssBytes)),
          idleRssBytes: stat(withMem.map((r) => r.rssAtStartBytes?.[0])),
          beforeRssBytes: stat(withMem.map((r) => r.memory.rssBeforeBytes)),
          appliesPerSec: stat(withMem.map((r) => r.memory.appliesPerSec)),
          firstTenthPerSec: stat(withMem.map((r) => r.memory.firstTenthPerSec)),
          lastTenthPerSec: stat(withMem.map((r) => r.memory.lastTenthPerSec)),
          applySeconds: stat(withMem.map((r) => r.memory.applySeconds)),
          inEffectSeconds: stat(withMem.map((r) => r.memory.inEffectSeconds)),
          inEffectAtLastReply: stat(withMem.map((r) => r.memory.inEffectAtLastReply)),
          policiesInBucket: stat(withMem.map((r) => r.memory.policiesInBucket)),
          cpuCores: medianByKey(withMem.map((r) => r.memory.cpuCores)),
        }
      : undefined,
  };
  const maxNines = ninesFor(merged.totalCount);
  const curves = {
    latency: merged.totalCount ? percentileCurve(merged, maxNines) : [],
    rtt: mergedRtt.totalCount ? percentileCurve(mergedRtt, maxNines) : [],
    maxNines,
  };
  merged.destroy?.();
  mergedRtt.destroy?.();
  for (const r of group) {
    r.hists?.latency?.destroy?.();
    r.hists?.rtt?.destroy?.();
  }
  return { agg, curves };
}

// ─── reporting ───────────────────────────────────────────────────────────────────────────────

const secs = (s) => (s === undefined ? '–' : `${s.toFixed(1)} s`);

const checks = (a) => ({ latency: a.latency.lost === 0 && a.latency.applyErrors === 0 && a.latency.p99?.median <= AIMS.p99Ms });

function aimsOf(aggs) {
  const one = aggs.find((a) => a.replicas === 1) ?? aggs[0];
  return [
    {
      name: 'latency',
      aim: `p99 ≤ ${AIMS.p99Ms} ms`,
      value: one.latency.p99?.median,
      met: checks(one).latency,
      runsMeetingAim: runsMeeting(one.latency.p99, (v) => v <= AIMS.p99Ms),
      runs: one.repetitions,
    },
  ];
}

function table(aggs, cfg) {
  const { lines, row } = replicaTable(aggs);
  lines.push(
    row(
      `Apply → effective policy received at ${int(cfg.latencyRate)} applies/s for ${cfg.latencySeconds} s (${cfg.services} services): p50`,
      '—',
      (a) => spread(a.latency.p50, ms, num),
    ),
  );
  lines.push(row('… p99', `≤ ${AIMS.p99Ms} ms`, (a) => `${spread(a.latency.p99, ms, num)}${verdict(checks(a).latency)}`));
  lines.push(row('… p99.9 / max', '—', (a) => `${ms(a.latency.p999?.median)} / ${ms(a.latency.max?.median)}`));
  if (aggs.some((a) => a.repetitions > 1))
    lines.push(
      row(
        '… all runs pooled: p50 / p99 / max',
        '—',
        (a) => `${ms(a.latency.pooled?.p50)} / ${ms(a.latency.pooled?.p99)} / ${ms(a.latency.pooled?.max)}`,
      ),
    );
  lines.push(
    row('… effective policies lost / apply errors (all runs)', '0', (a) => `${int(a.latency.lost)} / ${int(a.latency.applyErrors)}`),
  );
  lines.push(
    row(
      '… apply request → reply (SDK `applyPolicy`): p50 / p99',
      '—',
      (a) => `${ms(a.latency.rttP50?.median)} / ${ms(a.latency.rttP99?.median)}`,
    ),
  );
  lines.push(row('… effective-policy messages seen per apply', '—', (a) => (a.latency.messagesPerApply?.median ?? 0).toFixed(2)));
  lines.push(row(`… CPU at ${int(cfg.latencyRate)} applies/s, cores busy (median)`, '—', (a) => cpuCell(a.latency.cpuCores)));
  const memPolicies = cfg.memoryServices * 2;
  lines.push(
    row(
      `Policy RSS holding ${int(memPolicies)} policies (TrafficPolicy + RouteRule for ${int(cfg.memoryServices)} services), once all are in effect`,
      '—',
      (a) => (a.memory ? `${spread(a.memory.rssBytes, mib, mibNum)}${a.memory.complete ? '' : ' (incomplete)'}` : 'not measured'),
    ),
  );
  lines.push(
    row(`… ${cfg.settleMs / 1000} s later / peak (VmHWM) / idle at start`, '—', (a) =>
      a.memory
        ? `${mib(a.memory.rssSettledBytes?.median)} / ${mib(a.memory.peakRssBytes?.median)} / ${mib(a.memory.idleRssBytes?.median)}`
        : '–',
    ),
  );
  lines.push(
    row(`… applying them, ${cfg.memoryInFlight} in flight: all replies / first tenth / last tenth`, '—', (a) =>
      a.memory
        ? `${spread(a.memory.appliesPerSec, int)} / ${int(a.memory.firstTenthPerSec?.median)} / ${int(a.memory.lastTenthPerSec?.median)} applies/s`
        : '–',
    ),
  );
  lines.push(
    row('… all replies / all in effect after', '—', (a) =>
      a.memory ? `${secs(a.memory.applySeconds?.median)} / ${secs(a.memory.inEffectSeconds?.median)}` : '–',
    ),
  );
  lines.push(row('… CPU while applying, cores busy (median)', '—', (a) => (a.memory ? cpuCell(a.memory.cpuCores) : '–')));
  return lines.join('\n');
}

function validationTable(v) {
  const kinds = Object.entries(v.valid.kinds)
    .map(([k, c]) => `${c} ${k}`)
    .join(', ');
  return [
    '| `validatePolicy`, in-process, one core | documents | policies/s | µs per policy |',
    '|---|---:|---:|---:|',
    `| valid: every document of \`${FIXTURES}/*.yaml\` (${kinds}; about ${int(v.valid.avgJsonBytes)} bytes of JSON each) | ${v.valid.documents} | ${int(v.valid.perSec)} | ${v.valid.usPerPolicy} |`,
    `| invalid: \`INVALID_POLICIES\` of \`@novamesh/policy\` (each refused with its issues) | ${v.invalid.documents} | ${int(v.invalid.perSec)} | ${v.invalid.usPerPolicy} |`,
  ].join('\n');
}

function observations(aggs, runs, cfg, validation, machine) {
  const out = [];
  const one = aggs.find((a) => a.replicas === 1) ?? aggs[0];
  const two = aggs.find((a) => a.replicas === 2);
  const lat = one.latency;
  if (lat.p50 && lat.rttP50)
    out.push(
      `The effective policy reached the subscriber ${ms(lat.p50.median)} after the apply request (p50), ${lat.p50.median <= lat.rttP50.median ? 'before' : 'after'} the reply to the request came back (${ms(lat.rttP50.median)}, p50): the replica's KV watch sees the write while the reply is on its way, recomputes the service's effective policy and publishes it through JetStream, so propagation costs little beyond the apply itself (validation, cross-checks, a KV read and a compare-and-set write to the file store).`,
    );
  // Seconds whose p99 broke the aim, from the per-second histograms of the 1-replica runs.
  const oneRuns = runs.filter((r) => r.replicas === one.replicas);
  const windows = oneRuns.flatMap((r) => r.latency.perSecond.map((w) => ({ ...w, run: r.repetition })));
  const slow = windows.filter((w) => w.p99 > AIMS.p99Ms).sort((a, b) => b.max - a.max);
  if (windows.length)
    out.push(
      slow.length
        ? `The tail is concentrated: ${slow.length} of ${windows.length} one-second windows had p99 above ${AIMS.p99Ms} ms (worst: second ${slow[0].second}${oneRuns.length > 1 ? ` of run ${slow[0].run}` : ''}, max ${ms(slow[0].max)}); the other windows stayed at p99 ≤ ${ms(Math.max(0, ...windows.filter((w) => w.p99 <= AIMS.p99Ms).map((w) => w.p99)))}.`
        : `No one-second window of the ${windows.length} had p99 above ${AIMS.p99Ms} ms (worst window p99 ${ms(Math.max(...windows.map((w) => w.p99)))}, worst max ${ms(Math.max(...windows.map((w) => w.max)))}).`,
    );
  const pc = lat.cpuCores.policy;
  const idle = stat(oneRuns.map((r) => r.idleCpuCores?.policy))?.median;
  const cpuPerApplyUs = pc !== undefined ? (pc * 1e6) / cfg.latencyRate : undefined;
  const mem = one.memory;
  const mc = mem?.cpuCores.policy;
  const fastUs = mc !== undefined && mem.appliesPerSec?.median ? (mc * 1e6) / mem.appliesPerSec.median : undefined;
  if (cpuPerApplyUs !== undefined)
    out.push(
      `At ${int(cfg.latencyRate)} applies/s one policy replica used ${pc.toFixed(2)} cores (${idle !== undefined ? `${idle.toFixed(2)} when idle; ` : ''}${int(cpuPerApplyUs)} µs of CPU per apply, everything included), nats-server ${lat.cpuCores['nats-server']?.toFixed(2)}, this benchmark ${lat.cpuCores.bench?.toFixed(2)}${fastUs !== undefined ? `. Applied back to back (phase 3) an apply cost only ${int(fastUs)} µs, so a replica has ample headroom above ${int(cfg.latencyRate)}/s: at a steady low rate each apply pays its fixed costs alone` : ''}.`,
    );
  const noise = noiseObservation([...aggs.map((a) => a.latency.cpuCores.other), ...aggs.map((a) => a.memory?.cpuCores.other)]);
  if (noise) out.push(noise);
  if (two)
    out.push(
      `With 2 replicas p99 was ${ms(two.latency.p99?.median)} (p50 ${ms(two.latency.p50?.median)}); the subscriber saw ${(two.latency.messagesPerApply?.median ?? 0).toFixed(2)} effective-policy messages per apply, against ${(lat.messagesPerApply?.median ?? 0).toFixed(2)} with one: every replica watches the whole bucket and publishes every effective policy; the stream keeps one copy (same \`Nats-Msg-Id\`), but core NATS subscribers get both, and the work is done twice.`,
    );
  out.push(
    `\`validatePolicy\` in a hot loop takes ${validation.valid.usPerPolicy} µs per valid fixture document and ${validation.invalid.usPerPolicy} µs per invalid one (${int(validation.valid.perSec)} and ${int(validation.invalid.perSec)} policies/s on one core)${cpuPerApplyUs ? `: a small part of the ${int(cpuPerApplyUs)} µs a replica spends per apply` : ''}.`,
  );
  if (mem) {
    const perPolicy = ((mem.rssBytes?.median ?? 0) - (mem.beforeRssBytes?.median ?? 0)) / mem.policies;
    out.push(
      `Memory: ${mib(mem.idleRssBytes?.median)} idle, ${mib(mem.beforeRssBytes?.median)} before the ${int(mem.policies)} policies, ${mib(mem.rssBytes?.median)} once they are all in effect — about ${int(perPolicy)} bytes of RSS per policy (the replica caches every stored policy and the hash of every service's last effective policy; RSS also holds garbage not yet collected); the bucket held ${int(mem.policiesInBucket?.median)} keys.`,
    );
    const first = mem.firstTenthPerSec?.median;
    const last = mem.lastTenthPerSec?.median;
    if (first && last)
      out.push(
        `Applying ${int(mem.policies)} policies with ${cfg.memoryInFlight} in flight ran at ${int(first)} applies/s over the first tenth and ${int(last)} applies/s over the last${last < first * 0.8 ? ': each apply gets slower as the store grows (an apply cross-checks against every stored policy, and each effective recompute scans them all)' : ', so the growing store did not slow applies down at this size'}; the replica was ${mc !== undefined ? `${mc.toFixed(2)} cores busy` : 'busy'}${mc !== undefined && mc > 0.85 ? ', bound by its one JavaScript thread' : ''}, nats-server ${mem.cpuCores['nats-server']?.toFixed(2)}.`,
      );
    const atReply = mem.inEffectAtLastReply?.median;
    if (
      atReply !== undefined &&
      atReply < mem.policies * 0.8 &&
      mem.applySeconds?.median &&
      mem.inEffectSeconds?.median > mem.applySeconds.median
    )
      out.push(
        `Effective policies lag behind a burst of applies: when the last of the ${int(mem.policies)} replies arrived (${secs(mem.applySeconds.median)}) only ${int(atReply)} of them were in effect; the rest followed at about ${int((mem.policies - atReply) / (mem.inEffectSeconds.median - mem.applySeconds.median))}/s once the applies stopped (see the chart of the apply phase). Each replica's KV watch handles one change at a time; effective policies are published concurrently (bounded, in order per service, \`EffectivePublisherService\`) on the event loop the apply handlers keep busy.`,
      );
  }
  if (machine.cores <= 2)
    out.push(
      `All of it shares ${machine.cores} cores: the policy replica, discovery, nats-server and this benchmark (its subscriber and SDK client included).`,
    );
  return out;
}

export async function run({ root, quick = false, replicas = [1, 2], machine, cpuProf = false, repetitions, writeDoc = !quick }) {
  const libs = loadLibs(root);
  const cfg = { ...(quick ? QUICK : FULL) };
  if (repetitions) cfg.repetitions = repetitions;
  if (cpuProf) cfg.profileDir = profileDirOf(root, 'policy');
  const started = Date.now();
  const fixtures = loadFixtures(root, libs.policy);
  const tpl = templates(fixtures);
  // In-process and independent of the replica count: once, before any server runs.
  const validation = phaseValidation(libs, fixtures, cfg);
  const { runs, aggs, curves } = await runGroups({
    suite: 'policy',
    replicas,
    repetitions: cfg.repetitions,
    quick,
    runOnce: (r) => runOnce(libs, cfg, tpl, r, r === 1),
    aggregate: (group) => aggregate(libs, group),
  });
  const aims = aimsOf(aggs);

  const imgDir = imgDirOf(root, writeDoc);
  const maxNines = Math.max(...Object.values(curves).map((c) => c.maxNines));
  const series = aggs
    .filter((a) => curves[a.replicas].latency.length)
    .map((a) => ({ name: `effective policy, ${plural(a.replicas)}`, points: curves[a.replicas].latency }));
  const rttColors = ['#9ca3af', '#d1a3a3'];
  aggs.forEach((a, k) => {
    if (curves[a.replicas].rtt.length)
      series.push({
        name: `apply reply, ${plural(a.replicas)}`,
        points: curves[a.replicas].rtt,
        color: rttColors[k % rttColors.length],
      });
  });
  writeFileSync(
    join(imgDir, 'policy-latency.svg'),
    percentileChart({
      title: `Policy: apply → effective policy received at ${int(cfg.latencyRate)} applies/s`,
      subtitle: `from the request; ${cfg.latencySeconds} s per run after ${cfg.warmupSeconds} s warm-up${cfg.repetitions > 1 ? `, ${cfg.repetitions} runs pooled` : ''}, ${cfg.services} services; JetStream file store; ${machine.cores} cores`,
      series,
      maxNines,
      hlines: [{ value: AIMS.p99Ms, label: `aim: p99 ≤ ${AIMS.p99Ms} ms` }],
    }),
  );
  const memRuns = runs.filter((r) => r.memory).sort((x, y) => x.memory.appliesPerSec - y.memory.appliesPerSec);
  const memRun = memRuns[Math.floor((memRuns.length - 1) / 2)];
  if (memRun)
    writeFileSync(
      join(imgDir, 'policy-apply.svg'),
      lineChart({
        title: `Policy: applying ${int(memRun.memory.policies)} policies (${plural(memRun.replicas)}${memRuns.length > 1 ? ', median run' : ''})`,
        subtitle: `TrafficPolicy + RouteRule for ${int(cfg.memoryServices)} services, ${cfg.memoryInFlight} applies in flight; ${machine.cores} cores`,
        series: [
          { name: 'applied (reply received)', points: memRun.memory.timeline.map(([t, a]) => [t, a]), color: '#93c5fd', dashed: true },
          { name: 'in effect (seen in an effective policy)', points: memRun.memory.timeline.map(([t, , e]) => [t, e]), color: '#2563eb' },
        ],
        xLabel: 'seconds since the first apply',
        yLabel: 'policies',
        xFormat: (t) => `${t}s`,
      }),
    );

  const json = {
    suite: 'policy',
    quick,
    machine,
    config: { ...cfg, replicas, aims: AIMS },
    aims,
    validation,
    summary: aggs,
    runs,
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  const md = table(aggs, cfg);
  const vmd = validationTable(validation);
  const obs = observations(aggs, runs, cfg, validation, machine);
  const section = [
    '## Policy',
    '',
    `Measured ${measuredOn(machine)}; ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''} per replica count, each on fresh servers (\`--runs=N\` for more). Reproduce with \`npm run bench -- policy\` (raw numbers in \`bench-results/policy.json\`).`,
    '',
    `Setup: a fresh nats-server (JetStream, file store) and redis-server on free loopback ports, one compiled discovery replica and the compiled policy app with its defaults (\`LOG_LEVEL\` info), ${replicas.map((r) => plural(r)).join(', then ')}${replicas.some((r) => r > 1) ? ' (replicas share the queue group)' : ''}. ${cfg.services} services are registered with the SDK (\`MeshManager.registerService\`, ${cfg.endpointsPerService} endpoints each in two zones, no heartbeats); each is given a TrafficPolicy and a RouteRule derived from the fixtures' \`payment-traffic\` and \`reviews-canary\` (the RouteRule's subsets select the service's endpoints by zone). A core NATS subscriber on \`mesh.v1.config.policy.>\` receives the effective policies.`,
    '',
    `1. **Latency**: ${int(cfg.latencyRate)} applies/s with the SDK's \`applyPolicy\` for ${cfg.latencySeconds} s after ${cfg.warmupSeconds} s of unrecorded warm-up, paced from the start time, at most ${cfg.latencyInFlight} in flight. Apply *i* changes one policy of service *i* mod ${cfg.services}, the TrafficPolicy and the RouteRule in turn (each service changes once a second): its description carries *i*, and a RouteRule's split weights change too. The subscriber matches each effective policy by that description and records request sent → effective policy received in an HDR histogram; the reply's revision is checked against the effective policy's. The request → reply time is recorded too.`,
    `2. **Validation**: \`validatePolicy\` of \`@novamesh/policy\` called in the benchmark's own process, on one core, on every document of \`${FIXTURES}/*.yaml\` in turn, then on every case of \`INVALID_POLICIES\`, for ${cfg.validationSeconds} s each after ${cfg.validationWarmupSeconds} s of warm-up, before any server starts.`,
    `3. **Memory** (1 replica): after the latency phase, a TrafficPolicy and a RouteRule for each of ${int(cfg.memoryServices)} services (the ${cfg.services} registered ones and ${int(cfg.memoryServices - cfg.services)} not registered yet, which the policy service accepts with a warning) — ${int(cfg.memoryServices * 2)} policies, replacing the ${cfg.services * 2} of the setup — are applied with at most ${cfg.memoryInFlight} in flight. Once every one of them has been seen in an effective policy, VmRSS of the policy process is read from \`/proc/<pid>/status\`, and again ${cfg.settleMs / 1000} s later.`,
    '',
    md,
    '',
    vmd,
    '',
    ...aimsParagraph(aims),
    'There is no aim for validation throughput, the apply rate or memory yet; they are reported as measured.',
    '',
    '![Policy latency by percentile](img/policy-latency.svg)',
    '',
    ...(memRun
      ? [`![Policy: applying ${int(cfg.memoryServices * 2)} policies, applied vs in effect over time](img/policy-apply.svg)`, '']
      : []),
    'Observations from this run:',
    '',
    ...obs.map((o) => `- ${o}`),
    '',
    'To see where the policy service spends its time, `node tools/bench/run.mjs policy --replicas=1 --runs=1 --cpu-prof` writes V8 CPU profiles of the policy replicas to `bench-results/profiles/` (open them in Chrome DevTools or speedscope).',
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  return { json, table: `${md}\n\n${vmd}`, section, aims };
}
