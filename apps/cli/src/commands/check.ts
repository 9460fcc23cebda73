import type {
  CaCertV1,
  CaInfoResultV1,
  CaRotateRequestV1,
  CaRotateResultV1,
  DiscoveryQueryInputV1,
  ErrorBody,
  PolicyListRequestV1,
  ProxyStatusEntryV1,
  ProxyStatusReplyV1,
  ProxyStatusRequestV1,
  RevocationListV1,
  TrustBundleV1,
} from '@novamesh/contracts';
import { streams as meshStreams, natsServerTooOld, subjects } from '@novamesh/contracts';
import type { Command } from 'commander';
import { type CliContext, globalOptions } from '../context';
import { CommandExit, ExitCode } from '../errors';
import { syncState } from './proxy-status';

/** What `meshctl check` warns about. */
export const CHECK_THRESHOLDS = {
  /** Warn when a root of the trust bundle expires within this (ms). */
  rootWarnMs: 90 * 86_400_000,
  /** Warn when the intermediate signing CA expires within this (ms). */
  intermediateWarnMs: 30 * 86_400_000,
  /** Warn about workload certificates in use (latest of their identity, not renewed) that expire within this (ms). */
  certWarnMs: 3_600_000,
} as const;

const MAX_LISTED = 5;
const SUBJECTS = {
  discovery: subjects.discoveryQuery,
  policy: subjects.policy('list'),
  ca: subjects.ca('info'),
  certs: subjects.ca('certs.list'),
  rotate: subjects.ca('rotate'),
  proxyConfig: subjects.proxyStatus,
} as const;

/**
 * Every JetStream stream of the mesh and the service that provisions it: at its start, and, for
 * the streams it publishes last values into, again within its stream recheck (10 s) when it finds
 * the stream deleted.
 */
export const MESH_STREAM_OWNERS: readonly { stream: string; owner: string; recheck: boolean }[] = [
  { stream: meshStreams.registry, owner: 'discovery', recheck: false },
  { stream: meshStreams.endpoints, owner: 'discovery', recheck: true },
  { stream: meshStreams.deadLetter, owner: 'discovery', recheck: false },
  { stream: meshStreams.config, owner: 'the policy service', recheck: true },
  { stream: meshStreams.ca, owner: 'the certificate authority', recheck: true },
  { stream: meshStreams.proxy, owner: 'proxy-config', recheck: true },
];

/** What `streams.info` said of one stream of the mesh. */
export type StreamFact = { stream: string } & ({ ok: true; messages: number } | { ok: false; missing: boolean; error: string });

/** The answer (or the failure) of one request/reply probe. */
export type Probe<T = unknown> = { ok: true; ms: number; reply: T } | { ok: false; error: string };

/** Everything `check` learned, gathered before anything is judged (so judging is a pure function). */
export interface CheckFacts {
  servers: string[];
  nats: { ok: true; server: string; version?: string } | { ok: false; error: string };
  discovery?: Probe;
  policy?: Probe;
  ca?: Probe<CaInfoResultV1 | { ok: false; error: ErrorBody }>;
  bundle?: { ok: true; bundle: TrustBundleV1 } | { ok: false; error: string };
  certs?: Probe<{ ok: true; certs: CaCertV1[] } | { ok: false; error: ErrorBody }>;
  revoked?: RevocationListV1;
  /** `mesh.v1.ca.rotate` status: live certificates per root. */
  rotation?: Probe<CaRotateResultV1 | { ok: false; error: ErrorBody }>;
  /** `mesh.v1.proxy.status`: proxy-config answering, with every sidecar's acknowledged version. */
  proxyConfig?: Probe<ProxyStatusReplyV1>;
  /** Each of MESH_STREAM_OWNERS' streams. */
  streams?: StreamFact[];
}

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckLine {
  section: 'NATS' | 'control plane' | 'streams' | 'data plane' | 'certificate authority' | 'workload certificates';
  status: CheckStatus;
  text: string;
  /** Indented lines under it: what is wrong, and what to do. */
  details?: string[];
}

const DAY_MS = 86_400_000;

function inWords(ms: number): string {
  const abs = Math.abs(ms);
  if (abs >= 2 * DAY_MS) return `${Math.floor(abs / DAY_MS)} days`;
  if (abs >= 2 * 3_600_000) return `${Math.floor(abs / 3_600_000)} hours`;
  return `${Math.max(1, Math.floor(abs / 60_000))} minutes`;
}

