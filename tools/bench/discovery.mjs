// Discovery benchmark: registration ingest throughput, register → watcher latency at a steady
// rate, and the resident memory of a replica holding a large registry. Everything runs against a
// nats-server (JetStream, file store) and a redis-server started on free loopback ports for this
// run only, and the compiled discovery app (apps/discovery/dist). See docs/benchmarks.md.
import { writeFileSync } from 'node:fs';
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
import { makeService, mulberry32 } from './lib/workload.mjs';

export const title = 'Discovery';
export const describe =
  'registration ingest (events/s from first publish to the last endpoint set seen), register → watcher-notified latency at a steady 1,000 events/s, and the RSS of one discovery replica holding 10,000 services × 10 endpoints';

const AIMS = {
  ingestPerSec: 5_000,
  p99Ms: 25,
  rssBytes: 400 * 1024 * 1024,
};

const FULL = {
  services: 10_000,
  ingestInFlight: 256,
  ingestTimeoutMs: 120_000,
  latencyServices: 1_000,
  latencyRate: 1_000,
  latencySeconds: 10,
  warmupSeconds: 1,
  latencyInFlight: 256,
  memoryServices: 10_000,
  memoryEndpoints: 10,
  memoryTimeoutMs: 150_000,
  settleMs: 3_000,
  repetitions: 3,
};

const QUICK = {
  ...FULL,
  services: 2_000,
  latencyServices: 500,
  latencySeconds: 3,
  memoryServices: 2_000,
  settleMs: 1_000,
  repetitions: 1,
};

const ENDPOINTS_PREFIX = 'mesh.v1.discovery.endpoints.';
const SEQ_LABEL = 'bench-seq';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();

// ─── measurement helpers ─────────────────────────────────────────────────────────────────────

function loadLibs(root) {
  requireBuilt(root, ['libs/testing/dist/index.js', 'apps/discovery/dist/main.js']);
  return { ...natsLibs(), newHistogram: histogramFactory() };
}

/**
 * Publishes `count` JetStream messages with at most `inFlight` unacknowledged; stops early at
 * `deadlineAt`. `make(i)` returns { subject, data, msgId }.
 */
function publishBounded({ js, count, inFlight, make, deadlineAt, stats }) {
  return boundedAll({
    count,
    inFlight,
    deadlineAt,
    stats,
    start: (i) => {
      const { subject, data, msgId } = make(i);
      return js.publish(subject, data, { msgID: msgId, timeout: 10_000 });
    },
  });
}

// ─── one run: servers + N discovery replicas + the three measurements ────────────────────────

async function startStack(scope, libs, replicas, profileDir) {
  const spin = spinner(`[${plural(replicas)}] starting nats-server, redis-server, discovery`);
  try {
    const { nats, redis } = await startServers(scope, libs.testing);
    const discovery = [];
    for (let r = 1; r <= replicas; r++) {
      discovery.push(
        spawnApp(scope, libs.testing, {
          name: `discovery-${r}`,
          script: 'apps/discovery/dist/main.js',
          env: { NATS_URL: nats.url, REDIS_URL: redis.url, DISCOVERY_INSTANCE: `bench-${r}`, LOG_LEVEL: 'info' },
          profileDir,
          profileName: `discovery-${replicas}r-${r}.cpuprofile`,
        }),
      );
    }
    await Promise.all(discovery.map((p) => p.waitForLine(/"msg":"discovery ready"/, 30_000)));

    const pubNc = await connectScoped(scope, libs.nats, nats.url, 'bench-publisher', 'publisher connection');
    const watchNc = await connectScoped(scope, libs.nats, nats.url, 'bench-watcher', 'watcher connection');
    const js = libs.js.jetstream(pubNc, { timeout: 10_000 });
    const jsm = await libs.js.jetstreamManager(pubNc);

    const ctx = {
      replicas,
      nats,
      redis,
      discovery,
      js,
      jsm,
      onSet: () => undefined,
      deadLetters: 0,
      firstDeadLetter: undefined,
      pids: {
        ...Object.fromEntries(discovery.map((p, i) => [`discovery${replicas > 1 ? `-${i + 1}` : ''}`, p.pid])),
        'nats-server': nats.proc?.pid,
        'redis-server': redis.proc?.pid,
      },
    };
    watchNc.subscribe(`${ENDPOINTS_PREFIX}>`, { callback: (err, msg) => err || ctx.onSet(msg) });
    watchDeadLetters(watchNc, ctx);
    await watchNc.flush();
    spin.finish(`[${plural(replicas)}] nats-server ${nats.url}, redis-server ${redis.url}, ${replicas} discovery ready`);
    return ctx;
  } finally {
    spin.finish();
  }
}

