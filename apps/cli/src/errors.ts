import { ErrorCode, type Issue, MeshError, subjects } from '@novamesh/contracts';

/**
 * meshctl's exit codes, a public contract for scripts: changing one is a breaking change.
 * Errors are mapped to them only here, at the edge.
 */
export const ExitCode = {
  ok: 0,
  /** Refused or invalid input: a bad manifest, discovery's refusal. */
  invalid: 1,
  /** Wrong command line (commander's own errors, bad flag values). */
  usage: 2,
  /** NATS or discovery unreachable, or no answer in time. */
  unavailable: 3,
  notFound: 4,
  /** Interrupted by Ctrl-C before the command finished. */
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Ends a command with `exitCode` once it has told the user everything itself: `diff` finding
 * differences, `analyze` finding errors, `apply` reporting a refused document after the ones it
 * applied. main.ts prints nothing more for it.
 */
export class CommandExit extends Error {
  readonly exitCode: number;

  constructor(exitCode: number) {
    super(`exit code ${exitCode}`);
    this.name = 'CommandExit';
    this.exitCode = exitCode;
  }
}

/** Exit code of an error that reached the top of a command. */
export function exitCodeFor(err: unknown): ExitCode {
  const e = toMeshError(err);
  switch (e.code) {
    case ErrorCode.notFound:
      return ExitCode.notFound;
    case ErrorCode.unavailable:
    case ErrorCode.timeout:
      return ExitCode.unavailable;
    case ErrorCode.aborted:
      return ExitCode.interrupted;
    default:
      return ExitCode.invalid;
  }
}

// Names of the @nats-io error classes that mean "the server is not reachable (in time)".
const NATS_UNAVAILABLE = new Set([
  'ConnectionError',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'NoRespondersError',
  'RequestError',
  'TimeoutError',
]);

/**
 * Turns anything thrown by the SDK or the NATS client into a MeshError, so the exit code and
 * message do not depend on which layer failed. Unknown errors become `MESH_INTERNAL`.
 */
export function toMeshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  const e = err as Error | undefined;
  const message = e?.message ?? String(err);
  if (e?.name === 'AbortError') return new MeshError(ErrorCode.aborted, 'interrupted', { cause: err });
  if (e && NATS_UNAVAILABLE.has(e.name)) {
    const code = e.name === 'TimeoutError' ? ErrorCode.timeout : ErrorCode.unavailable;
    return new MeshError(code, `NATS: ${message}`, { cause: err, retryable: true });
  }
  return new MeshError(ErrorCode.internal, message, { cause: err });
}

/** A MeshError's own text without the `: path: message; …` tail MeshValidationError appends. */
export function headline(err: MeshError): string {
  const first = err.issues[0];
  if (!first) return err.message;
  const at = err.message.indexOf(`: ${formatIssue(first)}`);
  return at > 0 ? err.message.slice(0, at) : err.message;
}

export function formatIssue(issue: Issue): string {
  return `${issue.path || '(root)'}: ${issue.message}`;
}

const HINTS: Partial<Record<string, string>> = {
  [ErrorCode.unavailable]: 'check --nats (or NATS_URL) and that a discovery replica is running',
  [ErrorCode.timeout]: 'discovery did not answer in time: is it running? (raise --timeout if it is just slow)',
  [ErrorCode.internal]: 'this may be a bug in meshctl; MESHCTL_DEBUG=1 prints where it happened',
};

// NATS itself not answering: no service is to blame yet.
const NATS_HINT = 'check --nats (or NATS_URL): is a nats-server running and reachable there?';

// Failures of the policy commands (their request subjects are in the message) point at the policy service.
const POLICY_SUBJECT = subjects.policyAll.replace(/\*$/, '');
const POLICY_HINTS: Partial<Record<string, string>> = {
  [ErrorCode.unavailable]: 'check --nats (or NATS_URL) and that a policy service replica is running',
  [ErrorCode.timeout]: 'the policy service did not answer in time: is it running? (raise --timeout if it is just slow)',
};

// Failures of the certificate authority commands point at the certificate authority.
const CA_SUBJECT = subjects.ca('sign').replace(/sign$/, '');
const CA_HINTS: Partial<Record<string, string>> = {
  [ErrorCode.unavailable]: 'check --nats (or NATS_URL) and that a certificate-authority replica is running',
  [ErrorCode.timeout]: 'the certificate authority did not answer in time: is it running? (raise --timeout if it is just slow)',
};

// Failures of `meshctl proxy-status` point at proxy-config.
const PROXY_SUBJECT = subjects.proxyStatus;
const PROXY_HINTS: Partial<Record<string, string>> = {
  [ErrorCode.unavailable]: 'check --nats (or NATS_URL) and that a proxy-config replica is running',
  [ErrorCode.timeout]: 'proxy-config did not answer in time: is it running? (raise --timeout if it is just slow)',
};

/** What the user reads on stderr: one headline, every issue with its path, maybe a hint. */
export function describeError(err: unknown, opts: { debug?: boolean } = {}): string {
  const e = toMeshError(err);
  if (e.code === ErrorCode.aborted) return 'interrupted\n';
  const lines = [`error: ${headline(e)}`];
  // "not registered" needs no path to explain it; everything else is a list of what to fix.
  if (e.code !== ErrorCode.notFound) for (const issue of e.issues) lines.push(`  ${formatIssue(issue)}`);
  const hint =
    (e.message.startsWith('cannot reach NATS') ? NATS_HINT : undefined) ??
    (e.message.includes(POLICY_SUBJECT) ? POLICY_HINTS[e.code] : undefined) ??
    (e.message.includes(CA_SUBJECT) ? CA_HINTS[e.code] : undefined) ??
    (e.message.includes(PROXY_SUBJECT) ? PROXY_HINTS[e.code] : undefined) ??
    HINTS[e.code];
  if (hint) lines.push(`hint: ${hint}`);
  // Unexpected failures are bugs: show where they came from when asked to.
  if (opts.debug && e.code === ErrorCode.internal) lines.push(String((e.cause as Error | undefined)?.stack ?? e.stack));
  return `${lines.join('\n')}\n`;
}