const short = (fingerprint: string) => fingerprint.slice(0, 16);

/** One CA certificate's expiry: fail once expired, warn within `warnMs`. */
function expiryLine(
  section: CheckLine['section'],
  what: string,
  notAfter: string,
  warnMs: number,
  now: number,
  warnWhy: string,
): CheckLine {
  const left = Date.parse(notAfter) - now;
  if (!(left > 0))
    return {
      section,
      status: 'fail',
      text: `${what} expired at ${notAfter} (${inWords(left)} ago)`,
      details: ['certificates chaining to it are refused by every peer: rotate it now'],
    };
  if (left < warnMs) return { section, status: 'warn', text: `${what} expires at ${notAfter}, in ${inWords(left)} (less than ${warnWhy})` };
  return { section, status: 'ok', text: `${what} is valid until ${notAfter} (${inWords(left)})` };
}

function probeLine(section: CheckLine['section'], who: string, subject: string, probe: Probe | undefined, hint: string): CheckLine {
  if (!probe) return { section, status: 'fail', text: `${who} was not asked (${subject})` };
  if (probe.ok) return { section, status: 'ok', text: `${who} is answering on ${subject} (${probe.ms} ms)` };
  return { section, status: 'fail', text: `${who} is not answering on ${subject}: ${probe.error}`, details: [hint] };
}

/**
 * The certificates a workload may still present: the latest (by issue time) of each identity, unless
 * it was renewed (`supersededBy`). An older certificate of an identity that renewed since, or one
 * superseded, expiring is the normal course of renewal, not something to warn about.
 */
export function inUseCertificates(certs: readonly CaCertV1[]): CaCertV1[] {
  const latest = new Map<string, CaCertV1>();
  for (const c of certs) {
    const seen = latest.get(c.spiffeId);
    if (!seen || c.issuedAt > seen.issuedAt || (c.issuedAt === seen.issuedAt && c.notAfter > seen.notAfter)) latest.set(c.spiffeId, c);
  }
  return [...latest.values()].filter((c) => !c.supersededBy);
}

/**
 * A root rotation in progress (two roots in the bundle, or the CA says so): a warning with the live
 * certificates per root and the operator's next step. Undefined when no rotation is in progress.
 */
function rotationLine(f: CheckFacts, section: CheckLine['section']): CheckLine | undefined {
  const status = f.rotation?.ok && f.rotation.reply.ok ? f.rotation.reply : undefined;
  const rootsInBundle = f.bundle?.ok ? f.bundle.bundle.roots.length : 0;
  if (!status?.rotating && rootsInBundle < 2) return undefined;
  const since = status?.startedBy ? [`begun by ${status.startedBy} at ${status.startedAt}`] : [];
  const current = status?.roots.find((r) => r.role === 'current');
  const previous = status?.roots.find((r) => r.role === 'previous');
  if (!current || !previous)
    return {
      section,
      status: 'warn',
      text: `root rotation in progress: the trust bundle holds ${rootsInBundle} roots`,
      details: [
        `live certificates per root unknown (${SUBJECTS.rotate}: ${f.rotation?.ok ? 'refused' : (f.rotation?.error ?? 'not asked')})`,
        'see `meshctl ca rotate status`, then `meshctl ca rotate finish` once the old root has no live certificates',
      ],
    };
  const count = (n: number) => `${n} live certificate${n === 1 ? '' : 's'}`;
  return {
    section,
    status: 'warn',
    text: `root rotation in progress: ${count(current.liveCertificates)} under the new root ${short(current.fingerprint256)}, ${previous.liveCertificates} under the old root ${short(previous.fingerprint256)}`,
    details: [
      ...since,
      ...(previous.liveCertificates
        ? [
            'workloads re-issue under the new root on their own; follow with `meshctl ca rotate status`,',
            'then run `meshctl ca rotate finish` once the old root has no live certificates (it is refused until then)',
          ]
        : ['no live certificate uses the old root any more: run `meshctl ca rotate finish` to drop it from the trust bundle']),
    ],
  };
}

const messages = (n: number) => `${n} message${n === 1 ? '' : 's'}`;

/** Detail lines: at most MAX_LISTED of `items`, then how many more `command` shows. */
function listed<T>(items: readonly T[], line: (item: T) => string, command: string): string[] {
  return [
    ...items.slice(0, MAX_LISTED).map(line),
    ...(items.length > MAX_LISTED ? [`… and ${items.length - MAX_LISTED} more (${command})`] : []),
  ];
}