async function consumerState(ctx) {
  try {
    const ci = await ctx.jsm.consumers.info('MESH_REGISTRY', 'discovery-registry');
    return { pending: ci.num_pending, ackPending: ci.num_ack_pending, redelivered: ci.num_redelivered };
  } catch (e) {
    return { error: String(e?.message ?? e) };
  }
}

/** 1. Sustained ingest: N register events of distinct services, bounded in flight. */
async function phaseIngest(ctx, cfg) {
  const rnd = mulberry32(42);
  const names = [];
  const payloads = [];
  let endpoints = 0;
  let bytes = 0;
  for (let i = 0; i < cfg.services; i++) {
    const svc = makeService(i, 1 + Math.floor(rnd() * 3));
    const data = enc.encode(JSON.stringify(svc));
    names.push(svc.name);
    payloads.push(data);
    endpoints += svc.endpoints.length;
    bytes += data.byteLength;
  }
  const expected = new Set(names);
  const seen = new Set();
  let tLast = 0;
  ctx.onSet = (msg) => {
    const svc = msg.subject.slice(ENDPOINTS_PREFIX.length);
    if (!seen.has(svc) && expected.has(svc)) {
      seen.add(svc);
      tLast = performance.now();
    }
  };
  const bar = new Progress(`  1/3 ingest ${cfg.services.toLocaleString('en-US')} registrations`, cfg.services);
  const meter = cpuMeter(ctx.pids);
  const stats = { acked: 0, errors: 0, attempted: 0 };
  const t0 = performance.now();
  const deadlineAt = t0 + cfg.ingestTimeoutMs;
  let tPublished;
  const published = publishBounded({
    js: ctx.js,
    count: cfg.services,
    inFlight: cfg.ingestInFlight,
    deadlineAt,
    stats,
    make: (i) => ({ subject: `mesh.v1.registry.${names[i]}.register`, data: payloads[i], msgId: `bench-ingest-${i}` }),
  }).then(() => {
    tPublished = performance.now();
  });
  const timeline = [];
  let lastSample = -1;
  while (performance.now() < deadlineAt) {
    const el = (performance.now() - t0) / 1000;
    if (Math.floor(el * 20) !== lastSample) {
      lastSample = Math.floor(el * 20);
      timeline.push([Number(el.toFixed(2)), stats.acked, seen.size]);
    }
    bar.update(seen.size, `applied · ${stats.acked.toLocaleString('en-US')} published`);
    if (tPublished !== undefined && seen.size >= stats.acked) break;
    await sleep(20);
  }
  await Promise.race([published, sleep(100)]);
  const cpu = meter.stop();
  timeline.push([Number(((performance.now() - t0) / 1000).toFixed(2)), stats.acked, seen.size]);
  const seconds = tLast > 0 ? (tLast - t0) / 1000 : (performance.now() - t0) / 1000;
  const result = {
    events: cfg.services,
    endpoints,
    avgPayloadBytes: Math.round(bytes / cfg.services),
    inFlight: cfg.ingestInFlight,
    published: stats.acked,
    publishErrors: stats.errors,
    firstPublishError: stats.firstError,
    applied: seen.size,
    complete: seen.size === cfg.services,
    seconds: Number(seconds.toFixed(3)),
    eventsPerSec: Math.round(seen.size / seconds),
    publishSeconds: tPublished ? Number(((tPublished - t0) / 1000).toFixed(3)) : undefined,
    publishPerSec: tPublished ? Math.round(stats.acked / ((tPublished - t0) / 1000)) : undefined,
    cpuCores: cpu,
    consumer: await consumerState(ctx),
    timeline,
  };
  bar.finish(
    `  1/3 ingest: ${result.applied.toLocaleString('en-US')}/${cfg.services.toLocaleString('en-US')} applied in ${result.seconds}s → ${result.eventsPerSec.toLocaleString('en-US')} events/s (publish acks done after ${result.publishSeconds ?? '–'}s)`,
  );
  return { result, names };
}

