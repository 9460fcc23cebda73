// Load against an HTTP target for the data-plane suites (dataplane, resilience): throughput at a
// fixed concurrency with wrk (1 thread; the Node load generator when wrk is unavailable), latency
// at a fixed rate with the Node open-loop generator (loadgen.mjs, its own process, on a raw
// HTTP/1.1 client), and the CPU of
// the processes involved over the recorded part. A target is `{ url, host? }`; `ctx` holds the
// control plane (`ctx.cp`, see mesh.mjs) and the tools (`ctx.wrk`, see apt.mjs); `libs` the
// workspace packages plus undici, hdr-histogram-js and a histogram factory (`newHistogram`).
import { spawn } from 'node:child_process';
import { spawnScript } from './mesh.mjs';
import { cpuMeter } from './proc.mjs';
import { summarize } from './stats.mjs';

/** One GET through a target; returns { status, text, headers }. */
export async function probe(libs, target, path = '/') {
  const r = await libs.undici.request(`${target.url}${path}`, { headers: target.host ? { host: target.host } : {} });
  return { status: r.statusCode, text: await r.body.text(), headers: r.headers };
}

/** Polls until the target answers 200 (a fresh sidecar may not have its snapshot yet). */
export function until200(libs, target, what) {
  let last;
  return libs.testing
    .waitFor(
      async () => {
        last = await probe(libs, target).catch((e) => ({ status: 0, text: e.message }));
        return last.status === 200;
      },
      { timeoutMs: 30_000, intervalMs: 100, what },
    )
    .catch((e) => {
      throw new Error(`${e.message}; last answer ${last?.status}: ${last?.text?.slice(0, 300)}`);
    });
}

/**
 * CPU of the named processes from `delayMs` (after the warm-up) for `measureMs`, while `fn` runs:
 * the meter stops on its own timer, before the load generator exits and its /proc entry goes.
 * The control plane's processes are folded into one figure ("control plane"), except those named
 * in `keep` (e.g. redis-server when it is on the measured path).
 */
export async function withCpu(pids, ctx, delayMs, measureMs, fn, keep = []) {
  let cpuDone;
  const measured = new Promise((resolve) => {
    cpuDone = setTimeout(() => {
      const meter = cpuMeter({ ...pids, ...ctx.cp.pids() });
      cpuDone = setTimeout(() => resolve(meter.stop()), measureMs);
    }, delayMs);
  });
  const result = await fn();
  const raw = await Promise.race([measured, new Promise((r) => setTimeout(() => r({}), 0))]);
  clearTimeout(cpuDone);
  const cpu = {};
  let control = 0;
  const controlNames = new Set(Object.keys(ctx.cp.pids()).filter((k) => !keep.includes(k)));
  for (const [k, v] of Object.entries(raw)) {
    if (controlNames.has(k)) control += v;
    else if (k !== 'nginx master') cpu[k] = v;
  }
  cpu['control plane'] = Math.round(control * 100) / 100;
  return { result, cpu };
}

/** Runs a Node load generator process and returns its result line, histograms decoded. */
export async function nodeLoad(libs, scope, ctx, target, pids, opts, keep) {
  const { proc } = await spawnScript(scope, libs.testing, {
    name: 'loadgen',
    script: 'loadgen.mjs',
    args: [JSON.stringify({ ...target, ...opts })],
  });
  const delayMs = opts.warmupSeconds * 1000 + 300;
  const measureMs = opts.seconds * 1000 - 600;
  const { result, cpu } = await withCpu(
    { ...pids, 'load generator': proc.pid },
    ctx,
    delayMs,
    measureMs,
    async () => {
      await proc.exited;
      const line = proc.output.find((l) => l.includes('"msg":"loadgen done"'));
      if (!line) throw new Error(`load generator failed: ${proc.output.slice(-10).join('\n')}`);
      return JSON.parse(line);
    },
    keep,
  );
  for (const k of ['latency', 'fromSend', 'lag']) if (result[k]) result[k] = libs.hdr.decodeFromCompressedBase64(result[k], 'packed');
  return { ...result, cpu };
}

/** Runs wrk (1 thread) and parses requests/s, latency percentiles, errors and non-2xx answers. */
export function wrk(bin, target, connections, seconds) {
  const args = [
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '--latency',
    ...(target.host ? ['-H', `Host: ${target.host}`] : []),
    `${target.url}/`,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  child.stderr.on('data', (b) => {
    out += b;
  });
  const done = new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out.trim().slice(-500)}`));
      const num = (re) => {
        const m = out.match(re);
        return m ? Number(m[1]) : undefined;
      };
      const latency = (p) => {
        const m = out.match(new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)`, 'm'));
        return m ? Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]] : undefined;
      };
      const sock = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
      resolve({
        requests: num(/(\d+) requests in/),
        rps: num(/Requests\/sec:\s+([\d.]+)/),
        p50: latency(50),
        p99: latency(99),
        errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
        non200: num(/Non-2xx or 3xx responses: (\d+)/) ?? 0,
      });
    }),
  );
  return { pid: child.pid, done };
}

/**
 * Throughput at `cfg.connections` keep-alive connections: `cfg.tputWarmup` s unrecorded, then
 * `cfg.tputSeconds` s recorded (wrk when `ctx.wrk.path`, else the Node generator, closed loop).
 */
export async function throughput(libs, scope, cfg, ctx, target, pids, keep) {
  if (ctx.wrk.path) {
    await wrk(ctx.wrk.path, target, cfg.connections, cfg.tputWarmup).done;
    const w = wrk(ctx.wrk.path, target, cfg.connections, cfg.tputSeconds);
    const { result, cpu } = await withCpu({ ...pids, 'load generator': w.pid }, ctx, 200, cfg.tputSeconds * 1000 - 600, () => w.done, keep);
    return { ...result, cpu, generator: 'wrk' };
  }
  const r = await nodeLoad(
    libs,
    scope,
    ctx,
    target,
    pids,
    { mode: 'closed', connections: cfg.connections, seconds: cfg.tputSeconds, warmupSeconds: cfg.tputWarmup },
    keep,
  );
  const s = summarize(r.latency);
  return { requests: r.requests, rps: r.rps, p50: s?.p50, p99: s?.p99, errors: r.errors, non200: r.non200, cpu: r.cpu, generator: 'node' };
}

/** Latency at a fixed `cfg.rate` (open loop, from the scheduled send): `cfg.latWarmup` s unrecorded, then `cfg.latSeconds` s. */
export function latency(libs, scope, cfg, ctx, target, pids, keep) {
  return nodeLoad(
    libs,
    scope,
    ctx,
    target,
    pids,
    { mode: 'open', rate: cfg.rate, connections: cfg.connections, seconds: cfg.latSeconds, warmupSeconds: cfg.latWarmup },
    keep,
  );
}

/** CPU time per request in µs of the processes `names` (cores busy ÷ requests per second). */
export function perReqUs(cpu, names, rps) {
  const cores = names.reduce((a, n) => a + (cpu?.[n] ?? 0), 0);
  return names.length && rps ? (cores / rps) * 1e6 : undefined;
}
