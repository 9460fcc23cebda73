import {
  ErrorCode,
  errorFromBody,
  MeshError,
  type ProxyStatusEntryV1,
  type ProxyStatusReplyV1,
  type ProxyStatusRequestV1,
  subjects,
} from '@novamesh/contracts';
import type { Command } from 'commander';
import { type CliContext, globalOptions } from '../context';
import { toMeshError } from '../errors';
import { outputOption } from '../options';
import { type OutputFormat, printable, renderTable, renderValue } from '../output';

/** What the SYNC column says, as `istioctl proxy-status` does. */
export type SyncState = 'SYNCED' | 'STALE' | 'NOT SENT' | 'REJECTED';

/**
 * REJECTED: the sidecar is not on its service's latest snapshot and the last thing it did was
 * refuse one (a sidecar reports a refusal only until it applies a snapshot). NOT SENT: no snapshot
 * was published for its service yet. SYNCED: it runs the latest version and has reported within
 * the last 30 s. STALE: behind the latest version, or silent for 30 s (it may be gone). A refusal
 * of something that never was the stored latest (a stray live message) leaves a sidecar in sync.
 * `meshctl check` judges by this too.
 */
export function syncState(e: ProxyStatusEntryV1): SyncState {
  if (e.rejected && !e.inSync) return 'REJECTED';
  if (e.latestVersion === 0) return 'NOT SENT';
  return e.inSync && !e.stale ? 'SYNCED' : 'STALE';
}

/** `850ms`, `1.2s`, `12s`, `3m05s`, `2h07m`. */
export function shortDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The table, then one line per sidecar that refused a snapshot, with its reason. */
export function proxyStatusTable(entries: readonly ProxyStatusEntryV1[]): string {
  const version = (v: number) => (v > 0 ? String(v) : '-');
  const table = renderTable(
    ['SERVICE', 'SIDECAR', 'VERSION', 'LATEST', 'SYNC', 'LAG', 'LAST SEEN'],
    entries.map((e) => [
      e.service,
      e.sidecar,
      version(e.version),
      version(e.latestVersion),
      syncState(e),
      e.inSync || e.lagMs === 0 ? '-' : shortDuration(e.lagMs),
      `${shortDuration(e.lastSeenMs)} ago`,
    ]),
  );
  const refusals = entries
    .filter((e) => syncState(e) === 'REJECTED')
    .map((e) => printable(`${e.service}/${e.sidecar} rejected version ${e.rejected?.version}: ${e.rejected?.reason}`));
  return refusals.length ? `${table}\n${refusals.join('\n')}\n` : table;
}

/** Asks one proxy-config replica (core NATS request/reply, its queue group). */
async function askProxyConfig(servers: string[], timeoutMs: number, request: ProxyStatusRequestV1): Promise<ProxyStatusEntryV1[]> {
  const { connect } = await import('@nats-io/transport-node');
  const { tlsOption } = await import('@novamesh/sdk');
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({ servers, name: 'meshctl', timeout: timeoutMs, reconnect: false, ...tlsOption(servers) });
  } catch (e) {
    throw new MeshError(ErrorCode.unavailable, `cannot reach NATS at ${servers.join(',')}: ${(e as Error).message}`, { cause: e });
  }
  try {
    let reply: ProxyStatusReplyV1;
    try {
      reply = (await nc.request(subjects.proxyStatus, JSON.stringify(request), { timeout: timeoutMs })).json<ProxyStatusReplyV1>();
    } catch (e) {
      const err = toMeshError(e);
      if (err.code === ErrorCode.timeout)
        throw new MeshError(ErrorCode.timeout, `no reply on ${subjects.proxyStatus} in time`, { cause: e });
      if (err.code === ErrorCode.unavailable)
        throw new MeshError(ErrorCode.unavailable, `nobody answers on ${subjects.proxyStatus}: is proxy-config running?`, { cause: e });
      throw err;
    }
    if (!reply.ok) throw errorFromBody(reply.error);
    return reply.sidecars;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/**
 * `meshctl proxy-status [--service S] [-o json]`: like `istioctl proxy-status`, every sidecar with
 * the snapshot version it runs, the latest one, and whether it is in sync. It only reports: exit 0
 * whatever the sidecars' state, non-zero only when the question could not be asked or was refused.
 */
export function proxyStatusCommand(program: Command, ctx: CliContext): void {
  program
    .command('proxy-status')
    .aliases(['ps'])
    .description('show the snapshot version of every sidecar and whether it is in sync (SERVICE SIDECAR VERSION LATEST SYNC LAG LAST SEEN)')
    .option('--service <name>', 'only the sidecars of this service')
    .addOption(outputOption())
    .addHelpText(
      'after',
      `
SYNC: SYNCED runs the latest snapshot; STALE is behind it or silent for 30s; NOT SENT has had no
snapshot published for its service yet; REJECTED refused the newer snapshot (the reason follows the table).`,
    )
    .action(async (opts: { service?: string; output: OutputFormat }, cmd: Command) => {
      const { servers, timeoutMs } = globalOptions(cmd);
      const sidecars = await ctx.spin(
        'asking proxy-config',
        askProxyConfig(servers, timeoutMs, opts.service === undefined ? {} : { service: opts.service }),
      );
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(sidecars, opts.output));
      else if (sidecars.length === 0)
        ctx.io.stderr.write(opts.service ? `No sidecar of ${opts.service} has reported.\n` : 'No sidecar has reported.\n');
      else ctx.io.stdout.write(proxyStatusTable(sidecars));
    });
}