/** 2. Register → watcher latency at a steady rate, each event changing one endpoint's label. */
async function phaseLatency(ctx, cfg, libs, names, label) {
  const n = Math.min(cfg.latencyServices, names.length);
  const rate = cfg.latencyRate;
  const warmup = Math.round(rate * cfg.warmupSeconds);
  const total = warmup + Math.round(rate * cfg.latencySeconds);
  // One JSON template per service; each event fills in its sequence number and send time.
  const rnd = mulberry32(42);
  const counts = Array.from({ length: names.length }, () => 1 + Math.floor(rnd() * 3));
  const templates = [];
  for (let i = 0; i < n; i++) {
    const svc = makeService(i, counts[i]);
    svc.endpoints[0].labels[SEQ_LABEL] = '@@SEQ@@';
    svc.settings.sentAt = '@@SENT@@';
    templates.push(JSON.stringify(svc));
  }
  const sentAt = new Float64Array(total);
  const received = new Uint8Array(total);
  const latency = libs.newHistogram();
  const acks = libs.newHistogram();
  const lag = libs.newHistogram();
  const perSecond = [];
  let receivedCount = 0;
  let unmatched = 0;
  ctx.onSet = (msg) => {
    const now = performance.now();
    let set;
    try {
      set = msg.json();
    } catch {
      return;
    }
    const ep = set.endpoints?.find((e) => e.labels?.[SEQ_LABEL] !== undefined);
    const i = ep ? Number(ep.labels[SEQ_LABEL]) : -1;
    if (!(i >= 0 && i < total) || received[i] || sentAt[i] === 0) {
      unmatched++;
      return;
    }
    received[i] = 1;
    receivedCount++;
    if (i < warmup) return;
    const us = Math.max(1, Math.round((now - sentAt[i]) * 1000));
    latency.recordValue(us);
    const sec = Math.floor((i - warmup) / rate);
    perSecond[sec] ??= libs.newHistogram();
    perSecond[sec].recordValue(us);
  };

  const bar = new Progress(
    `  2/3 ${label}: ${rate.toLocaleString('en-US')} events/s for ${cfg.latencySeconds}s (+${cfg.warmupSeconds}s warm-up)`,
    total,
  );
  const meter = cpuMeter(ctx.pids);
  const stats = { acked: 0, errors: 0, attempted: 0 };
  const send = (i) => {
    const data = enc.encode(templates[i % n].replace('@@SEQ@@', String(i)).replace('@@SENT@@', new Date().toISOString()));
    const t = performance.now();
    sentAt[i] = t;
    return ctx.js
      .publish(`mesh.v1.registry.${names[i % n]}.register`, data, { msgID: `bench-lat-${ctx.replicas}-${i}`, timeout: 10_000 })
      .then(
        () => {
          stats.acked++;
          acks.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
        },
        (e) => {
          stats.errors++;
          stats.firstError ??= String(e?.message ?? e);
        },
      );
  };
  const tick = () => bar.update(sent, `sent · ${receivedCount.toLocaleString('en-US')} notified`);
  let sent = 0;
  const paced = await pacedSend({
    rate,
    total,
    maxInFlight: cfg.latencyInFlight,
    maxSeconds: cfg.latencySeconds + cfg.warmupSeconds + 20,
    send,
    onLag: (us) => lag.recordValue(us),
    onTick: (n1) => {
      sent = n1;
      tick();
    },
  });
  sent = paced.sent;
  const blocked = paced.blocked;
  const sendSeconds = (paced.tSent - paced.t0) / 1000;
  await drain({ until: paced.tSent + 10_000, pending: () => paced.inFlight() > 0 || receivedCount < stats.acked, onTick: tick });
  const cpu = meter.stop();
  const result = {
    rate,
    seconds: cfg.latencySeconds,
    warmupSeconds: cfg.warmupSeconds,
    services: n,
    sent,
    achievedRate: Math.round(sent / sendSeconds),
    publishErrors: stats.errors,
    firstPublishError: stats.firstError,
    notified: receivedCount,
    lost: sent - stats.errors - receivedCount,
    unmatched,
    inFlightLimitHits: blocked,
    latencyMs: summarize(latency),
    publishAckMs: summarize(acks),
    senderLagMs: summarize(lag),
    perSecond: perSecond.map((h, s) => ({ second: s + 1, ...summarize(h) })),
    cpuCores: cpu,
    consumer: await consumerState(ctx),
  };
  const l = result.latencyMs;
  bar.finish(
    `  2/3 ${label}: ${receivedCount.toLocaleString('en-US')}/${sent.toLocaleString('en-US')} notified at ${result.achievedRate}/s; p50 ${l?.p50 ?? '–'} ms, p99 ${l?.p99 ?? '–'} ms, max ${l?.max ?? '–'} ms`,
  );
  for (const h of [lag, ...perSecond]) h?.destroy?.();
  return { result, hist: latency, ackHist: acks };
}

