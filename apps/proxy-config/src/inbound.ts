import { decode, lastToken, MeshValidationError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';

/** Snapshots and endpoint sets of large services are big; refuse only the absurd. */
const MAX_INPUT_BYTES = 8 * 1024 * 1024;

type AnySchema = Parameters<typeof decode>[0];
type Decoded<S extends AnySchema> = ReturnType<typeof decode<S>>;

/**
 * Validates one message from an input subject (edge validation): the payload must match
 * `schema` and, when `service` is given, its service field must be the subject's last token.
 * Returns undefined — after logging why — for a message to skip; never throws.
 */
export function readInput<S extends AnySchema>(
  log: Logger,
  schema: S,
  what: string,
  msg: { subject: string; data: Uint8Array; seq?: number },
  service?: { field: string; of: (parsed: Decoded<S>) => string },
): Decoded<S> | undefined {
  try {
    const parsed = decode(schema, msg.data, what, MAX_INPUT_BYTES);
    const token = lastToken(msg.subject);
    if (service && service.of(parsed) !== token)
      throw new MeshValidationError(`${what} does not belong to its subject`, [
        { path: service.field, message: `"${service.of(parsed)}" must equal the subject's service "${token}"` },
      ]);
    return parsed;
  } catch (e) {
    const err = e as MeshValidationError;
    log.warn({ subject: msg.subject, seq: msg.seq, code: err.code, issues: err.issues, reason: err.message }, `invalid ${what} skipped`);
    return undefined;
  }
}