/** One line for the streams that exist, one per stream that is missing or could not be read. */
function streamLines(facts: StreamFact[] | undefined): CheckLine[] {
  const section = 'streams';
  if (!facts) return [{ section, status: 'fail', text: 'the streams could not be read (JetStream unavailable)' }];
  const present = facts.filter((s) => s.ok);
  const out: CheckLine[] = [];
  if (present.length)
    out.push({
      section,
      status: 'ok',
      text: `${present.length} of ${facts.length} streams of the mesh exist: ${present.map((s) => `${s.stream} (${messages(s.ok ? s.messages : 0)})`).join(', ')}`,
    });
  for (const s of facts) {
    if (s.ok) continue;
    const owner = MESH_STREAM_OWNERS.find((o) => o.stream === s.stream);
    out.push({
      section,
      status: 'fail',
      text: s.missing ? `stream ${s.stream} is missing` : `stream ${s.stream} could not be read: ${s.error}`,
      details:
        s.missing && owner
          ? [
              owner.recheck
                ? `${owner.owner} creates it again within its stream recheck (10 s by default) and publishes into it anew: is ${owner.owner} running?`
                : `${owner.owner} creates it again when it starts: restart a ${owner.owner} replica`,
            ]
          : undefined,
    });
  }
  return out;
}

/**
 * What the sidecars acknowledged, as `meshctl proxy-status` shows it: all in sync, or which are not
 * (warn: the change may still be on its way), silent (warn: the process may be gone), or refused
 * their service's snapshot (fail: they keep serving an older configuration).
 */
function dataPlaneLines(probe: Probe<ProxyStatusReplyV1> | undefined): CheckLine[] {
  const section = 'data plane';
  // Without proxy-config's answer nothing is known; its control-plane line already failed.
  if (!probe?.ok) return [];
  if (!probe.reply.ok)
    return [
      {
        section,
        status: 'fail',
        text: `proxy-config refused ${SUBJECTS.proxyConfig}: ${probe.reply.error.code} ${probe.reply.error.message}`,
      },
    ];
  const sidecars = probe.reply.sidecars;
  if (!sidecars.length) return [{ section, status: 'ok', text: 'no sidecar has reported yet' }];
  const name = (s: ProxyStatusEntryV1) => `${s.service}/${s.sidecar}`;
  const list = (ss: ProxyStatusEntryV1[], line: (s: ProxyStatusEntryV1) => string) => listed(ss, line, 'meshctl proxy-status');
  const out: CheckLine[] = [];
  const rejected = sidecars.filter((s) => syncState(s) === 'REJECTED');
  const stale = sidecars.filter((s) => s.stale && !rejected.includes(s));
  const behind = sidecars.filter((s) => !s.inSync && !s.stale && !rejected.includes(s));
  const fine = sidecars.length - rejected.length - stale.length - behind.length;
  out.push({
    section,
    status: 'ok',
    text: `${fine} of ${sidecars.length} sidecar${sidecars.length === 1 ? '' : 's'} in sync with their service's latest snapshot`,
  });
  if (rejected.length)
    out.push({
      section,
      status: 'fail',
      text: `${rejected.length} sidecar${rejected.length === 1 ? ' refused its' : 's refused their'} service's latest snapshot and ${rejected.length === 1 ? 'keeps' : 'keep'} serving an older one`,
      details: list(rejected, (s) => `${name(s)}  refused v${s.rejected?.version}: ${s.rejected?.reason}`),
    });
  if (behind.length)
    out.push({
      section,
      status: 'warn',
      text: `${behind.length} sidecar${behind.length === 1 ? ' has' : 's have'} not acknowledged the latest snapshot yet`,
      details: list(behind, (s) => `${name(s)}  v${s.version} of v${s.latestVersion}, behind for ${inSeconds(s.lagMs)}`),
    });
  if (stale.length)
    out.push({
      section,
      status: 'warn',
      text: `${stale.length} sidecar${stale.length === 1 ? ' has' : 's have'} been silent for 30 s or more (gone, or cut off from NATS)`,
      details: list(stale, (s) => `${name(s)}  last seen ${inSeconds(s.lastSeenMs)} ago, at v${s.version} of v${s.latestVersion}`),
    });
  return out;
}

const inSeconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

