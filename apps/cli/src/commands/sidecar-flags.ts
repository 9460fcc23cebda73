import { readFileSync } from 'node:fs';
import { DEFAULT_NAMESPACE, SERVICE_NAME_PATTERN, SIDECAR_SET_LABELS } from '@novamesh/contracts';
import { type Command, InvalidArgumentError, Option } from 'commander';

/**
 * The flags of `meshctl sidecar` and `meshctl run`, one per SIDECAR_* variable of the sidecar's
 * config (apps/sidecar/src/config.ts). Values are checked by commander's parsers, so a bad one
 * exits 2 with the flag named before anything starts; the sidecar re-checks them when it loads.
 */
export interface SidecarFlags {
  service: string;
  appPort?: number;
  namespace?: string;
  id?: string;
  inboundPort?: number;
  outboundPort?: number;
  adminPort?: number;
  address?: string;
  upstreams?: string[];
  upstreamPort?: Record<string, number>;
  labels?: Record<string, string>;
  zone?: string;
  weight?: number;
  token?: string;
  tokenFile?: string;
  createToken?: boolean;
  dataDir?: string;
  accessLog?: 'all' | 'errors' | 'off';
  logLevel?: string;
}

export const ACCESS_LOG_MODES = ['all', 'errors', 'off'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const LABEL_KEY = /^[a-zA-Z0-9]([a-zA-Z0-9_./-]{0,61}[a-zA-Z0-9])?$/;
const SIDECAR_ID = /^[A-Za-z0-9_-]{1,128}$/;

export function serviceNameArg(value: string): string {
  if (!SERVICE_NAME_PATTERN.test(value)) throw new InvalidArgumentError("must be a service name (lowercase letters, digits, '-')");
  return value;
}

/** A port from `min` (0 = any free port, where the sidecar allows it) to 65535. */
export function portArg(min: 0 | 1): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > 65535)
      throw new InvalidArgumentError(min === 0 ? 'must be a port from 0 (any free port) to 65535' : 'must be a port from 1 to 65535');
    return n;
  };
}

function weightArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 10_000)
    throw new InvalidArgumentError('must be a whole number from 0 to 10000');
  return n;
}

function sidecarIdArg(value: string): string {
  if (!SIDECAR_ID.test(value)) throw new InvalidArgumentError("must be 1-128 letters, digits, '_' or '-'");
  return value;
}

function nonEmptyArg(value: string): string {
  if (!value.trim()) throw new InvalidArgumentError('must not be empty');
  return value.trim();
}