/** 3. Re-register every service with 10 endpoints, wait until applied, read discovery's RSS. */
async function phaseMemory(ctx, cfg) {
  const pid = ctx.discovery[0].pid;
  const before = memoryOf(pid);
  const names = [];
  const payloads = [];
  for (let i = 0; i < cfg.memoryServices; i++) {
    const svc = makeService(i, cfg.memoryEndpoints);
    names.push(svc.name);
    payloads.push(enc.encode(JSON.stringify(svc)));
  }
  const expected = new Set(names);
  const done = new Set();
  ctx.onSet = (msg) => {
    const svc = msg.subject.slice(ENDPOINTS_PREFIX.length);
    if (done.has(svc) || !expected.has(svc)) return;
    try {
      if (msg.json().endpoints?.length === cfg.memoryEndpoints) done.add(svc);
    } catch {
      // not an endpoint set
    }
  };
  const label = `  3/3 memory: ${cfg.memoryServices.toLocaleString('en-US')} services × ${cfg.memoryEndpoints} endpoints`;
  const bar = new Progress(label, cfg.memoryServices);
  const stats = { acked: 0, errors: 0, attempted: 0 };
  const t0 = performance.now();
  const deadlineAt = t0 + cfg.memoryTimeoutMs;
  let finished = false;
  const published = publishBounded({
    js: ctx.js,
    count: cfg.memoryServices,
    inFlight: cfg.ingestInFlight,
    deadlineAt,
    stats,
    make: (i) => ({ subject: `mesh.v1.registry.${names[i]}.register`, data: payloads[i], msgId: `bench-mem-${i}` }),
  }).then(() => {
    finished = true;
  });
  while (performance.now() < deadlineAt) {
    bar.update(done.size, `applied · ${stats.acked.toLocaleString('en-US')} published`);
    if (finished && done.size >= stats.acked) break;
    await sleep(50);
  }
  await Promise.race([published, sleep(100)]);
  const applySeconds = (performance.now() - t0) / 1000;
  const applied = memoryOf(pid);
  const settleUntil = performance.now() + cfg.settleMs;
  while (performance.now() < settleUntil) {
    bar.update(done.size, 'applied · letting it settle');
    await sleep(100);
  }
  const settled = memoryOf(pid);
  const result = {
    services: cfg.memoryServices,
    endpointsPerService: cfg.memoryEndpoints,
    applied: done.size,
    complete: done.size === cfg.memoryServices,
    publishErrors: stats.errors,
    applySeconds: Number(applySeconds.toFixed(2)),
    rssBeforeBytes: before?.rss,
    rssBytes: applied?.rss,
    rssSettledBytes: settled?.rss,
    peakRssBytes: settled?.hwm,
    settleMs: cfg.settleMs,
    natsServerRssBytes: memoryOf(ctx.nats.proc?.pid)?.rss,
    consumer: await consumerState(ctx),
  };
  bar.finish(
    `  3/3 memory: ${done.size.toLocaleString('en-US')} services applied in ${result.applySeconds}s; discovery RSS ${mib(result.rssBytes)} (after ${cfg.settleMs / 1000}s: ${mib(result.rssSettledBytes)}, peak ${mib(result.peakRssBytes)})`,
  );
  return result;
}

async function runOnce(libs, cfg, replicas, withMemory) {
  return withCleanup(async (scope) => {
    const ctx = await startStack(scope, libs, replicas, cfg.profileDir);
    const run = { replicas, maxInFlightPerReplica: Number(process.env.DISCOVERY_MAX_IN_FLIGHT || 64) };
    run.rssAtStartBytes = ctx.discovery.map((p) => memoryOf(p.pid)?.rss);
    const { result: ingest, names } = await phaseIngest(ctx, cfg);
    run.ingest = ingest;
    run.rssAfterIngestBytes = ctx.discovery.map((p) => memoryOf(p.pid)?.rss);
    await sleep(500);
    const lat = await phaseLatency(ctx, cfg, libs, names, 'latency');
    run.latency = lat.result;
    // Histograms are merged across repetitions for the chart, then freed; not part of the JSON.
    Object.defineProperty(run, 'hists', { value: { latency: lat.hist, ack: lat.ackHist }, enumerable: false });
    if (withMemory) run.memory = await phaseMemory(ctx, cfg);
    run.deadLetters = ctx.deadLetters;
    run.firstDeadLetter = ctx.firstDeadLetter;
    run.discoveryWarnings = ctx.discovery.flatMap((p) => p.output.filter((l) => /"level":"(warn|error|fatal)"/.test(l)).slice(0, 5));
    run.discoveryAlive = ctx.discovery.map((p) => p.running);
    return run;
  });
}