/** Judges what `gatherFacts` found at `now`: the checklist, in order. Pure. */
export function evaluateChecks(f: CheckFacts, now = Date.now()): CheckLine[] {
  const lines: CheckLine[] = [];
  const where = f.servers.join(',');
  if (!f.nats.ok) {
    lines.push({
      section: 'NATS',
      status: 'fail',
      text: `NATS is not reachable at ${where}: ${f.nats.error}`,
      details: ['check --nats (or NATS_URL) and that nats-server is running; nothing else can be checked without it'],
    });
    return lines;
  }
  lines.push({ section: 'NATS', status: 'ok', text: `NATS is reachable at ${where} (${f.nats.server})` });
  const tooOld = natsServerTooOld(f.nats.version);
  if (tooOld) lines.push({ section: 'NATS', status: 'warn', text: tooOld });

  lines.push(probeLine('control plane', 'discovery', SUBJECTS.discovery, f.discovery, 'start a discovery replica'));
  lines.push(probeLine('control plane', 'policy service', SUBJECTS.policy, f.policy, 'start a policy service replica'));

  const ca = f.ca;
  let info: CaInfoResultV1 | undefined;
  if (ca?.ok && ca.reply.ok) {
    info = ca.reply;
    lines.push({
      section: 'control plane',
      status: 'ok',
      text: `certificate authority is answering on ${SUBJECTS.ca} (${ca.ms} ms; replica ${info.instance}, trust domain ${info.trustDomain})`,
    });
  } else if (ca?.ok) {
    const err = (ca.reply as { error: ErrorBody }).error;
    lines.push({
      section: 'control plane',
      status: 'fail',
      text: `certificate authority refused ${SUBJECTS.ca}: ${err.code} ${err.message}`,
    });
  } else {
    lines.push(probeLine('control plane', 'certificate authority', SUBJECTS.ca, ca, 'start a certificate-authority replica'));
  }
  lines.push(probeLine('control plane', 'proxy-config', SUBJECTS.proxyConfig, f.proxyConfig, 'start a proxy-config replica'));
  lines.push(...streamLines(f.streams));
  lines.push(...dataPlaneLines(f.proxyConfig));

  const section = 'certificate authority';
  if (!f.bundle?.ok) {
    lines.push({
      section,
      status: 'fail',
      text: `no trust bundle on ${subjects.caBundle}${f.bundle ? `: ${f.bundle.error}` : ''}`,
      details: ['workloads cannot verify their peers: start the certificate authority (it publishes the bundle)'],
    });
  } else {
    const { bundle } = f.bundle;
    lines.push({
      section,
      status: bundle.roots.length ? 'ok' : 'fail',
      text: `trust bundle for ${bundle.trustDomain} holds ${bundle.roots.length} root${bundle.roots.length === 1 ? '' : 's'} (updated ${bundle.updatedAt})`,
    });
    for (const root of bundle.roots)
      lines.push(expiryLine(section, `root ${short(root.fingerprint256)}`, root.notAfter, CHECK_THRESHOLDS.rootWarnMs, now, '90 days'));
    if (info && !bundle.roots.some((r) => r.fingerprint256 === info.root.fingerprint256))
      lines.push({
        section,
        status: 'fail',
        text: `the certificate authority signs under root ${short(info.root.fingerprint256)}, which is not in the trust bundle`,
        details: ['peers will refuse the certificates it issues: restart the CA so that it republishes the bundle'],
      });
  }
  if (info)
    lines.push(
      expiryLine(
        section,
        `intermediate ${short(info.intermediate.fingerprint256)}`,
        info.intermediate.notAfter,
        CHECK_THRESHOLDS.intermediateWarnMs,
        now,
        '30 days',
      ),
    );

  const rotation = rotationLine(f, section);
  if (rotation) lines.push(rotation);

  const wc = 'workload certificates';
  const certs = f.certs;
  if (!certs?.ok || !certs.reply.ok) {
    // Without a CA answer there is nothing to list; the CA line above already failed.
    if (certs?.ok && !certs.reply.ok)
      lines.push({
        section: wc,
        status: 'fail',
        text: `the certificate list was refused: ${(certs.reply as { error: ErrorBody }).error.message}`,
      });
    else if (ca?.ok)
      lines.push({
        section: wc,
        status: 'fail',
        text: `the certificate list could not be read: ${certs && !certs.ok ? certs.error : 'not asked'}`,
      });
    return lines;
  }
  const all = certs.reply.certs;
  const inUse = inUseCertificates(all);
  const expired = inUse.filter((c) => c.state === 'expired');
  const soon = inUse.filter((c) => c.state === 'issued' && Date.parse(c.notAfter) - now < CHECK_THRESHOLDS.certWarnMs);
  const issued = all.filter((c) => c.state === 'issued').length;
  const expiredTotal = all.filter((c) => c.state === 'expired').length;
  const list = (cs: CaCertV1[]) => listed(cs, (c) => `${c.serial}  ${c.spiffeId}  not after ${c.notAfter}`, 'meshctl cert list');
  lines.push({ section: wc, status: 'ok', text: `${all.length} issued by this CA: ${issued} valid, ${expiredTotal} expired` });
  if (expired.length)
    lines.push({
      section: wc,
      status: 'warn',
      text: `${expired.length} certificate${expired.length === 1 ? ' has' : 's have'} expired without being renewed`,
      details: list(expired),
    });
  if (soon.length)
    lines.push({
      section: wc,
      status: 'warn',
      text: `${soon.length} certificate${soon.length === 1 ? ' expires' : 's expire'} within 1 hour and ${soon.length === 1 ? 'has' : 'have'} not been renewed`,
      details: list(soon),
    });
  if (!expired.length && !soon.length)
    lines.push({ section: wc, status: 'ok', text: 'no certificate in use has expired or expires within 1 hour' });
  const revoked = all.filter((c) => c.state === 'revoked');
  // The CA prunes expired serials from the published list: only unexpired ones are expected there.
  const unexpired = revoked.filter((c) => Date.parse(c.notAfter) > now).length;
  const notes = [
    ...(unexpired < revoked.length ? [`${unexpired} not expired yet`] : []),
    ...(f.revoked ? [`${f.revoked.serials.length} on the published revocation list`] : []),
  ];
  lines.push({ section: wc, status: 'ok', text: `${revoked.length} revoked${notes.length ? ` (${notes.join(', ')})` : ''}` });
  return lines;
}

