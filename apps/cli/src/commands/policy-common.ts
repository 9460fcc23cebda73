import { ErrorCode, type Issue, MeshError, MeshValidationError, POLICY_KINDS, type Policy, type PolicyKind } from '@novamesh/contracts';
import { parsePolicyDocuments } from '@novamesh/policy';
import { type Command, InvalidArgumentError } from 'commander';
import { ExitCode, formatIssue, headline } from '../errors';
import { readAll, readManifestFile } from './register';

/** Short names accepted wherever a policy kind is (besides the kind itself, in any case, and its plural). */
export const KIND_ALIASES: Readonly<Record<string, PolicyKind>> = {
  tp: 'TrafficPolicy',
  rr: 'RouteRule',
  rl: 'RateLimitPolicy',
  authz: 'AuthorizationPolicy',
  mtls: 'MutualTLSPolicy',
};

const KINDS_BY_NAME = new Map<string, PolicyKind>();
for (const kind of POLICY_KINDS) {
  const lower = kind.toLowerCase();
  KINDS_BY_NAME.set(lower, kind);
  KINDS_BY_NAME.set(lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : `${lower}s`, kind);
}
for (const [alias, kind] of Object.entries(KIND_ALIASES)) KINDS_BY_NAME.set(alias, kind);

/** What `--help` and usage errors list as valid kinds. */
export const KIND_HELP = `${POLICY_KINDS.map((k) => k.toLowerCase()).join('|')} (or ${Object.keys(KIND_ALIASES).join(', ')})`;

/** `trafficpolicy`, `TrafficPolicy`, `trafficpolicies` or `tp` → `TrafficPolicy`; undefined when unknown. */
export function parseKind(value: string): PolicyKind | undefined {
  return KINDS_BY_NAME.get(value.trim().toLowerCase());
}

/** Commander parser for `--kind`. */
export function kindArg(value: string): PolicyKind {
  const kind = parseKind(value);
  if (!kind) throw new InvalidArgumentError(`"${value}" is not a policy kind: use ${KIND_HELP}`);
  return kind;
}

export interface PolicyRef {
  kind: PolicyKind;
  name: string;
}

/**
 * The policy named on a command line, as `KIND/NAME` (one argument) or `KIND NAME` (two).
 * Throws InvalidArgumentError saying what is wrong.
 */
export function parsePolicyRef(first: string, second?: string): PolicyRef {
  let kindText = first;
  let name = second;
  const slash = first.indexOf('/');
  if (slash >= 0) {
    if (second !== undefined) throw new InvalidArgumentError(`give either KIND/NAME or KIND NAME, not "${first}" and "${second}"`);
    kindText = first.slice(0, slash);
    name = first.slice(slash + 1);
  }
  const kind = parseKind(kindText);
  if (!kind) throw new InvalidArgumentError(`"${kindText}" is not a policy kind: use ${KIND_HELP}`);
  if (!name) throw new InvalidArgumentError(`no policy name: use ${kindText}/NAME or ${kindText} NAME`);
  return { kind, name };
}

/** Like parsePolicyRef, but a mistake is a usage error of `cmd` (exit code 2). */
export function policyRefOf(cmd: Command, first: string, second?: string): PolicyRef {
  try {
    return parsePolicyRef(first, second);
  } catch (e) {
    return cmd.error(`error: ${(e as Error).message}`, { exitCode: ExitCode.usage, code: 'meshctl.invalidPolicyRef' });
  }
}

/** kubectl-style resource reference: `trafficpolicy/payment-traffic`. */
export function refText(ref: { kind: string; name: string }): string {
  return `${ref.kind.toLowerCase()}/${ref.name}`;
}

/** One document of a policy file, in file order (`number` counts from 1, as users do). */
export interface PolicyDocument {
  number: number;
  value: Record<string, unknown>;
}

/** `TrafficPolicy "payment-traffic" (document 2)`, with whatever the document says of itself. */
export function documentLabel(doc: PolicyDocument): string {
  const { kind, name } = doc.value;
  const what = typeof kind === 'string' ? kind : 'policy';
  return typeof name === 'string' ? `${what} "${name}" (document ${doc.number})` : `${what} (document ${doc.number})`;
}

/**
 * Reads a policy file (`-` = stdin): YAML documents separated by `---`, or JSON. Nothing is sent
 * anywhere if a single document does not parse: the error names every broken document by number.
 * Each document must be a mapping; its content is left to the policy service to validate.
 */