// ─── aggregation over repetitions ────────────────────────────────────────────────────────────

function aggregate(libs, group) {
  const merged = libs.newHistogram();
  const mergedAck = libs.newHistogram();
  for (const r of group) {
    if (r.hists?.latency) merged.add(r.hists.latency);
    if (r.hists?.ack) mergedAck.add(r.hists.ack);
  }
  const pick = (f) => stat(group.map(f));
  const withMem = group.filter((r) => r.memory);
  const agg = {
    replicas: group[0].replicas,
    repetitions: group.length,
    ingest: {
      complete: group.every((r) => r.ingest.complete),
      eventsPerSec: pick((r) => r.ingest.eventsPerSec),
      publishPerSec: pick((r) => r.ingest.publishPerSec),
      seconds: pick((r) => r.ingest.seconds),
      publishSeconds: pick((r) => r.ingest.publishSeconds),
      cpuCores: medianByKey(group.map((r) => r.ingest.cpuCores)),
    },
    latency: {
      lost: group.reduce((n, r) => n + r.latency.lost, 0),
      achievedRate: pick((r) => r.latency.achievedRate),
      p50: pick((r) => r.latency.latencyMs?.p50),
      p99: pick((r) => r.latency.latencyMs?.p99),
      p999: pick((r) => r.latency.latencyMs?.p999),
      max: pick((r) => r.latency.latencyMs?.max),
      ackP50: pick((r) => r.latency.publishAckMs?.p50),
      ackP99: pick((r) => r.latency.publishAckMs?.p99),
      pooled: summarize(merged),
      pooledAck: summarize(mergedAck),
      cpuCores: medianByKey(group.map((r) => r.latency.cpuCores)),
    },
    memory: withMem.length
      ? {
          complete: withMem.every((r) => r.memory.complete),
          rssBytes: stat(withMem.map((r) => r.memory.rssBytes)),
          rssSettledBytes: stat(withMem.map((r) => r.memory.rssSettledBytes)),
          peakRssBytes: stat(withMem.map((r) => r.memory.peakRssBytes)),
          idleRssBytes: stat(withMem.map((r) => r.rssAtStartBytes?.[0])),
          afterIngestRssBytes: stat(withMem.map((r) => r.rssAfterIngestBytes?.[0])),
          applySeconds: stat(withMem.map((r) => r.memory.applySeconds)),
        }
      : undefined,
  };
  const maxNines = ninesFor(merged.totalCount);
  const curves = {
    latency: merged.totalCount ? percentileCurve(merged, maxNines) : [],
    ack: mergedAck.totalCount ? percentileCurve(mergedAck, maxNines) : [],
    maxNines,
  };
  merged.destroy?.();
  mergedAck.destroy?.();
  for (const r of group) {
    r.hists?.latency?.destroy?.();
    r.hists?.ack?.destroy?.();
  }
  return { agg, curves };
}

// ─── reporting ───────────────────────────────────────────────────────────────────────────────

function checks(a) {
  const out = {
    ingest: a.ingest.complete && a.ingest.eventsPerSec?.median >= AIMS.ingestPerSec,
    latency: a.latency.lost === 0 && a.latency.p99?.median <= AIMS.p99Ms,
  };
  if (a.memory) out.memory = a.memory.complete && a.memory.rssBytes?.median <= AIMS.rssBytes;
  return out;
}

function aimsOf(aggs) {
  const one = aggs.find((a) => a.replicas === 1) ?? aggs[0];
  const ok = checks(one);
  const list = [
    {
      name: 'ingest',
      aim: `≥ ${int(AIMS.ingestPerSec)} events/s`,
      value: one.ingest.eventsPerSec?.median,
      met: ok.ingest,
      runsMeetingAim: runsMeeting(one.ingest.eventsPerSec, (v) => v >= AIMS.ingestPerSec),
    },
    {
      name: 'latency',
      aim: `p99 ≤ ${AIMS.p99Ms} ms`,
      value: one.latency.p99?.median,
      met: ok.latency,
      runsMeetingAim: runsMeeting(one.latency.p99, (v) => v <= AIMS.p99Ms),
    },
  ];
  if (one.memory)
    list.push({
      name: 'memory',
      aim: `≤ ${mib(AIMS.rssBytes)}`,
      value: one.memory.rssBytes?.median,
      met: ok.memory,
      runsMeetingAim: runsMeeting(one.memory.rssBytes, (v) => v <= AIMS.rssBytes),
    });
  for (const a of list) a.runs = one.repetitions;
  return list;
}

