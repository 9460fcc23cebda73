#!/usr/bin/env node
// Benchmark suite entry. `npm run bench` runs every suite; `npm run bench -- discovery` runs one.
//   --quick          smaller workloads; results go to bench-results/ only, docs/ is left alone
//   --replicas=1,2   replica counts of the measured app to run (discovery, policy, ca; default 1,2;
//                    the memory phases run with 1)
//   --runs=N         repetitions per configuration, each on fresh servers (default 3, policy and
//                    ca 2, propagation 1 run of 10 changes per kind, resilience 2 interleaved
//                    rounds in one run; quick 1);
//                    tables show the median and the range
//   --cpu-prof       write V8 CPU profiles of the measured apps to bench-results/profiles/
//                    (profiling slows them down, so docs/ is left alone)
//   --no-doc         leave docs/ alone
//   --paths=a,b      dataplane only: measure these paths (ids: direct, nginx, sidecar, sidecar-node,
//                    mesh-plain, mesh-mtls) to compare them quickly; docs/ is left alone
//   --strict         exit 1 when an aim is missed
//   --list           print the suites and exit
// BENCH_CP_ENV='{"PROXY_CONFIG_MAX_DELAY_MS":"25"}' (propagation) passes settings to every
// control-plane app, to compare them against the defaults; use it with --no-doc.
// Each suite prints a markdown table on stdout, writes bench-results/<suite>.json and rewrites
// its section of docs/benchmarks.md. Progress goes to stderr. Exit code 1 when a suite fails to
// run; missed aims are reported, not turned into failures (unless --strict).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCleanupHandlers } from './lib/cleanup.mjs';
import { updateDoc } from './lib/doc.mjs';
import { calibrate, machineInfo, machineLine } from './lib/machine.mjs';
import { note } from './lib/progress.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const SUITES = {
  discovery: () => import('./discovery.mjs'),
  policy: () => import('./policy.mjs'),
  ca: () => import('./ca.mjs'),
  dataplane: () => import('./dataplane.mjs'),
  propagation: () => import('./propagation.mjs'),
  resilience: () => import('./resilience.mjs'),
};

function usage() {
  return `usage: node tools/bench/run.mjs [suite…] [--quick] [--replicas=1,2] [--runs=N] [--strict] [--cpu-prof] [--no-doc] [--paths=a,b]\nsuites: ${Object.keys(SUITES).join(', ')}`;
}

