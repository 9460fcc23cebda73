// Certificate authority benchmark: certificates signed per second and `mesh.v1.ca.sign` latency
// through NATS, for ECDSA P-256 and RSA-2048 CSRs, with 1 and 2 CA replicas sharing a CA_DIR.
// Everything runs against a nats-server (JetStream, file store) started on a free loopback port for
// this run only and the compiled certificate-authority app (apps/certificate-authority/dist).
// See docs/benchmarks.md.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withCleanup } from './lib/cleanup.mjs';
import { measuredOn } from './lib/machine.mjs';
import { boundedAll } from './lib/pace.mjs';
import { cpuMeter } from './lib/proc.mjs';
import { note, spinner } from './lib/progress.mjs';
import { cpuCell, int, ms, noiseObservation, plural, spread, verdict } from './lib/report.mjs';
import { connectScoped, imgDirOf, natsLibs, profileDirOf, requireBuilt, spawnApp } from './lib/stack.mjs';
import { histogramFactory, medianByKey, ninesFor, percentileCurve, runsMeeting, stat, summarize } from './lib/stats.mjs';
import { lineChart, percentileChart } from './lib/svg.mjs';

export const title = 'Certificate authority';
export const describe =
  'certificates signed per second and `mesh.v1.ca.sign` latency p50/p99 through NATS (raw requests, 32 in flight, CSRs made beforehand), ECDSA P-256 and RSA-2048 CSRs, 1 and 2 CA replicas';

const AIMS = { ecdsaPerSec: 500 };

const FULL = {
  services: 128,
  inFlight: 32,
  seconds: 10,
  warmupSeconds: 1,
  requestTimeoutMs: 30_000,
  tokenUses: 10_000,
  repetitions: 2,
};
const QUICK = { ...FULL, services: 32, seconds: 3, warmupSeconds: 0.5, repetitions: 1 };

const KEYS = [
  { id: 'ecdsa', label: 'ECDSA P-256', keyPair: undefined },
  { id: 'rsa', label: 'RSA-2048', keyPair: { kind: 'rsa', bits: 2048 } },
];
const TRUST_DOMAIN = 'novamesh.local';
const NAMESPACE = 'bench';
const SIGN = 'mesh.v1.ca.sign';
const require = createRequire(import.meta.url);
const svc = (i) => `bench-${String(i).padStart(4, '0')}`;

function loadLibs(root) {
  requireBuilt(root, ['libs/testing/dist/index.js', 'libs/ca/dist/index.js', 'apps/certificate-authority/dist/main.js']);
  return { ...natsLibs(), ca: require('@novamesh/ca'), newHistogram: histogramFactory() };
}