function table(aggs, cfg) {
  const { lines, row } = replicaTable(aggs);
  lines.push(
    row(
      `Registration ingest: ${int(cfg.services)} services, ${cfg.ingestInFlight} publishes in flight, first publish → last endpoint set`,
      `≥ ${int(AIMS.ingestPerSec)} events/s`,
      (a) => `${spread(a.ingest.eventsPerSec, int)} events/s${a.ingest.complete ? '' : ' (incomplete)'}${verdict(checks(a).ingest)}`,
    ),
  );
  lines.push(row('… all publishes acknowledged by JetStream at', '—', (a) => `${spread(a.ingest.publishPerSec, int)} events/s`));
  lines.push(
    row(`Register → watcher notified at ${int(cfg.latencyRate)} events/s for ${cfg.latencySeconds} s: p50`, '—', (a) =>
      spread(a.latency.p50, ms, num),
    ),
  );
  lines.push(row('… p99', `≤ ${AIMS.p99Ms} ms`, (a) => `${spread(a.latency.p99, ms, num)}${verdict(checks(a).latency)}`));
  lines.push(row('… p99.9 / max', '—', (a) => `${ms(a.latency.p999?.median)} / ${ms(a.latency.max?.median)}`));
  lines.push(
    row(
      '… all runs pooled: p50 / p99 / max',
      '—',
      (a) => `${ms(a.latency.pooled?.p50)} / ${ms(a.latency.pooled?.p99)} / ${ms(a.latency.pooled?.max)}`,
    ),
  );
  lines.push(row('… notifications lost (all runs)', '0', (a) => int(a.latency.lost)));
  lines.push(
    row(
      '… for comparison, registry publish → JetStream ack: p50 / p99',
      '—',
      (a) => `${ms(a.latency.ackP50?.median)} / ${ms(a.latency.ackP99?.median)}`,
    ),
  );
  lines.push(
    row(
      `Discovery RSS holding ${int(cfg.memoryServices)} services × ${cfg.memoryEndpoints} endpoints, once applied`,
      `≤ ${mib(AIMS.rssBytes)}`,
      (a) =>
        a.memory
          ? `${spread(a.memory.rssBytes, mib, mibNum)}${a.memory.complete ? '' : ' (incomplete)'}${verdict(checks(a).memory)}`
          : 'not measured',
    ),
  );
  lines.push(
    row(`… ${cfg.settleMs / 1000} s later / peak (VmHWM) / idle at start`, '—', (a) =>
      a.memory
        ? `${mib(a.memory.rssSettledBytes?.median)} / ${mib(a.memory.peakRssBytes?.median)} / ${mib(a.memory.idleRssBytes?.median)}`
        : '–',
    ),
  );
  lines.push(row('CPU during ingest, cores busy (median)', '—', (a) => cpuCell(a.ingest.cpuCores)));
  lines.push(row(`CPU at ${int(cfg.latencyRate)} events/s, cores busy (median)`, '—', (a) => cpuCell(a.latency.cpuCores)));
  return lines.join('\n');
}

