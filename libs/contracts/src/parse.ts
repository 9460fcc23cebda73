import type { z } from 'zod';
import { formatPath, meshErrorMap, UNKNOWN_FIELD } from './error-map';
import { ErrorCode, type Issue, MeshValidationError } from './errors';
import { registrySchemas } from './events';
import { lastToken, MAX_EVENT_BYTES, parseRegistrySubject, type RegistryAction } from './names';

/**
 * Turns zod issues into `path: message` pairs with paths like `endpoints[2].port`; an unknown field
 * is one issue of its own, at its path, with the fields allowed there (many unknown fields of one
 * object are one issue). At most {@link MAX_ISSUES}.
 */
export function toIssues(error: z.ZodError): Issue[] {
  const out: Issue[] = [];
  for (const i of error.issues) {
    if (i.code !== 'unrecognized_keys') {
      // A schema's own message ("must be a string") says nothing of the field being absent.
      const missing = i.code === 'invalid_type' && 'input' in i && i.input === undefined && !i.message.startsWith('is required');
      out.push({ path: formatPath(i.path), message: missing ? `is required (${i.message})` : i.message });
      continue;
    }
    const allowed = i.message.startsWith(UNKNOWN_FIELD) ? (JSON.parse(i.message.slice(UNKNOWN_FIELD.length)) as string[]) : [];
    const fields = allowed.length ? `; allowed fields: ${allowed.join(', ')}` : '';
    if (i.keys.length > MAX_UNKNOWN_SHOWN) {
      const shown = i.keys.slice(0, MAX_UNKNOWN_SHOWN).map((k) => JSON.stringify(k.slice(0, 64)));
      out.push({ path: formatPath(i.path), message: `unknown fields ${shown.join(', ')} … (${i.keys.length} in all)${fields}` });
      continue;
    }
    for (const key of i.keys) out.push({ path: formatPath([...i.path, key]), message: `unknown field${fields}` });
  }
  return capIssues(out);
}

/** Unknown fields of one object listed one by one up to this many; more are one issue. */
const MAX_UNKNOWN_SHOWN = 5;

/** Most issues reported for one input: a garbage document should not produce a megabyte of them. */
export const MAX_ISSUES = 100;

/** The first {@link MAX_ISSUES} of `issues`, then one saying how many more there were. */
export function capIssues(issues: Issue[]): Issue[] {
  if (issues.length <= MAX_ISSUES) return issues;
  const more = issues.length - MAX_ISSUES;
  return [...issues.slice(0, MAX_ISSUES), { path: '', message: `… and ${more} more problem${more === 1 ? '' : 's'}` }];
}

/**
 * The JSON of an object with `members` appended, from the object's JSON text: byte for byte
 * `JSON.stringify({ ...JSON.parse(objectJson), ...members })` when those keys are new names (not
 * integer-like: an object lists those first), without
 * serializing the object again (publishers hash the content's JSON and send it with a version or
 * revision and a time added). `objectJson` must be the JSON of an object with at least one member.
 */
export function appendJsonMembers(objectJson: string, members: Record<string, string | number>): string {
  if (!(objectJson.startsWith('{"') && objectJson.endsWith('}'))) throw new RangeError('not the JSON of an object with members');
  let out = objectJson.slice(0, -1);
  for (const [key, value] of Object.entries(members)) out += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
  return `${out}}`;
}

/** How mesh input is parsed: the mesh's error map, with the received value in each issue for it. */
export const PARSE_PARAMS = { error: meshErrorMap, reportInput: true } as const;

/** Validates an already-parsed value; throws `MeshValidationError` listing every problem. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value, PARSE_PARAMS);
  if (!r.success) throw new MeshValidationError(`invalid ${what}`, toIssues(r.error));
  return r.data;
}

/** Bytes → JSON → schema, refusing oversized payloads and bad JSON with their own codes. */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array, what: string, maxBytes = MAX_EVENT_BYTES): z.output<S> {
  if (data.byteLength > maxBytes)
    throw new MeshValidationError(`${what} is ${data.byteLength} bytes, more than the ${maxBytes} allowed`, [], ErrorCode.tooLarge);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (e) {
    throw new MeshValidationError(`${what} is not valid JSON: ${(e as Error).message}`, [], ErrorCode.badJson);
  }
  return validate(schema, value, what);
}

/** The largest last value of a per-service subject a reader takes: large services make big endpoint sets and snapshots; only the absurd is refused. */
export const MAX_LAST_VALUE_BYTES = 8 * 1024 * 1024;

/**
 * Decodes a message of a per-service subject (`….<service>`: endpoint sets, effective policies,
 * proxy snapshots): the payload must match `schema`, and the service it names must be the
 * subject's last token. Throws a MeshValidationError saying which it is not.
 */
export function decodeForSubject<S extends z.ZodType<{ service: string }>>(
  schema: S,
  subject: string,
  data: Uint8Array,
  what: string,
): z.output<S> {
  const parsed = decode(schema, data, what, MAX_LAST_VALUE_BYTES);
  const named = (parsed as { service: string }).service;
  const token = lastToken(subject);
  if (named !== token)
    throw new MeshValidationError(`${what} does not belong to its subject`, [
      { path: 'service', message: `"${named}" must equal the subject's service "${token}"` },
    ]);
  return parsed;
}

export type RegistryEvent =
  | { action: 'register'; service: string; body: z.output<(typeof registrySchemas)['register']> }
  | { action: 'deregister'; service: string; body: z.output<(typeof registrySchemas)['deregister']> }
  | { action: 'heartbeat'; service: string; body: z.output<(typeof registrySchemas)['heartbeat']> }
  | { action: 'endpoint.add'; service: string; body: z.output<(typeof registrySchemas)['endpoint.add']> }
  | { action: 'endpoint.remove'; service: string; body: z.output<(typeof registrySchemas)['endpoint.remove']> };

/**
 * Validates one registry event as it arrives at discovery: the subject must be a registry
 * subject, the payload must match its action's schema, and the service named in the payload
 * must be the one in the subject.
 */
export function decodeRegistryEvent(subject: string, data: Uint8Array): RegistryEvent {
  const parsed = parseRegistrySubject(subject);
  if (!parsed)
    throw new MeshValidationError(
      `"${subject}" is not a registry subject (mesh.v1.registry.<service>.<action>)`,
      [],
      ErrorCode.unknownSubject,
    );
  const { service, action } = parsed;
  const schema = registrySchemas[action as RegistryAction];
  const body = decode(schema as z.ZodType, data, `${action} event`) as Record<string, unknown>;
  const named = (action === 'register' || action === 'deregister' ? body.name : body.service) as string;
  if (named !== service) {
    const field = action === 'register' || action === 'deregister' ? 'name' : 'service';
    throw new MeshValidationError(
      `${action} event names service "${named}" but was published on the subject of "${service}"`,
      [{ path: field, message: `must equal the subject's service "${service}"` }],
      ErrorCode.subjectMismatch,
    );
  }
  return { action, service, body } as RegistryEvent;
}
