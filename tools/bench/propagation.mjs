// Propagation benchmark: how long a policy change takes to reach 500 subscribed sidecars. A fresh
// control plane (nats-server, redis-server, discovery, policy, proxy-config; no CA) with 500
// services that each declare one shared upstream, and 500 lightweight sidecars (config agents,
// lib/config-agents.mjs, in a few processes) following their service's snapshot subject the way the
// sidecar does. Each change is a `mesh.applyPolicy`; from its acknowledgement the suite waits until
// every agent holds a snapshot carrying the change. Two kinds of change: a TrafficPolicy on the
// shared upstream (one effective policy changes; proxy-config rebuilds the 500 callers' snapshots)
// and a mesh-wide AuthorizationPolicy (`serviceName: '*'`: the policy service republishes 501
// effective policies, proxy-config rebuilds 501 snapshots). See docs/benchmarks.md.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { withCleanup } from './lib/cleanup.mjs';
import { measuredOn } from './lib/machine.mjs';
import { MESH_BUILT, registerPlain, startControlPlane } from './lib/mesh.mjs';
import { boundedAll } from './lib/pace.mjs';
import { cpuMeter, windowCpuMeter } from './lib/proc.mjs';
import { note, Progress } from './lib/progress.mjs';
import { cpuCell, int, ms, noiseObservation, spread, verdict } from './lib/report.mjs';
import { imgDirOf, natsLibs, profileDirOf, requireBuilt } from './lib/stack.mjs';
import { histogramFactory, medianByKey, stat, summarize } from './lib/stats.mjs';
import { lineChart } from './lib/svg.mjs';
import { serviceName } from './lib/workload.mjs';

export const title = 'Policy propagation';
export const describe =
  'a policy change reaching 500 subscribed sidecars (lightweight agents following `mesh.v1.config.proxy.<svc>` like the sidecar): per-sidecar delay p50/p99 and time until all applied, from the apply acknowledgement, for a TrafficPolicy on a shared upstream and a mesh-wide AuthorizationPolicy, 10 changes each';

const AIMS = { p99Ms: 100 };
/** The processes whose run and run-queue times the table shows, in this order. */
const SCHED_SHOWN = ['policy', 'proxy-config', 'nats-server', 'config agents'];
const FULL = { services: 500, agentProcesses: 4, warmup: 5, changes: 10, changeTimeoutMs: 15_000, pauseMs: 500, repetitions: 1 };
const QUICK = { ...FULL, services: 100, agentProcesses: 2, changes: 3 };
const SHARED = 'prop-shared';
/** One service in this many has its snapshots watched on the bus by the suite itself. */
const BUS_SAMPLE = 5;
const SCENARIOS = [
  {
    id: 'traffic',
    label: 'TrafficPolicy on the shared upstream',
    color: '#2563eb',
    doc: (k) => ({ kind: 'TrafficPolicy', name: `${SHARED}-traffic`, serviceName: SHARED, timeouts: { request: `${10_000 + k}ms` } }),
  },
  {
    id: 'authz',
    label: "mesh-wide AuthorizationPolicy (serviceName '*')",
    color: '#dc2626',
    doc: (k) => ({
      kind: 'AuthorizationPolicy',
      name: 'bench-mesh-wide',
      serviceName: '*',
      action: 'DENY',
      rules: [{ from: { namespaces: [`bench-change-${k}`] } }],
    }),
  },
];