export async function loadPolicyDocuments(file: string, stdin: NodeJS.ReadableStream): Promise<PolicyDocument[]> {
  const source = file === '-' ? '<stdin>' : file;
  const text = file === '-' ? await readAll(stdin) : await readManifestFile(file);
  const parsed = parsePolicyDocuments(text);
  const issues: Issue[] = [];
  const docs: PolicyDocument[] = [];
  for (const d of parsed) {
    const number = d.index + 1;
    if (d.error !== undefined) issues.push({ path: `document ${number}`, message: errorText(d.error) });
    // An empty document (`---` with nothing or only comments after it, e.g. a trailing `---`) is skipped.
    else if (d.value === null || d.value === undefined) continue;
    else if (typeof d.value !== 'object' || Array.isArray(d.value))
      issues.push({ path: `document ${number}`, message: 'must be a mapping with kind, name and the policy fields' });
    else docs.push({ number, value: d.value as Record<string, unknown> });
  }
  if (issues.length) throw new MeshValidationError(`${source} is not valid YAML or JSON`, issues);
  if (docs.length === 0) throw new MeshValidationError(`${source} holds no policy documents`, []);
  return docs;
}

/** A parse error on one line: the YAML library's message says where, then quotes the source, which the path replaces. */
function errorText(error: string): string {
  return error
    .split('; ')
    .map((m) => (m.split('\n')[0] ?? m).replace(/:\s*$/, ''))
    .join('; ');
}

/** kind and name of a document, for commands that need them locally (`delete -f`). */
export function documentRef(doc: PolicyDocument): PolicyRef {
  const { kind, name } = doc.value;
  const issues: Issue[] = [];
  const parsedKind = typeof kind === 'string' ? parseKind(kind) : undefined;
  if (!parsedKind) issues.push({ path: 'kind', message: `must be one of ${POLICY_KINDS.join(', ')}` });
  if (typeof name !== 'string' || !name) issues.push({ path: 'name', message: 'required' });
  if (!parsedKind || typeof name !== 'string' || !name) throw new MeshValidationError(`${documentLabel(doc)} names no policy`, issues);
  return { kind: parsedKind, name };
}

/**
 * The lines meshctl prints for a document the policy service refused: one headline naming the
 * document, then every issue with its path.
 */
export function describeDocumentError(doc: PolicyDocument, err: MeshError): string {
  let why = headline(err);
  // The service's own headline ("invalid TrafficPolicy "x"") repeats what the label already says.
  const { kind, name } = doc.value;
  if (typeof kind === 'string') {
    const self = typeof name === 'string' ? `${kind} "${name}"` : kind;
    if (why === `invalid ${self}`) why = 'invalid';
  }
  const lines = [`error: ${documentLabel(doc)}: ${why}`, ...err.issues.map((i) => `  ${formatIssue(i)}`)];
  return `${lines.join('\n')}\n`;
}

/** Codes meaning "the policy service said no" (as opposed to "could not be asked"). */
export const REFUSALS = new Set<string>([ErrorCode.invalid, ErrorCode.conflict, ErrorCode.tooLarge, ErrorCode.badJson, ErrorCode.notFound]);

/** A MeshError naming the document it happened on, keeping code and issues (so exit codes stay right). */
export function atDocument(doc: PolicyDocument, err: MeshError, tail = ''): MeshError {
  return new MeshError(err.code, `${documentLabel(doc)}: ${headline(err)}${tail}`, {
    issues: err.issues,
    cause: err,
    retryable: err.retryable,
  });
}

/** `documents 3-5`, `document 3`, for saying what was not applied. */
export function documentRange(from: number, to: number): string {
  return from === to ? `document ${from}` : `documents ${from}-${to}`;
}

/** The services a policy names: its `serviceName` (`*` = every service). */
export function policyServices(policy: Policy): string[] {
  return policy.serviceName ? [policy.serviceName] : [];
}

/** `12s ago`, `5m ago`, `3h ago`, `2d ago` (kubectl's AGE, spelled out). */
export function age(iso: string, now = Date.now()): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  const s = Math.max(0, Math.floor((now - then) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** An ISO timestamp to the second: `2025-01-31T12:00:00Z`. */
export function timestamp(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** Top-level fields that differ between two versions of a policy (kind and name never do). */
export function changedFields(before: Record<string, unknown> | undefined, after: Record<string, unknown>): string[] {
  if (!before) return [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => k !== 'kind' && k !== 'name' && stableJson(before[k]) !== stableJson(after[k])).sort();
}

/** JSON with object keys sorted, so equal values compare equal whatever their key order. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/** Prefixes every line of `text` with `indent` (no trailing newline added or lost). */
export function indent(text: string, by = '  '): string {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  return `${body
    .split('\n')
    .map((l) => (l ? by + l : l))
    .join('\n')}\n`;
}