function observations(aggs, cfg, machine) {
  const out = [];
  const one = aggs.find((a) => a.replicas === 1) ?? aggs[0];
  const two = aggs.find((a) => a.replicas === 2);
  const ing = one.ingest;
  const rate = ing.eventsPerSec?.median;
  const pubRate = ing.publishPerSec?.median;
  if (pubRate && rate && pubRate > rate * 1.3)
    out.push(
      `Publishing is not the limit: JetStream acknowledged all ${int(cfg.services)} registrations at ${int(pubRate)}/s (median); discovery then worked through the backlog in the stream.`,
    );
  const dc = ing.cpuCores.discovery;
  if (dc !== undefined && rate)
    out.push(
      `During ingest one discovery replica kept ${dc.toFixed(2)} cores busy (${int((dc * 1e6) / rate)} µs of CPU per event), nats-server ${ing.cpuCores['nats-server']?.toFixed(2)}, this benchmark ${ing.cpuCores.bench?.toFixed(2)}, the whole ${machine.cores}-core machine ${ing.cpuCores['whole machine']?.toFixed(2)}${dc > 0.85 ? ': a single replica is bound by its one JavaScript thread' : ''}.`,
    );
  const noise = noiseObservation([...aggs.map((a) => a.ingest.cpuCores.other), ...aggs.map((a) => a.latency.cpuCores.other)]);
  if (noise) out.push(noise);
  const lc = one.latency.cpuCores.discovery;
  if (lc !== undefined)
    out.push(
      `At a steady ${int(cfg.latencyRate)} events/s one replica used ${lc.toFixed(2)} cores: at most ${int((lc * 1e6) / cfg.latencyRate)} µs per event, including its periodic scans of the whole ${int(cfg.services)}-service registry (sweeper, health checker).`,
    );
  if (two && rate)
    out.push(
      `With 2 replicas (same ${machine.cores} cores) ingest was ${int(two.ingest.eventsPerSec?.median)} events/s (${(((two.ingest.eventsPerSec?.median ?? 0) / rate - 1) * 100).toFixed(0)}% vs 1 replica), the whole machine ${two.ingest.cpuCores['whole machine']?.toFixed(2)} cores busy; p99 latency ${ms(two.latency.p99?.median)}. Every replica also consumes every KV change and every endpoint set (its registry cache and endpoint view), so that work is duplicated, not shared.`,
    );
  if (one.latency.ackP99?.median !== undefined)
    out.push(
      `At ${int(cfg.latencyRate)} events/s the registry publish alone (client → JetStream file store → ack) has p99 ${ms(one.latency.ackP99.median)}; the notification path adds the delivery to discovery, a KV compare-and-set (file store) and the endpoint-set publish per event, all on discovery's one event loop.`,
    );
  if (one.memory)
    out.push(
      `Memory: ${mib(one.memory.idleRssBytes?.median)} idle, ${mib(one.memory.afterIngestRssBytes?.median)} after ingesting ${int(cfg.services)} small services, ${mib(one.memory.rssBytes?.median)} holding ${int(cfg.memoryServices)} × ${cfg.memoryEndpoints} endpoints — about ${int(((one.memory.rssBytes?.median ?? 0) - (one.memory.idleRssBytes?.median ?? 0)) / (cfg.memoryServices * cfg.memoryEndpoints))} bytes per endpoint; each replica keeps every service twice in memory (the KV record cache and the endpoint-set view).`,
    );
  return out;
}