/** Starts the agent processes; `onLine` gets each snapshot report. Resolves once every agent is ready. */
async function startAgents(scope, cfg, natsUrl, services, onLine) {
  const per = Math.ceil(services.length / cfg.agentProcesses);
  const procs = [];
  for (let i = 0; i < cfg.agentProcesses; i++) {
    const mine = services.slice(i * per, (i + 1) * per);
    const child = spawn(
      process.execPath,
      [
        ...(cfg.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${cfg.profileDir}`, `--cpu-prof-name=config-agents-${i + 1}.cpuprofile`] : []),
        join(import.meta.dirname, 'lib/config-agents.mjs'),
        JSON.stringify({ natsUrl, services: mine, shared: SHARED }),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const proc = {
      pid: child.pid,
      get running() {
        return child.exitCode === null && child.signalCode === null;
      },
      kill: (sig) => child.kill(sig),
    };
    scope.track(proc);
    scope.defer(`config agents ${i + 1}`, () => {
      if (proc.running) child.kill('SIGTERM');
    });
    let stderr = '';
    child.stderr.on('data', (b) => {
      stderr = `${stderr}${b}`.slice(-2000);
    });
    const ready = new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`config agents ${i + 1} exited (${code}): ${stderr}`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.includes('"msg":"agents ready"')) return resolve();
        try {
          onLine(JSON.parse(line));
        } catch {
          // not a report
        }
      });
    });
    procs.push({ pid: child.pid, ready });
  }
  await Promise.all(procs.map((p) => p.ready));
  return procs;
}

async function runOnce(libs, cfg) {
  return withCleanup(async (scope) => {
    const { testing } = libs;
    const cp = await startControlPlane(scope, testing, {
      ca: false,
      env: JSON.parse(process.env.BENCH_CP_ENV ?? '{}'),
      profileDir: cfg.profileDir,
    });
    const services = Array.from({ length: cfg.services }, (_, i) => serviceName(i));
    const started = performance.now();
    await registerPlain(cp.mesh, SHARED, 18080);
    const reg = { acked: 0, errors: 0, attempted: 0 };
    await boundedAll({
      count: services.length,
      inFlight: 32,
      deadlineAt: performance.now() + 120_000,
      stats: reg,
      start: (i) => registerPlain(cp.mesh, services[i], 20_000 + i, { upstreams: [SHARED] }),
    });
    if (reg.errors) throw new Error(`${reg.errors} registrations failed: ${reg.firstError}`);
    note(`  registered ${int(services.length + 1)} services in ${ms(performance.now() - started)}`);

    // Latest report per service; the waiter of the change in progress.
    const latest = new Map();
    let bad = 0;
    let waiter;
    const agents = await startAgents(scope, cfg, cp.nats.url, services, (r) => {
      if (r.bad) return void bad++;
      latest.set(r.s, r);
      waiter?.(r);
    });
    // Ready when every agent holds a snapshot that includes the shared upstream (it reports -1 or a marker).
    await testing.waitFor(() => latest.size === services.length, {
      timeoutMs: 120_000,
      intervalMs: 200,
      what: `every agent to receive its first snapshot (${latest.size} of ${services.length})`,
    });
    let quietSince = Date.now();
    const before = () => [...latest.values()].reduce((a, r) => a + r.v, 0);
    let sum = before();
    await testing.waitFor(
      () => {
        const s = before();
        if (s !== sum) {
          sum = s;
          quietSince = Date.now();
        }
        return Date.now() - quietSince > 1_000;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: 'snapshots to settle' },
    );
    note(`  ${int(services.length)} agents in ${cfg.agentProcesses} processes hold their snapshots`);

    // Effective-policy events as they leave the policy service (core NATS sees the JetStream publishes).
    const nc = await libs.nats.connect({ servers: cp.nats.url, name: 'bench-propagation' });
    scope.defer('bench connection', () => nc.close());
    let effective = [];
    nc.subscribe('mesh.v1.config.policy.>', {
      callback: () => {
        effective.push(performance.timeOrigin + performance.now());
      },
    });

    // When each sampled service's snapshot appears on the bus (this suite's own core subscriptions,
    // one in BUS_SAMPLE services, so that watching costs the saturated machine little): the first
    // one per service after a change was sent, to tell producing the snapshots from delivering them.
    let onBus = new Map();
    for (const service of services.filter((_, i) => i % BUS_SAMPLE === 0))
      nc.subscribe(`mesh.v1.config.proxy.${service}`, {
        callback: () => {
          if (!onBus.has(service)) onBus.set(service, performance.timeOrigin + performance.now());
        },
      });

    const pids = { ...cp.pids() };
    agents.forEach((a, i) => {
      pids[`agents ${i + 1}`] = a.pid;
    });
    const out = {};
    let k = 0;
    for (const sc of SCENARIOS) {
      const changes = [];
      const warmups = [];
      let meter;
      // CPU while the recorded changes propagate (apply sent → every sidecar has it), pauses left out.
      const during = windowCpuMeter(pids);
      const progress = new Progress(`  ${sc.label}`, cfg.warmup + cfg.changes);
      // The first changes of a kind are warm-ups, applied and awaited like the others but not
      // recorded: they run the change's code paths (policy, proxy-config, the agents) through
      // V8's JIT, as a control plane that has been running a while has them. Their times are
      // reported apart.
      for (let c = -cfg.warmup; c < cfg.changes; c++) {
        if (c === 0) meter = cpuMeter(pids);
        const marker = ++k;
        const delays = new Map();
        const allIn = new Promise((resolve) => {
          waiter = (r) => {
            if (r.m === marker && !delays.has(r.s)) {
              delays.set(r.s, r.t);
              if (delays.size === services.length) resolve();
            }
          };
        });
        effective = [];
        onBus = new Map();
        const pcLog = cp.apps['proxy-config'].output;
        const pcFrom = pcLog.length;
        if (c >= 0) during.open();
        const tSent = performance.timeOrigin + performance.now();
        const reply = await cp.mesh.applyPolicy(sc.doc(marker));
        const tAck = performance.timeOrigin + performance.now();
        if (!reply.ok) throw new Error(`apply refused: ${JSON.stringify(reply)}`);
        await Promise.race([allIn, new Promise((r) => setTimeout(r, cfg.changeTimeoutMs))]);
        during.close();
        waiter = undefined;
        const fromAck = [...delays.values()].map((t) => t - tAck);
        const allAppliedMs = delays.size === services.length ? Math.max(...fromAck) : undefined;
        if (c < 0) {
          warmups.push(allAppliedMs);
          progress.update(c + cfg.warmup + 1);
          await new Promise((r) => setTimeout(r, cfg.pauseMs));
          continue;
        }
        const h = libs.newHistogram();
        for (const d of fromAck) h.recordValue(Math.max(1, Math.round(d * 1000)));
        const busTimes = [...onBus.values()];
        const behindBus = [...delays].filter(([s]) => onBus.has(s)).map(([s, t]) => t - onBus.get(s));
        changes.push({
          marker,
          applyMs: tAck - tSent,
          reached: delays.size,
          missing: services.length - delays.size,
          delays: fromAck,
          summary: summarize(h),
          allAppliedMs,
          effective: effective.length,
          effectiveFirstMs: effective.length ? effective[0] - tAck : undefined,
          effectiveLastMs: effective.length ? effective.at(-1) - tAck : undefined,
          busFirstMs: busTimes.length ? Math.min(...busTimes) - tAck : undefined,
          busLastMs: busTimes.length ? Math.max(...busTimes) - tAck : undefined,
          behindBus,
          histogram: h,
        });
        progress.update(c + cfg.warmup + 1);
        await new Promise((r) => setTimeout(r, cfg.pauseMs));
        // proxy-config logs a round once all it published is confirmed stored: read them after the pause.
        const rounds = rebuildRounds(pcLog.slice(pcFrom));
        Object.assign(changes.at(-1), {
          rounds: rounds.length,
          compiled: rounds.reduce((a, r) => a + r.snapshots, 0),
          compileMs: rounds.reduce((a, r) => a + r.compileMs, 0),
        });
      }
      const cpu = meter.stop();
      progress.finish();
      out[sc.id] = { changes, cpu, cpuDuring: during.result(), sched: during.perWindow(), warmups };
      const pooled = libs.newHistogram();
      for (const ch of changes) pooled.add(ch.histogram);
      const s = summarize(pooled);
      note(
        `  ${sc.label}: p50 ${ms(s?.p50)}, p99 ${ms(s?.p99)}, max ${ms(s?.max)}; missing ${changes.reduce((a, ch) => a + ch.missing, 0)}`,
      );
    }
    out.bad = bad;
    out.registerSeconds = (performance.now() - started) / 1000;
    return out;
  });
}

function aggregate(libs, runs) {
  return SCENARIOS.map((sc) => {
    const changes = runs.flatMap((r) => r[sc.id].changes);
    const pooled = libs.newHistogram();
    for (const ch of changes) pooled.add(ch.histogram);
    const delays = changes.flatMap((ch) => ch.delays).sort((a, b) => a - b);
    return {
      id: sc.id,
      scenario: sc,
      changes: changes.length,
      pooled: summarize(pooled),
      delays,
      p50: stat(changes.map((ch) => ch.summary?.p50)),
      p99: stat(changes.map((ch) => ch.summary?.p99)),
      allApplied: stat(changes.map((ch) => ch.allAppliedMs)),
      applyMs: stat(changes.map((ch) => ch.applyMs)),
      effective: stat(changes.map((ch) => ch.effective)),
      effectiveFirst: stat(changes.map((ch) => ch.effectiveFirstMs)),
      effectiveLast: stat(changes.map((ch) => ch.effectiveLastMs)),
      busFirst: stat(changes.map((ch) => ch.busFirstMs)),
      busLast: stat(changes.map((ch) => ch.busLastMs)),
      behindBus: quantiles(changes.flatMap((ch) => ch.behindBus ?? [])),
      rounds: stat(changes.map((ch) => ch.rounds)),
      compiled: stat(changes.map((ch) => ch.compiled)),
      compileMs: stat(changes.map((ch) => ch.compileMs)),
      missing: changes.reduce((a, ch) => a + ch.missing, 0),
      warmups: runs.map((r) => r[sc.id].warmups ?? []),
      perRunP99: runs.map((r) => {
        const h = libs.newHistogram();
        for (const ch of r[sc.id].changes) h.add(ch.histogram);
        return summarize(h)?.p99;
      }),
      cpu: medianByKey(runs.map((r) => foldAgents(r[sc.id].cpu))),
      cpuDuring: medianByKey(runs.map((r) => foldAgents(r[sc.id].cpuDuring ?? {}))),
      sched: foldSched(runs.map((r) => r[sc.id].sched ?? {})),
    };
  });
}

/** p50, p99 and max of `values` (nearest rank); undefined when empty. */
function quantiles(values) {
  if (!values.length) return undefined;
  const v = [...values].sort((a, b) => a - b);
  const at = (q) => v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)];
  return { p50: at(0.5), p99: at(0.99), max: v.at(-1) };
}

/** proxy-config's summary of each round of work (from idle to idle) among `lines` of its log. */
function rebuildRounds(lines) {
  const out = [];
  for (const line of lines) {
    if (!line.includes('"snapshots rebuilt"')) continue;
    try {
      const r = JSON.parse(line);
      out.push({ snapshots: r.snapshots ?? 0, published: r.published ?? 0, compileMs: r.compileMs ?? 0, ms: r.ms ?? 0 });
    } catch {
      // not a JSON log line
    }
  }
  return out;
}

/** The agent processes as one CPU figure. */
function foldAgents(cpu) {
  const out = {};
  let agents = 0;
  for (const [k, v] of Object.entries(cpu)) {
    if (k.startsWith('agents ')) agents += v;
    else out[k] = v;
  }
  out['config agents'] = Math.round(agents * 100) / 100;
  return out;
}

/**
 * Per process, the ms per change its threads ran and waited runnable for a CPU, the agent
 * processes summed as one, median of the runs.
 */
function foldSched(perRun) {
  const pick = (field) => medianByKey(perRun.map((r) => foldAgents(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v[field]])))));
  const ran = pick('ran');
  const waited = pick('waited');
  return Object.fromEntries(Object.keys(ran).map((k) => [k, { ran: ran[k], waited: waited[k] }]));
}

/** "proxy-config 38 / 36 ms, …" for the processes on the path. */
function schedCell(sched) {
  return SCHED_SHOWN.filter((k) => sched?.[k])
    .map((k) => `${k} ${sched[k].ran.toFixed(0)} / ${sched[k].waited.toFixed(0)} ms`)
    .join(', ');
}

function table(aggs, cfg) {
  const cols = aggs.map((a) => a.scenario.label);
  const row = (what, aim, cell) => `| ${what} | ${aim} | ${aggs.map(cell).join(' | ')} |`;
  const sp = (st) => spread(st, ms, (x) => ms(x).replace(' ms', ''));
  return [
    `| what | aim | ${cols.join(' | ')} |`,
    `|---|---|${cols.map(() => '---:').join('|')}|`,
    row(
      `Apply acknowledged → sidecar has the change, all ${int(cfg.services)} sidecars × all changes pooled: p50 / p99 / max`,
      `p99 ≤ ${ms(AIMS.p99Ms)}`,
      (a) => `${ms(a.pooled?.p50)} / ${ms(a.pooled?.p99)}${verdict(a.pooled?.p99 <= AIMS.p99Ms)} / ${ms(a.pooled?.max)}`,
    ),
    row('… per change: p50, median (range) of the changes', '—', (a) => sp(a.p50)),
    row('… per change: p99, median (range)', '—', (a) => sp(a.p99)),
    row(`… per change: until all ${int(cfg.services)} applied, median (range)`, '—', (a) => sp(a.allApplied)),
    row('… changes / sidecars that never got one (15 s)', '0 missing', (a) => `${int(a.changes)} / ${int(a.missing)}`),
    row(`Warm-up changes before them (unrecorded): until all ${int(cfg.services)} applied, each in order`, '—', (a) =>
      a.warmups.map((w) => w.map((x) => (x === undefined ? 'incomplete' : ms(x))).join(', ')).join('; '),
    ),
    row('Apply round trip (sent → acknowledged), median', '—', (a) => ms(a.applyMs?.median)),
    row(
      'Effective-policy events per change / first / last, ms after the ack (negative: before it), median',
      '—',
      (a) => `${int(a.effective?.median)} / ${ms(a.effectiveFirst?.median)} / ${ms(a.effectiveLast?.median)}`,
    ),
    row(
      `Snapshots on the bus (this suite’s own subscriptions, every ${BUS_SAMPLE}th service: ${int(Math.ceil(cfg.services / BUS_SAMPLE))}): first / last, ms after the ack, median`,
      '—',
      (a) => `${ms(a.busFirst?.median)} / ${ms(a.busLast?.median)}`,
    ),
    row(
      '… its sidecar has the snapshot after it is on the bus, those sidecars × changes: p50 / p99 / max',
      '—',
      (a) => `${ms(a.behindBus?.p50)} / ${ms(a.behindBus?.p99)} / ${ms(a.behindBus?.max)}`,
    ),
    row(
      "proxy-config per change: rounds of work / snapshots compiled / time compiling (its 'snapshots rebuilt' log), median",
      '—',
      (a) => `${int(a.rounds?.median)} / ${int(a.compiled?.median)} / ${ms(a.compileMs?.median)}`,
    ),
    row('CPU while the changes propagate (apply sent → all applied, summed over the changes), cores busy', '—', (a) =>
      cpuCell(a.cpuDuring),
    ),
    row('CPU over the changes (incl. pauses), cores busy', '—', (a) => cpuCell(a.cpu)),
    row(
      'Per change while it propagates: time each process ran / was runnable but waiting for a CPU (all its threads, from schedstat), median',
      '—',
      (a) => schedCell(a.sched),
    ),
  ].join('\n');
}

function aimsOf(aggs, cfg) {
  return aggs.map((a) => ({
    name: `${a.scenario.label}: propagation to ${int(cfg.services)} sidecars, p99`,
    aim: `≤ ${ms(AIMS.p99Ms)}`,
    value: a.pooled?.p99,
    met: a.pooled?.p99 <= AIMS.p99Ms && a.missing === 0,
    runs: a.perRunP99.length,
    runsMeetingAim: a.perRunP99.filter((v) => v <= AIMS.p99Ms).length,
  }));
}

/** Whether the time went into producing the snapshots or into delivering them, from the bus figures. */
function whereTheTimeGoes(a, cfg) {
  const total = a.allApplied?.median;
  const behind = a.behindBus?.p99;
  if (total === undefined || behind === undefined || a.busLast?.median === undefined) return '';
  const lead = `The last watched snapshot appeared on the bus ${ms(a.busLast.median)} after the ack, and the last sidecar had the change ${ms(total)} after the ack (medians of the changes); a sidecar had its snapshot ${ms(behind)} after it appeared there at p99.`;
  return behind <= total / 4
    ? `${lead} So most of the time goes into producing ${int(cfg.services)} snapshots (proxy-config compiling, publishing and confirming them; nats-server taking each conditional publication into MESH_PROXY), not into delivering them.`
    : `${lead} Delivering them to the agents is a large share of it here.`;
}

/** How busy the machine was while the changes propagated, and what that means for the figures. */
function howBusy(a, machine) {
  const c = a.cpuDuring ?? {};
  const whole = c['whole machine'];
  if (whole === undefined) return '';
  const parts = `policy ${c.policy?.toFixed(2)}, proxy-config ${c['proxy-config']?.toFixed(2)}, nats-server ${c['nats-server']?.toFixed(2)}, the agents ${c['config agents']?.toFixed(2)}, this suite ${c.bench?.toFixed(2)}`;
  const busy =
    whole >= 0.75 * machine.cores
      ? `While the changes propagated the machine was close to saturated, ${whole.toFixed(2)} of ${machine.cores} cores busy (${parts}): every process on the path competes for the same cores, including the agents, which stand in for sidecars that run on other machines in a real mesh.`
      : `While the changes propagated the machine was ${whole.toFixed(2)} of ${machine.cores} cores busy (${parts}).`;
  return `${busy} ${queued(a.sched)}`;
}

/** What the run-queue figures say: how long the producers of the snapshots waited for a CPU. */
function queued(sched) {
  const pc = sched?.['proxy-config'];
  const nats = sched?.['nats-server'];
  if (!pc || !nats) return '';
  const waited = pc.waited + nats.waited;
  const ran = pc.ran + nats.ran;
  const lead = `Per change, proxy-config ran ${ms(pc.ran)} and waited runnable for a CPU ${ms(pc.waited)}; nats-server's threads ran ${ms(nats.ran)} and waited ${ms(nats.waited)} (medians).`;
  return waited >= ran / 2
    ? `${lead} Waiting for a CPU is as large a part of producing the snapshots as the work itself; where the control plane has cores of its own, as in a real mesh, that part would shrink (not measured here).`
    : `${lead} They rarely waited for a CPU: the time is their own work.`;
}

function observations(aggs, cfg, machine) {
  const obs = [];
  const [traffic, authz] = aggs;
  if (traffic)
    obs.push(
      `TrafficPolicy on the shared upstream: one effective policy changes (the first and last effective-policy event arrive ${ms(traffic.effectiveFirst?.median)} and ${ms(traffic.effectiveLast?.median)} after the ack); after its 10 ms debounce proxy-config rebuilds the ${int(cfg.services)} callers' snapshots (${int(traffic.compiled?.median)} compiled in ${ms(traffic.compileMs?.median)}, median) — the shared upstream compiled and serialized once, its canonical JSON reused by every snapshot that holds it — and publishes them to MESH_PROXY as they compile, over core NATS, each confirmed when proxy-config's follow of MESH_PROXY sees it stored (at most 128 unconfirmed). Each reaches its sidecar as nats-server takes it in (a core subscription, no consumer to signal); the watched snapshots (every ${BUS_SAMPLE}th service) appeared on the bus from ${ms(traffic.busFirst?.median)} after the ack (median of the changes).`,
    );
  if (authz)
    obs.push(
      `Mesh-wide AuthorizationPolicy: the policy service recomputes one effective policy per service and publishes them concurrently over core NATS, each confirmed when its follow of MESH_CONFIG sees it stored (at most 256 unconfirmed, in order per service; ${int(authz.effective?.median)} events, the last ${ms(authz.effectiveLast?.median)} after the ack). proxy-config marks only each service's own snapshot for them (an authorization change does not touch callers) and rebuilds each one 10 ms after its input arrived (the debounce is per service), so it compiles while the rest of the burst still arrives: it compiles (${int(authz.compiled?.median)} snapshots in ${ms(authz.compileMs?.median)}, ${int(authz.rounds?.median)} round${authz.rounds?.median === 1 ? '' : 's'} of work, median) and publishes them as in the TrafficPolicy case. The last sidecar had the change ${ms(authz.allApplied?.median)} after the ack (median): two stream intakes of ~${int(cfg.services)} messages one after the other (effective policies, then snapshots) make most of it, and on this 2-core machine every process on the path (policy, proxy-config, nats-server, the agents) competes for the same CPU.`,
    );
  for (const a of aggs) {
    const missed = !(a.pooled?.p99 <= AIMS.p99Ms);
    obs.push(
      `${a.scenario.label}: the ${ms(AIMS.p99Ms)} p99 aim is ${missed ? 'missed' : 'met'} (${ms(a.pooled?.p99)}). ${whereTheTimeGoes(a, cfg)} ${howBusy(a, machine)}${missed && a.id === 'authz' ? ' The mesh-wide case also waits for the policy service to publish an effective policy per service first.' : ''}`,
    );
  }
  const noise = noiseObservation(aggs.map((a) => a.cpu.other));
  if (noise) obs.push(noise);
  return obs;
}

export async function run({ root, quick = false, machine, cpuProf = false, repetitions, writeDoc = !quick }) {
  requireBuilt(root, [...MESH_BUILT, 'libs/bus/dist/index.js', 'libs/proxy-config/dist/index.js']);
  const libs = { ...natsLibs(), newHistogram: histogramFactory() };
  const cfg = { ...(quick ? QUICK : FULL) };
  if (cpuProf) cfg.profileDir = profileDirOf(root, 'propagation');
  if (repetitions) cfg.repetitions = repetitions;
  const started = Date.now();
  const runs = [];
  for (let r = 1; r <= cfg.repetitions; r++) {
    note(`propagation benchmark: run ${r}/${cfg.repetitions}${quick ? ' (quick)' : ''}, ${int(cfg.services)} sidecars`);
    runs.push(await runOnce(libs, cfg));
  }
  const aggs = aggregate(libs, runs);
  const aims = aimsOf(aggs, cfg);
  const md = table(aggs, cfg);

  const imgDir = imgDirOf(root, writeDoc);
  // CDF of per-sidecar delays: the share of (sidecar, change) pairs that had the change by t.
  const cdf = (delays) => {
    const pts = [[0, 0]];
    const n = delays.length;
    const step = Math.max(1, Math.floor(n / 400));
    for (let i = 0; i < n; i += step) pts.push([delays[i], ((i + 1) / n) * 100]);
    if (n) pts.push([delays[n - 1], 100]);
    return pts;
  };
  const xMax = Math.max(AIMS.p99Ms * 1.1, ...aggs.map((a) => a.delays.at(-1) ?? 0));
  writeFileSync(
    join(imgDir, 'propagation-cdf.svg'),
    lineChart({
      title: `Policy propagation to ${int(cfg.services)} sidecars: share that has the change`,
      subtitle: `from the apply acknowledgement; ${int(aggs[0]?.changes ?? 0)} changes per kind pooled; dashed: aim p99 ≤ ${AIMS.p99Ms} ms`,
      series: [
        ...aggs.map((a) => ({ name: a.scenario.label, points: cdf(a.delays), color: a.scenario.color })),
        {
          name: `aim: 99 % by ${AIMS.p99Ms} ms`,
          points: [
            [0, 99],
            [AIMS.p99Ms, 99],
            [AIMS.p99Ms, 0],
          ],
          color: '#6b7280',
          dashed: true,
        },
      ].map((s) => ({ ...s, points: s.points.filter(([x]) => x <= xMax) })),
      xLabel: 'ms after the apply was acknowledged',
      yLabel: '% of sidecars × changes',
      xFormat: (t) => `${t}`,
      legendAt: 'bottom-right',
    }),
  );

  const obs = observations(aggs, cfg, machine);
  const json = {
    suite: 'propagation',
    quick,
    machine,
    config: { ...cfg, aims: AIMS },
    aims,
    summary: aggs.map(({ delays: _d, scenario, ...a }) => ({ ...a, scenario: scenario.label })),
    runs: runs.map((r) => ({
      ...r,
      ...Object.fromEntries(
        SCENARIOS.map((sc) => [sc.id, { ...r[sc.id], changes: r[sc.id].changes.map(({ histogram: _h, delays: _d, ...c }) => c) }]),
      ),
    })),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  const section = [
    '## Policy propagation',
    '',
    `Measured ${measuredOn(machine)}; ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''} on a fresh control plane, ${cfg.changes} changes of each kind per run (\`--runs=N\` for more runs). Reproduce with \`npm run bench -- propagation\` (raw numbers in \`bench-results/propagation.json\`).`,
    '',
    `Setup: a fresh nats-server (JetStream, file store), redis-server, discovery, policy and proxy-config with their defaults (proxy-config: 10 ms debounce per snapshot, at most 100 ms, 128 publications awaiting their confirmation; policy: at most 256 effective-policy publications awaiting their confirmation). ${int(cfg.services)} services (\`${serviceName(0)}\` …) are registered, each with one endpoint and one declared upstream, \`${SHARED}\`, so every snapshot holds that upstream. ${int(cfg.services)} lightweight sidecars, one per service, in ${cfg.agentProcesses} processes (\`tools/bench/lib/config-agents.mjs\`), follow \`mesh.v1.config.proxy.<service>\` as the sidecar does (\`followLastValue\`: a core NATS subscription for each change as it is published, and the stored value read back from MESH_PROXY at start) and offer each snapshot to the sidecar's own SnapshotStore (JSON, the ProxySnapshotV1 schema, the service, the content hash, newer than the one held), without compiling a data plane or writing it to disk. Once all hold their first snapshot and nothing has changed for 1 s, the suite applies ${cfg.warmup} unrecorded warm-up changes (the first changes after a start run policy's and proxy-config's per-service code before V8 has optimized it; their times are in the table, apart) and then ${cfg.changes} recorded changes of each kind with \`mesh.applyPolicy\` (${cfg.pauseMs} ms apart after each completes), and for each recorded change records, per sidecar, the time from the apply's acknowledgement until that sidecar received a snapshot carrying the change:`,
    '',
    `- **${SCENARIOS[0].label}**: a new request timeout on \`${SHARED}\` each time. One effective policy changes; proxy-config rebuilds the ${int(cfg.services)} snapshots that include \`${SHARED}\`.`,
    `- **${SCENARIOS[1].label}**: a DENY rule for a new namespace each time. Every service's effective policy changes (${int(cfg.services + 1)}), so every snapshot is rebuilt.`,
    '',
    "The path of a change: `mesh.v1.policy.<kind>.apply` → the policy service validates it and writes the KV bucket `mesh_policies` (then acknowledges) → its KV watch recomputes the effective policy of each service the policy touches and publishes `mesh.v1.config.policy.<service>` (MESH_CONFIG stream) → proxy-config follows those, marks the snapshots that depend on them, debounces, compiles, checks and hashes them, and publishes `mesh.v1.config.proxy.<service>` (MESH_PROXY stream) → each sidecar's subscription delivers its service's snapshot as it is published.",
    '',
    md,
    '',
    `Aims: ${aims.map((a) => `${a.name} ${a.aim} — **${a.met ? 'met' : 'missed'}**`).join('; ')}.`,
    aims.some((a) => !a.met) ? '' : 'All aims met.',
    '',
    '![Policy propagation: share of sidecars with the change over time](img/propagation-cdf.svg)',
    '',
    'Observations from this run:',
    '',
    ...obs.map((o) => `- ${o}`),
    '',
    "To see where the time goes, `node tools/bench/run.mjs propagation --cpu-prof` writes V8 CPU profiles of discovery, policy, proxy-config and the agent processes to `bench-results/profiles/` (open them in Chrome DevTools or speedscope). The run-queue row comes from each process's threads' `/proc/<pid>/task/<tid>/schedstat` (time on a CPU, time runnable but waiting for one), averaged over the recorded changes (apply sent → all applied).",
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  return { json, table: md, section, aims };
}