const MARKS: Record<CheckStatus, string> = { ok: '✔', warn: '‼', fail: '✘' };
const COLORS: Record<CheckStatus, string> = { ok: '\x1b[32m', warn: '\x1b[33m', fail: '\x1b[31m' };

/** The checklist as text: sections with underlined titles, one mark per line, a summary. */
export function renderChecks(lines: readonly CheckLine[], opts: { color: boolean }): string {
  const paint = (s: CheckStatus, text: string) => (opts.color ? `${COLORS[s]}${text}\x1b[0m` : text);
  const out: string[] = [];
  let section = '';
  for (const l of lines) {
    if (l.section !== section) {
      if (section) out.push('');
      section = l.section;
      out.push(section, '-'.repeat(section.length));
    }
    out.push(`${paint(l.status, MARKS[l.status])} ${l.text}`);
    for (const d of l.details ?? []) out.push(`    ${d}`);
  }
  const count = (s: CheckStatus) => lines.filter((l) => l.status === s).length;
  const [ok, warn, fail] = [count('ok'), count('warn'), count('fail')];
  const status: CheckStatus = fail ? 'fail' : warn ? 'warn' : 'ok';
  out.push(
    '',
    `Status check results are ${paint(status, MARKS[status])}  (${ok} passed, ${warn} warning${warn === 1 ? '' : 's'}, ${fail} failed)`,
  );
  return `${out.join('\n')}\n`;
}