/** One CSR per service and key type, made once before any server starts (RSA key generation is slow). */
async function makeCsrs(libs, cfg) {
  const out = {};
  for (const key of KEYS) {
    const spin = spinner(`ca benchmark: generating ${cfg.services} ${key.label} keys and CSRs`);
    const t0 = performance.now();
    out[key.id] = [];
    for (let i = 0; i < cfg.services; i++) {
      const { csrPem } = await libs.ca.createCsr({
        spiffeId: `spiffe://${TRUST_DOMAIN}/ns/${NAMESPACE}/svc/${svc(i)}`,
        ...(key.keyPair ? { keyPair: key.keyPair } : {}),
      });
      out[key.id].push(csrPem);
    }
    spin.finish(`  ${cfg.services} ${key.label} CSRs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return out;
}

async function startNats(scope, testing) {
  const nats = new testing.TestNats(await testing.freePort());
  scope.defer('nats-server', () => nats.dispose());
  scope.tempDir(nats.dir);
  const started = nats.restart();
  if (nats.proc) scope.track(nats.proc);
  await started;
  return nats;
}

async function runOnce(libs, cfg, csrs, key, replicas) {
  return withCleanup(async (scope) => {
    const { testing, nats: natsLib } = libs;
    const nats = await startNats(scope, testing);
    const caDir = mkdtempSync(join(tmpdir(), 'novamesh-bench-ca-'));
    scope.tempDir(caDir);
    // One after the other: the first creates the CA in CA_DIR, the others load it.
    const cas = [];
    for (let r = 1; r <= replicas; r++) {
      const p = spawnApp(scope, testing, {
        name: `ca-${r}`,
        script: 'apps/certificate-authority/dist/main.js',
        env: {
          NATS_URL: nats.url,
          CA_INSTANCE: `bench-ca${r}`,
          CA_DIR: caDir,
          CA_METRICS_PORT: String(await testing.freePort()),
          LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
        },
        profileDir: cfg.profileDir,
        profileName: `ca-${key.id}-${replicas}r-${r}-${Date.now()}.cpuprofile`,
      });
      await p.waitForLine(/"msg":"certificate-authority ready"/, 30_000);
      cas.push(p);
    }
    const nc = await connectScoped(scope, natsLib, nats.url, 'bench-ca', 'bench connection');

    // A token per service with enough uses for the whole run: requests in flight use different
    // tokens, so the run measures signing, not compare-and-set retries on one hot token.
    const enc = new TextEncoder();
    const bodies = [];
    for (let i = 0; i < cfg.services; i++) {
      const reply = (
        await nc.request(
          'mesh.v1.ca.token.create',
          JSON.stringify({ service: svc(i), namespace: NAMESPACE, ttl: '1h', uses: cfg.tokenUses }),
          { timeout: 10_000 },
        )
      ).json();
      if (!reply.ok) throw new Error(`token create failed: ${JSON.stringify(reply.error)}`);
      bodies.push(
        enc.encode(
          JSON.stringify({ csr: csrs[key.id][i], identity: { namespace: NAMESPACE, service: svc(i) }, proof: { token: reply.token } }),
        ),
      );
    }

    const h = libs.newHistogram();
    const perSecond = [];
    let recording = false;
    let t0 = 0;
    const sign = async (i) => {
      const sent = performance.now();
      const reply = (await nc.request(SIGN, bodies[i % bodies.length], { timeout: cfg.requestTimeoutMs })).json();
      if (!reply.ok) throw new Error(`${reply.error?.code}: ${reply.error?.message}`);
      const now = performance.now();
      if (recording) {
        h.recordValue(Math.max(1, Math.round((now - sent) * 1000)));
        const s = Math.floor((now - t0) / 1000);
        perSecond[s] = (perSecond[s] ?? 0) + 1;
      }
      return now;
    };

    // Warm-up (not recorded): JIT, connections, the KV buckets' first writes.
    const warm = { acked: 0, errors: 0, attempted: 0 };
    await boundedAll({
      count: Number.MAX_SAFE_INTEGER,
      inFlight: cfg.inFlight,
      deadlineAt: performance.now() + cfg.warmupSeconds * 1000,
      stats: warm,
      start: sign,
    });
    if (warm.errors) note(`  warm-up: ${warm.errors} errors, first: ${warm.firstError}`);

    const pids = Object.fromEntries(cas.map((p, k) => [replicas > 1 ? `ca-${k + 1}` : 'ca', p.pid]));
    pids['nats-server'] = nats.proc?.pid;
    const meter = cpuMeter(pids);
    const stats = { acked: 0, errors: 0, attempted: 0 };
    let last = 0;
    t0 = performance.now();
    recording = true;
    await boundedAll({
      count: Number.MAX_SAFE_INTEGER,
      inFlight: cfg.inFlight,
      deadlineAt: t0 + cfg.seconds * 1000,
      stats,
      start: (i) =>
        sign(i).then((t) => {
          last = Math.max(last, t);
        }),
    });
    const cpu = meter.stop();
    recording = false;
    const elapsed = (last - t0) / 1000;
    const perReplica = cas.map((p) => p.output.filter((l) => l.includes('"msg":"certificate issued"')).length);
    return {
      key: key.id,
      replicas,
      signed: stats.acked,
      errors: stats.errors,
      firstError: stats.firstError,
      seconds: elapsed,
      certsPerSec: stats.acked / elapsed,
      latency: summarize(h),
      histogram: h,
      perSecond: perSecond.map((n) => n ?? 0),
      cpu,
      issuedPerReplica: perReplica,
    };
  });
}

function aggregate(libs, group) {
  const pooled = libs.newHistogram();
  for (const r of group) pooled.add(r.histogram);
  const first = group[0];
  return {
    key: first.key,
    replicas: first.replicas,
    repetitions: group.length,
    certsPerSec: stat(group.map((r) => r.certsPerSec)),
    p50: stat(group.map((r) => r.latency?.p50)),
    p99: stat(group.map((r) => r.latency?.p99)),
    p999: stat(group.map((r) => r.latency?.p999)),
    max: Math.max(...group.map((r) => r.latency?.max ?? 0)),
    pooled: summarize(pooled),
    signed: group.reduce((a, r) => a + r.signed, 0),
    errors: group.reduce((a, r) => a + r.errors, 0),
    firstError: group.find((r) => r.firstError)?.firstError,
    cpu: medianByKey(group.map((r) => r.cpu)),
    issuedPerReplica: group.at(-1).issuedPerReplica,
    curve: percentileCurve(pooled, ninesFor(pooled.totalCount)),
    maxNines: ninesFor(pooled.totalCount),
    perSecond: group.map((r) => r.perSecond),
  };
}

const label = (a) => `${KEYS.find((k) => k.id === a.key).label}, ${plural(a.replicas)}`;
const rate = (n) => `${int(n)}/s`;

function table(aggs) {
  const cols = aggs.map((a) => `${label(a)}${a.repetitions > 1 ? `, median of ${a.repetitions} runs (range)` : ''}`);
  const row = (what, aim, cell) => `| ${what} | ${aim} | ${aggs.map(cell).join(' | ')} |`;
  return [
    `| what | aim | ${cols.join(' | ')} |`,
    `|---|---|${cols.map(() => '---:').join('|')}|`,
    row(
      'Certificates signed per second',
      `ECDSA ≥ ${AIMS.ecdsaPerSec}/s`,
      (a) => `${spread(a.certsPerSec, rate, int)}${a.key === 'ecdsa' ? verdict(a.certsPerSec?.median >= AIMS.ecdsaPerSec) : ''}`,
    ),
    row('Sign request → reply: p50', '—', (a) => spread(a.p50, ms, (x) => ms(x).replace(' ms', ''))),
    row('… p99', '—', (a) => spread(a.p99, ms, (x) => ms(x).replace(' ms', ''))),
    // HDR buckets can put p99.9 a hair above the exact max: never show it higher.
    row('… p99.9 / max', '—', (a) => `${ms(Math.min(a.p999?.median ?? a.max, a.max))} / ${ms(a.max)}`),
    row('… all runs pooled: p50 / p99 / max', '—', (a) => `${ms(a.pooled?.p50)} / ${ms(a.pooled?.p99)} / ${ms(a.pooled?.max)}`),
    row('… certificates signed / errors (all runs)', '0 errors', (a) => `${int(a.signed)} / ${int(a.errors)}`),
    row('… issued per replica (last run)', '—', (a) => a.issuedPerReplica.map(int).join(' + ')),
    row('CPU while signing, cores busy (median)', '—', (a) => cpuCell(a.cpu)),
  ].join('\n');
}

function aimsOf(aggs) {
  const a = aggs.find((x) => x.key === 'ecdsa' && x.replicas === 1) ?? aggs.find((x) => x.key === 'ecdsa');
  if (!a) return [];
  return [
    {
      name: `ECDSA certificates signed per second (${plural(a.replicas)})`,
      aim: `≥ ${AIMS.ecdsaPerSec}/s`,
      value: a.certsPerSec?.median,
      met: a.certsPerSec?.median >= AIMS.ecdsaPerSec,
      runs: a.repetitions,
      runsMeetingAim: runsMeeting(a.certsPerSec, (v) => v >= AIMS.ecdsaPerSec),
    },
  ];
}

function observations(aggs, machine) {
  const obs = [];
  const find = (key, r) => aggs.find((a) => a.key === key && a.replicas === r);
  for (const key of KEYS) {
    const one = find(key.id, 1);
    if (!one) continue;
    const caCores = one.cpu.ca;
    const perCert = caCores && one.certsPerSec ? (caCores / one.certsPerSec.median) * 1e6 : undefined;
    obs.push(
      `${key.label}, 1 replica: ${int(one.certsPerSec?.median)} certificates/s, p50 ${ms(one.p50?.median)}, p99 ${ms(one.p99?.median)}; the CA was ${caCores?.toFixed(2)} cores busy${perCert ? ` (${int(perCert)} µs of CPU per certificate, everything included)` : ''}, nats-server ${one.cpu['nats-server']?.toFixed(2)}, this benchmark ${one.cpu.bench?.toFixed(2)}.`,
    );
    const two = find(key.id, 2);
    if (two && one.certsPerSec && two.certsPerSec) {
      const change = (two.certsPerSec.median / one.certsPerSec.median - 1) * 100;
      const cas = Object.entries(two.cpu)
        .filter(([k]) => k.startsWith('ca-'))
        .map(([k, v]) => `${k} ${v?.toFixed(2)}`)
        .join(', ');
      obs.push(
        `${key.label}, 2 replicas: ${int(two.certsPerSec.median)} certificates/s (${change >= 0 ? '+' : ''}${change.toFixed(0)}% vs 1 replica; ${cas}; whole machine ${two.cpu['whole machine']?.toFixed(2)} of ${machine.cores} cores).`,
      );
    }
  }
  obs.push(
    'How signing works: `signWorkloadCsr` of `@novamesh/ca` reads the CSR in place with a small DER reader (`libs/ca/src/der.ts`, `csr-der.ts`), checks proof of possession with node:crypto `verify()`, writes the leaf with a DER writer (`leaf-der.ts`) and signs it with node:crypto `sign()`; the issuer (key object, subject bytes, algorithm, key id), name constraints and intermediates are prepared once per issuer. @peculiar/x509 (pure-JavaScript ASN.1, ~5 ms a certificate, which held the CA at ~335/s per replica) only creates and parses CA certificates and verifies chains, off the per-certificate path. `--cpu-prof` shows the rest of a replica’s time in the service around signing: NATS writes and request bookkeeping, the KV writes, JSON and logging.',
  );
  for (const key of KEYS) {
    const one = find(key.id, 1);
    const two = find(key.id, 2);
    if (
      one?.certsPerSec &&
      two?.certsPerSec &&
      two.certsPerSec.median < one.certsPerSec.median &&
      two.cpu['whole machine'] > machine.cores * 0.9
    ) {
      obs.push(
        `Why 2 replicas are not faster (${key.label}): one replica already keeps its event loop busy, and with two the whole machine is saturated (${two.cpu['whole machine']?.toFixed(2)} of ${machine.cores} cores), so a second replica on this machine adds contention, not capacity. Replicas add throughput on machines with cores to spare.`,
      );
      break;
    }
  }
  const ecdsa = find('ecdsa', 1);
  if (ecdsa && !(ecdsa.certsPerSec?.median >= AIMS.ecdsaPerSec))
    obs.push(
      `The ${AIMS.ecdsaPerSec}/s aim is missed in this run: compare the CA's cores busy with the whole machine (other processes compete on a small machine), and profile with \`--cpu-prof\` (below).`,
    );
  const errs = aggs.filter((a) => a.errors);
  if (errs.length) obs.push(`Errors: ${errs.map((a) => `${label(a)}: ${a.errors} (first: ${a.firstError})`).join('; ')}.`);
  const noise = noiseObservation(aggs.map((a) => a.cpu.other));
  if (noise) obs.push(noise);
  return obs;
}

export async function run({ root, quick = false, replicas = [1, 2], machine, cpuProf = false, repetitions, writeDoc = !quick }) {
  const libs = loadLibs(root);
  const cfg = { ...(quick ? QUICK : FULL) };
  if (repetitions) cfg.repetitions = repetitions;
  if (cpuProf) cfg.profileDir = profileDirOf(root, 'ca');
  const started = Date.now();
  const csrs = await makeCsrs(libs, cfg);
  const runs = [];
  const aggs = [];
  for (const key of KEYS) {
    for (const r of replicas) {
      const group = [];
      for (let k = 1; k <= cfg.repetitions; k++) {
        note(`ca benchmark: ${key.label}, ${plural(r)}, run ${k}/${cfg.repetitions}${quick ? ' (quick)' : ''}`);
        const one = await runOnce(libs, cfg, csrs, key, r);
        note(
          `  ${int(one.certsPerSec)} certificates/s, p50 ${ms(one.latency?.p50)}, p99 ${ms(one.latency?.p99)}, errors ${one.errors}; CPU ${cpuCell(one.cpu)}`,
        );
        one.repetition = k;
        group.push(one);
      }
      aggs.push(aggregate(libs, group));
      runs.push(...group.map(({ histogram: _h, ...rest }) => rest));
    }
  }
  const aims = aimsOf(aggs);

  const imgDir = imgDirOf(root, writeDoc);
  const colors = { 'ecdsa-1': '#2563eb', 'ecdsa-2': '#93c5fd', 'rsa-1': '#dc2626', 'rsa-2': '#fca5a5' };
  writeFileSync(
    join(imgDir, 'ca-latency.svg'),
    percentileChart({
      title: `Certificate authority: mesh.v1.ca.sign request → reply, ${cfg.inFlight} in flight`,
      subtitle: `${cfg.seconds} s per run after ${cfg.warmupSeconds} s warm-up${cfg.repetitions > 1 ? `, ${cfg.repetitions} runs pooled` : ''}; JetStream file store; ${machine.cores} cores`,
      series: aggs.map((a) => ({ name: label(a), points: a.curve, color: colors[`${a.key}-${a.replicas}`] })),
      maxNines: Math.max(...aggs.map((a) => a.maxNines)),
    }),
  );
  writeFileSync(
    join(imgDir, 'ca-throughput.svg'),
    lineChart({
      title: 'Certificate authority: certificates signed per second',
      subtitle: `each second of the measured ${cfg.seconds} s${cfg.repetitions > 1 ? ' (first run)' : ''}, ${cfg.inFlight} requests in flight; dashed: aim ${AIMS.ecdsaPerSec}/s (ECDSA)`,
      series: [
        ...aggs.map((a) => ({
          name: label(a),
          points: (a.perSecond[0] ?? []).slice(0, cfg.seconds).map((n, s) => [s + 1, n]),
          color: colors[`${a.key}-${a.replicas}`],
        })),
        {
          name: `aim ${AIMS.ecdsaPerSec}/s`,
          points: [
            [1, AIMS.ecdsaPerSec],
            [cfg.seconds, AIMS.ecdsaPerSec],
          ],
          color: '#6b7280',
          dashed: true,
        },
      ],
      xLabel: 'second of the run',
      yLabel: 'certificates signed',
      xFormat: (t) => `${t}s`,
      legendAt: 'bottom-right',
    }),
  );

  const json = {
    suite: 'ca',
    quick,
    machine,
    config: { ...cfg, replicas, aims: AIMS },
    aims,
    summary: aggs.map(({ curve: _c, ...a }) => a),
    runs,
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  const md = table(aggs);
  const obs = observations(aggs, machine);
  const section = [
    '## Certificate authority',
    '',
    `Measured ${measuredOn(machine)}; ${cfg.repetitions} run${cfg.repetitions > 1 ? 's' : ''} per configuration, each on a fresh nats-server and a fresh CA (\`--runs=N\` for more). Reproduce with \`npm run bench -- ca\` (raw numbers in \`bench-results/ca.json\`).`,
    '',
    `Setup: a fresh nats-server (JetStream, file store) on a free loopback port and the compiled certificate-authority app with its defaults (\`LOG_LEVEL\` info, 24 h certificates, ECDSA P-256 root and intermediate created on first start), ${replicas.map((r) => plural(r)).join(', then ')}${replicas.some((r) => r > 1) ? ' sharing one `CA_DIR` (started one after the other: the first creates the CA, the second loads it; they share the queue group)' : ''}. No Redis, discovery or policy service: the CA needs none of them.`,
    '',
    `Before the servers start, the benchmark generates ${cfg.services} keys and CSRs per key type (ECDSA P-256, RSA-2048), one per service \`${svc(0)}\` … \`${svc(cfg.services - 1)}\` (URI SAN \`spiffe://${TRUST_DOMAIN}/ns/${NAMESPACE}/svc/<service>\`). Once the CA is ready it creates one join token per service with ${int(cfg.tokenUses)} uses and builds the ${cfg.services} request bodies. Then raw \`${SIGN}\` requests (core NATS request/reply, as any client would send them) go out with at most ${cfg.inFlight} in flight, request *i* using service *i* mod ${cfg.services} (so no two requests in flight share a token), for ${cfg.warmupSeconds} s unrecorded, then ${cfg.seconds} s recorded. Each request is the CA's full path: request validation, token check, CSR check (signature, key, SANs, name constraints), signing with the intermediate, the token's compare-and-set in \`mesh_ca_tokens\`, the record in \`mesh_ca_certs\`, the reply with certificate, chain and bundle. Rate = certificates ÷ (first request → last reply); latency = request sent → reply received, in an HDR histogram.`,
    '',
    md,
    '',
    ...(aims.length
      ? [
          `Aims: ${aims.map((a) => `${a.name} ${a.aim} — **${a.met ? 'met' : 'missed'}**${a.runs > 1 ? ` (${a.runsMeetingAim} of ${a.runs} runs within the aim)` : ''}`).join('; ')}.`,
          aims.some((a) => !a.met) ? '' : 'All aims met.',
        ]
      : []),
    '',
    '![Certificate authority sign latency by percentile](img/ca-latency.svg)',
    '',
    '![Certificate authority: certificates signed per second](img/ca-throughput.svg)',
    '',
    'Observations from this run:',
    '',
    ...obs.map((o) => `- ${o}`),
    '',
    'To see where the CA spends its time, `node tools/bench/run.mjs ca --replicas=1 --runs=1 --cpu-prof` writes V8 CPU profiles of the CA replicas to `bench-results/profiles/` (open them in Chrome DevTools or speedscope); CA settings such as `LOG_LEVEL` set in the environment reach the replicas the benchmark starts.',
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  return { json, table: md, section, aims };
}