export async function run({ root, quick = false, replicas = [1, 2], machine, cpuProf = false, repetitions, writeDoc = !quick }) {
  const libs = loadLibs(root);
  const cfg = { ...(quick ? QUICK : FULL) };
  if (repetitions) cfg.repetitions = repetitions;
  if (cpuProf) cfg.profileDir = profileDirOf(root, 'discovery');
  const started = Date.now();
  const { runs, aggs, curves } = await runGroups({
    suite: 'discovery',
    replicas,
    repetitions: cfg.repetitions,
    quick,
    runOnce: (r) => runOnce(libs, cfg, r, r === 1),
    aggregate: (group) => aggregate(libs, group),
  });
  const aims = aimsOf(aggs);

  // Charts (runs that do not update docs/ keep theirs in bench-results/).
  const imgDir = imgDirOf(root, writeDoc);
  const maxNines = Math.max(...Object.values(curves).map((c) => c.maxNines));
  const series = aggs
    .filter((a) => curves[a.replicas].latency.length)
    .map((a) => ({
      name: `register → watcher notified, ${plural(a.replicas)}${a.repetitions > 1 ? ` (${a.repetitions} runs pooled)` : ''}`,
      points: curves[a.replicas].latency,
    }));
  const first = aggs[0];
  if (curves[first.replicas].ack.length)
    series.push({
      name: `registry publish → JetStream ack (${plural(first.replicas)} runs)`,
      points: curves[first.replicas].ack,
      color: '#9ca3af',
    });
  writeFileSync(
    join(imgDir, 'discovery-latency.svg'),
    percentileChart({
      title: `Discovery: register → watcher notified at ${int(cfg.latencyRate)} events/s`,
      subtitle: `${cfg.latencySeconds} s per run after ${cfg.warmupSeconds} s warm-up, ${int(cfg.latencyServices)} services; JetStream file store; ${machine.cores} cores`,
      series,
      maxNines,
      hlines: [{ value: AIMS.p99Ms, label: `aim: p99 ≤ ${AIMS.p99Ms} ms` }],
    }),
  );
  const ingestSeries = [];
  aggs.forEach((a, k) => {
    // The run whose ingest rate is the median of its group.
    const group = runs.filter((r) => r.replicas === a.replicas).sort((x, y) => x.ingest.eventsPerSec - y.ingest.eventsPerSec);
    const r = group[Math.floor((group.length - 1) / 2)];
    const [light, dark] = [
      ['#93c5fd', '#2563eb'],
      ['#fca5a5', '#dc2626'],
      ['#86efac', '#059669'],
    ][k % 3];
    ingestSeries.push({
      name: `published (acked), ${plural(a.replicas)}`,
      points: r.ingest.timeline.map(([t, p]) => [t, p]),
      color: light,
      dashed: true,
    });
    ingestSeries.push({
      name: `applied (endpoint set seen), ${plural(a.replicas)}`,
      points: r.ingest.timeline.map(([t, , d]) => [t, d]),
      color: dark,
    });
  });
  writeFileSync(
    join(imgDir, 'discovery-ingest.svg'),
    lineChart({
      title: `Discovery: ingest of ${int(cfg.services)} registrations (median run)`,
      subtitle: `${cfg.ingestInFlight} JetStream publishes in flight; JetStream file store; ${machine.cores} cores`,
      series: ingestSeries,
      xLabel: 'seconds since first publish',
      yLabel: 'events',
      xFormat: (t) => `${t}s`,
    }),
  );

  const json = {
    suite: 'discovery',
    quick,
    machine,
    config: { ...cfg, replicas, aims: AIMS },
    aims,
    summary: aggs,
    runs,
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  const md = table(aggs, cfg);
  const obs = observations(aggs, cfg, machine);
  const avgBytes = stat(runs.map((r) => r.ingest.avgPayloadBytes))?.median;
  const section = [
    '## Discovery',
    '',
    `Measured ${measuredOn(machine)}; ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''} per replica count, each on fresh servers. Reproduce with \`npm run bench -- discovery\` (raw numbers in \`bench-results/discovery.json\`).`,
    '',
    `Setup: a fresh nats-server (JetStream, file store) and redis-server on free loopback ports and the compiled discovery app with its defaults (\`DISCOVERY_MAX_IN_FLIGHT\` 64, \`LOG_LEVEL\` info). Registrations are raw \`mesh.v1.registry.<svc>.register\` events as any NATS client would publish them: http/grpc/tcp services with a virtual IP and five settings, 1–3 endpoints with four Kubernetes-style labels each (about ${int(avgBytes)} bytes); no heartbeat or active health check, so Redis is not on the measured path.`,
    '',
    `1. **Ingest**: ${int(cfg.services)} register events of distinct services, published through JetStream with at most ${cfg.ingestInFlight} unacknowledged; a core NATS subscriber on \`mesh.v1.discovery.endpoints.>\` notes the first endpoint set of each service. Rate = events ÷ (first publish → last first endpoint set).`,
    `2. **Latency**: ${int(cfg.latencyRate)} events/s for ${cfg.latencySeconds} s after ${cfg.warmupSeconds} s of unrecorded warm-up, paced from the start time so timer jitter never drifts. Each event re-registers one of ${int(cfg.latencyServices)} services with a changed endpoint label carrying the event's sequence number; the same subscriber records publish → endpoint set received in an HDR histogram.`,
    `3. **Memory**: the ${int(cfg.memoryServices)} services are registered again with ${cfg.memoryEndpoints} endpoints each; once every service has been published with ${cfg.memoryEndpoints} endpoints, VmRSS of the discovery process is read from \`/proc/<pid>/status\`, and again ${cfg.settleMs / 1000} s later.`,
    '',
    md,
    '',
    ...aimsParagraph(aims),
    '',
    '![Discovery latency by percentile](img/discovery-latency.svg)',
    '',
    '![Discovery ingest: published vs applied over time](img/discovery-ingest.svg)',
    '',
    'Observations from this run:',
    '',
    ...obs.map((o) => `- ${o}`),
    '',
    'To see where discovery spends its time, `node tools/bench/run.mjs discovery --replicas=1 --runs=1 --cpu-prof` writes V8 CPU profiles to `bench-results/profiles/` (open them in Chrome DevTools or speedscope); discovery settings such as `DISCOVERY_MAX_IN_FLIGHT` or `DISCOVERY_SWEEP_INTERVAL` set in the environment reach the replicas the benchmark starts.',
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  return { json, table: md, section, aims };
}