function describeRequestError(e: unknown, timeoutMs: number): string {
  const err = e as Error & { cause?: Error; isNoResponders?: () => boolean };
  if (err?.isNoResponders?.() || err?.name === 'NoResponders' || /no responders/i.test(err?.message ?? '')) return 'no responders';
  if (err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError' || /timeout/i.test(err?.message ?? ''))
    return `no answer within ${timeoutMs} ms`;
  return err?.message ?? String(e);
}

/** Connects and asks every part of the mesh, in parallel. Never throws: failures become facts. */
export async function gatherFacts(servers: string[], timeoutMs: number): Promise<CheckFacts> {
  const { connect } = await import('@nats-io/transport-node');
  const { tlsOption } = await import('@novamesh/sdk');
  const { JetStreamApiCodes, JetStreamApiError, jetstreamManager } = await import('@nats-io/jetstream');
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({
      servers,
      name: 'meshctl-check',
      timeout: timeoutMs,
      reconnect: false,
      ...tlsOption(servers),
    });
  } catch (e) {
    return { servers, nats: { ok: false, error: (e as Error).message } };
  }
  try {
    const probe = async <T>(subject: string, body: unknown): Promise<Probe<T>> => {
      const t0 = performance.now();
      try {
        const msg = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs });
        return { ok: true, ms: Math.round(performance.now() - t0), reply: msg.json<T>() };
      } catch (e) {
        return { ok: false, error: describeRequestError(e, timeoutMs) };
      }
    };
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs }).catch(() => undefined);
    const last = async <T>(subject: string): Promise<T | undefined> => {
      const m = await jsm?.streams.getMessage(meshStreams.ca, { last_by_subj: subject });
      return m ? m.json<T>() : undefined;
    };
    const streamFact = async (stream: string): Promise<StreamFact> => {
      if (!jsm) return { stream, ok: false, missing: false, error: 'JetStream unavailable' };
      try {
        return { stream, ok: true, messages: (await jsm.streams.info(stream)).state.messages };
      } catch (e) {
        const missing = e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound;
        return { stream, ok: false, missing, error: missing ? 'not found' : describeRequestError(e, timeoutMs) };
      }
    };
    const [discovery, policy, ca, certs, bundle, revoked, rotation, proxyConfig, streams] = await Promise.all([
      probe(SUBJECTS.discovery, { name: 'meshctl-check' } satisfies DiscoveryQueryInputV1),
      probe(SUBJECTS.policy, {} satisfies PolicyListRequestV1),
      probe<CaInfoResultV1 | { ok: false; error: ErrorBody }>(SUBJECTS.ca, {}),
      probe<{ ok: true; certs: CaCertV1[] } | { ok: false; error: ErrorBody }>(SUBJECTS.certs, {}),
      last<TrustBundleV1>(subjects.caBundle).then(
        (b): CheckFacts['bundle'] => (b ? { ok: true, bundle: b } : { ok: false, error: 'none published' }),
        (e: unknown): CheckFacts['bundle'] => ({ ok: false, error: describeRequestError(e, timeoutMs) }),
      ),
      last<RevocationListV1>(subjects.caRevoked).catch(() => undefined),
      probe<CaRotateResultV1 | { ok: false; error: ErrorBody }>(SUBJECTS.rotate, { phase: 'status' } satisfies CaRotateRequestV1),
      probe<ProxyStatusReplyV1>(SUBJECTS.proxyConfig, {} satisfies ProxyStatusRequestV1),
      Promise.all(MESH_STREAM_OWNERS.map((o) => streamFact(o.stream))),
    ]);
    const server = nc.info ? `nats-server ${nc.info.version}` : 'connected';
    return {
      servers,
      nats: { ok: true, server, version: nc.info?.version },
      discovery,
      policy,
      ca,
      certs,
      bundle,
      rotation,
      proxyConfig,
      streams,
      ...(revoked ? { revoked } : {}),
    };
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/**
 * `meshctl check`: like `linkerd check`, a checklist of the mesh's health — NATS, the control plane
 * services answering, the JetStream streams of the mesh present, the sidecars in sync, the trust bundle's roots and the intermediate not close to expiry, a root
 * rotation in progress, certificates in use expired or about to, revocations. Exit 0 when nothing failed (warnings allowed), 1
 * when a check failed.
 */
export function checkCommand(program: Command, ctx: CliContext): void {
  program
    .command('check')
    .description(
      'check the mesh: NATS, discovery, policy, the CA and proxy-config answering, the streams there, sidecars in sync; CA and workload certificate expiry',
    )
    .addHelpText(
      'after',
      `
Marks: ✔ passed, ‼ warning, ✘ failed (colored on a terminal unless NO_COLOR is set).
Warnings: a root expiring within 90 days, the intermediate within 30 days, a root rotation in
progress (with live certificates per root and the next step), workload certificates in use (the
latest of their identity, not renewed) expired or expiring within 1 hour, sidecars that have not
acknowledged their service's latest snapshot or have been silent for 30 s. Failures also include a
stream of the mesh missing and a sidecar that refused its latest snapshot. Exit code 0 when no check
failed, 1 when one did.`,
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const { servers, timeoutMs } = globalOptions(cmd);
      const facts = await ctx.spin('checking the mesh', gatherFacts(servers, timeoutMs));
      const lines = evaluateChecks(facts);
      ctx.io.stdout.write(renderChecks(lines, { color: ctx.config.color }));
      if (lines.some((l) => l.status === 'fail')) throw new CommandExit(ExitCode.invalid);
    });
}