/** The non-empty, trimmed parts of a comma-separated flag value. */
function parts(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Splits `key=value`; throws naming the part when there is no key. */
function pair(part: string, shape: string): [string, string] {
  const eq = part.indexOf('=');
  const key = part.slice(0, eq).trim();
  if (eq <= 0 || !key) throw new InvalidArgumentError(`"${part}" is not ${shape}`);
  return [key, part.slice(eq + 1).trim()];
}

/** `a,b` (repeatable): service names. */
function collectServices(value: string, previous: string[] | undefined): string[] {
  const out = [...(previous ?? [])];
  for (const part of parts(value)) {
    if (!SERVICE_NAME_PATTERN.test(part)) throw new InvalidArgumentError(`"${part}" is not a service name`);
    if (!out.includes(part)) out.push(part);
  }
  return out;
}

/** `orders=9001` (repeatable, or `a=9001,b=9002`): a local port per upstream. */
export function collectUpstreamPorts(value: string, previous: Record<string, number> | undefined): Record<string, number> {
  const out = { ...previous };
  for (const part of parts(value)) {
    const [service, portText] = pair(part, 'service=port');
    const port = Number(portText);
    if (!SERVICE_NAME_PATTERN.test(service)) throw new InvalidArgumentError(`"${service}" is not a service name`);
    if (!portText || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new InvalidArgumentError(`"${part}" needs a port from 1 to 65535`);
    out[service] = port;
  }
  return out;
}

/** `k=v,k2=v2` (repeatable): endpoint labels. */
export function collectLabels(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const out = { ...previous };
  for (const part of parts(value)) {
    const [key, label] = pair(part, 'key=value');
    if (!LABEL_KEY.test(key)) throw new InvalidArgumentError(`"${key}" is not a label key (letters, digits, '_', '.', '/', '-')`);
    if (SIDECAR_SET_LABELS.has(key)) throw new InvalidArgumentError(`"${key}" is set by the sidecar itself (from --id or --namespace)`);
    out[key] = label;
  }
  return out;
}

/**
 * Adds the sidecar's flags to `cmd`. `appPort: 'required'` for `meshctl sidecar` (the app already
 * runs); `'optional'` for `meshctl run`, which picks a free port when it is not given.
 */
export function addSidecarOptions(cmd: Command, appPort: 'required' | 'optional'): Command {
  const appPortOption = new Option(
    '--app-port <port>',
    appPort === 'required'
      ? 'the port the workload listens on (127.0.0.1)'
      : 'the port the app listens on (default: a free port, given to it as PORT)',
  ).argParser(portArg(1));
  return cmd
    .addOption(new Option('--service <name>', 'the service this workload belongs to').argParser(serviceNameArg).makeOptionMandatory())
    .addOption(appPort === 'required' ? appPortOption.makeOptionMandatory() : appPortOption)
    .addOption(new Option('--namespace <name>', `its namespace (default: ${DEFAULT_NAMESPACE})`).argParser(serviceNameArg))
    .addOption(new Option('--id <id>', 'the sidecar (and endpoint) id (default: <service>-<host>-<pid>)').argParser(sidecarIdArg))
    .addOption(new Option('--inbound-port <port>', 'port other sidecars call (default: 0, any free port)').argParser(portArg(0)))
    .addOption(
      new Option(
        '--outbound-port <port>',
        appPort === 'required'
          ? 'port the app calls http://<service>.mesh through (default: 15001)'
          : 'port the app calls http://<service>.mesh through (default: a free port)',
      ).argParser(portArg(0)),
    )
    .addOption(
      new Option(
        '--admin-port <port>',
        `admin port: /ready /config_dump /clusters /metrics (default: ${appPort === 'required' ? '15000' : 'a free port'})`,
      ).argParser(portArg(0)),
    )
    .addOption(new Option('--address <host>', 'address other sidecars reach this one at (default: 127.0.0.1)').argParser(nonEmptyArg))
    .addOption(new Option('--upstreams <a,b>', 'services this workload calls (default: every service)').argParser(collectServices))
    .addOption(
      new Option('--upstream-port <service=port>', 'also listen on 127.0.0.1:<port> for calls to <service> (repeatable)').argParser(
        collectUpstreamPorts,
      ),
    )
    .addOption(new Option('--labels <k=v,...>', 'labels of this endpoint, e.g. version=v2 (repeatable)').argParser(collectLabels))
    .addOption(new Option('--zone <zone>', 'locality of this endpoint (zone-aware load balancing)').argParser(nonEmptyArg))
    .addOption(new Option('--weight <n>', 'load-balancing weight of this endpoint (default: 1)').argParser(weightArg))
    .addOption(new Option('--token <token>', 'join token for the first certificate (or env SIDECAR_JOIN_TOKEN)').argParser(nonEmptyArg))
    .addOption(new Option('--token-file <path>', 'read the join token from this file').conflicts('token'))
    .addOption(
      new Option(
        '--create-token',
        'ask the certificate authority for a one-use join token with your NATS access (demos, quick starts)',
      ).conflicts(['token', 'tokenFile']),
    )
    .addOption(new Option('--data-dir <dir>', 'keeps the last good snapshot and certificate across restarts').argParser(nonEmptyArg))
    .addOption(new Option('--access-log <mode>', 'which requests to log (default: errors)').choices(ACCESS_LOG_MODES))
    .addOption(new Option('--log-level <level>', 'sidecar log level (default: info)').choices(LOG_LEVELS));
}

/** A problem found across flags; the command reports it as a usage error (exit 2). */
export class FlagError extends Error {
  override name = 'FlagError';
}

/**
 * Checks what single flags cannot: a port given to two listeners. `ports` are [flag as written, port]
 * pairs with the final ports (after `meshctl run` picked free ones); 0 means "any free port".
 */
export function checkPorts(ports: [string, number | undefined][]): void {
  const seen = new Map<number, string>();
  for (const [flag, port] of ports) {
    if (!port) continue;
    const other = seen.get(port);
    if (other) throw new FlagError(`${other} and ${flag} use the same port: each listener needs its own`);
    seen.set(port, flag);
  }
}

/** The ports the flags name, each with the flag as the user wrote it, for checkPorts. */
export function flagPorts(f: SidecarFlags): [string, number | undefined][] {
  const named = (flag: string, port: number | undefined): [string, number | undefined] => [`${flag} ${port}`, port];
  return [
    named('--app-port', f.appPort),
    named('--inbound-port', f.inboundPort),
    named('--outbound-port', f.outboundPort),
    named('--admin-port', f.adminPort),
    ...Object.entries(f.upstreamPort ?? {}).map(([s, p]): [string, number] => [`--upstream-port ${s}=${p}`, p]),
  ];
}

/** The token given by --token or --token-file (trimmed), or undefined. */
export function tokenFromFlags(f: SidecarFlags): string | undefined {
  if (f.token) return f.token;
  if (!f.tokenFile) return undefined;
  let text: string;
  try {
    text = readFileSync(f.tokenFile, 'utf8').trim();
  } catch (e) {
    throw new FlagError(
      `--token-file ${f.tokenFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
  if (!text) throw new FlagError(`--token-file ${f.tokenFile}: the file is empty`);
  return text;
}

/** `a=1,b=2`, or undefined for no map. */
function pairsText(map: Record<string, string | number> | undefined): string | undefined {
  return map
    ? Object.entries(map)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')
    : undefined;
}

/**
 * The sidecar's environment from the flags: only the SIDECAR_* (and NATS_URL, LOG_LEVEL) variables
 * a flag sets; the caller merges it over its own environment, so unset flags keep their variable.
 */
export function sidecarEnv(f: SidecarFlags, opts: { natsUrl: string; appPort: number; token?: string }): Record<string, string> {
  const env: Record<string, string> = {
    NATS_URL: opts.natsUrl,
    SIDECAR_SERVICE: f.service,
    SIDECAR_APP_PORT: String(opts.appPort),
  };
  const set = (key: string, value: string | number | undefined) => {
    if (value !== undefined) env[key] = String(value);
  };
  set('SIDECAR_NAMESPACE', f.namespace);
  set('SIDECAR_ID', f.id);
  set('SIDECAR_INBOUND_PORT', f.inboundPort);
  set('SIDECAR_OUTBOUND_PORT', f.outboundPort);
  set('SIDECAR_ADMIN_PORT', f.adminPort);
  set('SIDECAR_ADDRESS', f.address);
  set('SIDECAR_UPSTREAMS', f.upstreams?.join(','));
  set('SIDECAR_UPSTREAM_PORTS', pairsText(f.upstreamPort));
  set('SIDECAR_LABELS', pairsText(f.labels));
  set('SIDECAR_ZONE', f.zone);
  set('SIDECAR_WEIGHT', f.weight);
  set('SIDECAR_JOIN_TOKEN', opts.token);
  set('SIDECAR_DATA_DIR', f.dataDir);
  set('SIDECAR_ACCESS_LOG', f.accessLog);
  set('LOG_LEVEL', f.logLevel);
  return env;
}