function parseArgs(argv) {
  const opts = { suites: [], quick: false, strict: false, replicas: [1, 2] };
  for (const a of argv) {
    if (a === '--quick') opts.quick = true;
    else if (a === '--strict') opts.strict = true;
    else if (a === '--cpu-prof') opts.cpuProf = true;
    else if (a === '--no-doc') opts.noDoc = true;
    else if (a.startsWith('--paths=')) {
      opts.paths = a
        .slice('--paths='.length)
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      if (!opts.paths.length) throw new Error('--paths takes path ids, e.g. --paths=direct,mesh-mtls');
    } else if (a.startsWith('--runs=')) {
      opts.runs = Number(a.slice('--runs='.length));
      if (!Number.isInteger(opts.runs) || opts.runs < 1 || opts.runs > 10) throw new Error('--runs takes a count from 1 to 10');
    } else if (a === '--list') opts.list = true;
    else if (a === '--help' || a === '-h') opts.help = true;
    else if (a.startsWith('--replicas=')) {
      const rs = a
        .slice('--replicas='.length)
        .split(',')
        .map((x) => Number(x.trim()));
      if (!rs.length || rs.some((r) => !Number.isInteger(r) || r < 1 || r > 4))
        throw new Error(`--replicas takes counts from 1 to 4, e.g. --replicas=1,2`);
      opts.replicas = [...new Set(rs)].sort((a1, b1) => a1 - b1);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}\n${usage()}`);
    else if (!SUITES[a]) throw new Error(`unknown suite "${a}"\n${usage()}`);
    else opts.suites.push(a);
  }
  if (!opts.suites.length) opts.suites = Object.keys(SUITES);
  // Quick and profiled runs are not representative: they never touch docs/.
  // So do runs of a subset of the paths.
  opts.writeDoc = !(opts.quick || opts.cpuProf || opts.noDoc || opts.paths);
  return opts;
}

async function intro() {
  const lines = [
    '# Benchmarks',
    '',
    '`npm run bench` builds the monorepo (`tsc -b`) and runs every benchmark suite; `npm run bench -- <suite>` runs one (e.g. `npm run bench -- discovery`).',
    'Each suite starts its own nats-server (JetStream, file store) and redis-server on free loopback ports and the compiled apps it measures, and stops them afterwards, so nothing else needs to be running.',
    'A suite prints a markdown table, writes its raw numbers to `bench-results/<suite>.json` (not committed) and rewrites its own section of this file, between its `<!-- bench:<suite>:start/end -->` markers; the charts are SVG files under `docs/img/`.',
    'Each configuration runs several times on fresh servers (3 for discovery, 5 for dataplane, 2 for policy and ca; propagation: one run of 10 changes of each kind after 5 warm-up changes; resilience: 2 interleaved rounds in one run, see its section) and the table shows the median with the range (`--runs=N` to change). `--quick` runs smaller workloads, `--cpu-prof` profiles the apps under test; both leave this file alone, as does `--no-doc`.',
    '',
    '| suite | what it measures |',
    '|---|---|',
  ];
  for (const [name, load] of Object.entries(SUITES)) {
    const mod = await load();
    lines.push(`| \`${name}\` | ${mod.describe} |`);
  }
  lines.push(
    '',
    "Numbers depend heavily on the machine: the reference machine is small (2 cores, loopback, shared and noisy), so compare runs made on the same machine. Every section's machine line ends with two calibration figures measured at the start of its run: single-thread work items per second (JSON out and in and a SHA-256 of a small object: the control plane's per-message work) and the round trip of one byte between two processes over loopback TCP, p50 and p99 (two wake-ups of a sleeping process: what every proxy hop pays); machines of the same description differ in both from day to day. Every aim is shown with whether this run met it; a missed aim is reported as missed.",
    '',
    '<!-- bench:machine:start -->',
    '<!-- bench:machine:end -->',
    '',
  );
  return lines.join('\n');
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  if (opts.help || opts.list) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  installCleanupHandlers();
  const machine = machineInfo();
  machine.calibration = await calibrate();
  note(`bench: ${machineLine(machine)}`);
  const results = join(root, 'bench-results');
  mkdirSync(results, { recursive: true });
  let failed = 0;
  let missed = 0;
  for (const name of opts.suites) {
    const started = Date.now();
    try {
      const mod = await SUITES[name]();
      const out = await mod.run({
        root,
        quick: opts.quick,
        replicas: opts.replicas,
        machine,
        cpuProf: opts.cpuProf,
        repetitions: opts.runs,
        paths: opts.paths,
        writeDoc: opts.writeDoc,
      });
      writeFileSync(join(results, `${name}.json`), `${JSON.stringify(out.json, null, 2)}\n`);
      if (opts.writeDoc) {
        updateDoc(join(root, 'docs/benchmarks.md'), await intro(), {
          machine: `Machine (last run): ${machineLine(machine)}`,
          [name]: out.section,
        });
      }
      process.stdout.write(`\n## ${mod.title}${opts.quick ? ' (quick)' : ''}\n\n${out.table}\n\n`);
      for (const a of out.aims)
        process.stdout.write(
          `- ${a.met ? 'met' : 'MISSED'}: ${a.name} ${a.aim}${a.runs > 1 ? ` (median of ${a.runs} runs; ${a.runsMeetingAim} within the aim)` : ''}\n`,
        );
      process.stdout.write('\n');
      missed += out.aims.filter((a) => !a.met).length;
      note(
        `bench: ${name} done in ${Math.round((Date.now() - started) / 1000)} s → bench-results/${name}.json${opts.writeDoc ? ', docs/benchmarks.md' : ''}`,
      );
    } catch (e) {
      failed++;
      note(`bench: ${name} failed: ${e?.stack ?? e}`);
    }
  }
  if (failed || (opts.strict && missed)) process.exitCode = 1;
}

await main();
