import { decode, decodeForSubject, MAX_LAST_VALUE_BYTES, type MeshValidationError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';

type AnySchema = Parameters<typeof decode>[0];
type Decoded<S extends AnySchema> = ReturnType<typeof decode<S>>;

/**
 * Validates one message from an input subject (edge validation): the payload must match
 * `schema` and, for a per-service subject (`perService`), name the subject's service
 * ({@link decodeForSubject}). Returns undefined — after logging why — for a message to skip; never throws.
 */
export function readInput<S extends AnySchema>(
  log: Logger,
  schema: S,
  what: string,
  msg: { subject: string; data: Uint8Array; seq?: number },
  perService = false,
): Decoded<S> | undefined {
  try {
    return perService
      ? (decodeForSubject(schema as Parameters<typeof decodeForSubject>[0], msg.subject, msg.data, what) as Decoded<S>)
      : decode(schema, msg.data, what, MAX_LAST_VALUE_BYTES);
  } catch (e) {
    const err = e as MeshValidationError;
    log.warn({ subject: msg.subject, seq: msg.seq, code: err.code, issues: err.issues, reason: err.message }, `invalid ${what} skipped`);
    return undefined;
  }
}
