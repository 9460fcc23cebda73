/** One problem in an input: where (`endpoints[2].port`) and why. */
export interface Issue {
  path: string;
  message: string;
}

/** Stable error codes; clients switch on these, never on messages. */
export const ErrorCode = {
  invalid: 'MESH_INVALID',
  badJson: 'MESH_BAD_JSON',
  tooLarge: 'MESH_TOO_LARGE',
  subjectMismatch: 'MESH_SUBJECT_MISMATCH',
  unknownSubject: 'MESH_UNKNOWN_SUBJECT',
  notFound: 'MESH_NOT_FOUND',
  unavailable: 'MESH_UNAVAILABLE',
  conflict: 'MESH_CONFLICT',
  redeliveryExhausted: 'MESH_REDELIVERY_EXHAUSTED',
  timeout: 'MESH_TIMEOUT',
  aborted: 'MESH_ABORTED',
  internal: 'MESH_INTERNAL',
  /** The caller did not prove who it claims to be (join token or certificate refused). */
  forbidden: 'MESH_FORBIDDEN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Base of every Novamesh error. `retryable` tells a consumer whether redelivery could help
 * (a broken payload never gets better; an unreachable store may).
 */
export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly issues: Issue[];
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, opts: { issues?: Issue[]; retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MeshError';
    this.code = code;
    this.issues = opts.issues ?? [];
    this.retryable = opts.retryable ?? false;
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message, issues: this.issues, ...(this.retryable ? { retryable: true } : {}) };
  }
}

/** The longest message of a {@link MeshValidationError}. */
const MAX_MESSAGE = 4_096;

/** Input failed its schema; `issues` lists every problem at once. */
export class MeshValidationError extends MeshError {
  constructor(message: string, issues: Issue[], code: ErrorCode = ErrorCode.invalid) {
    const all = issues.length ? `${message}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}` : message;
    // The issues carry every problem; the message is for a log line or a terminal.
    super(code, all.length > MAX_MESSAGE ? `${all.slice(0, MAX_MESSAGE)}… (${issues.length} problems in all)` : all, { issues });
    this.name = 'MeshValidationError';
  }
}

export interface ErrorBody {
  code: string;
  message: string;
  issues: Issue[];
  /** Present (true) when asking again may succeed: a store or the CA was briefly unavailable, a compare-and-set lost a race. */
  retryable?: boolean;
}

/** Codes that say "not now" rather than "no", for replies from services that predate `retryable` in the body. */
const RETRYABLE_CODES: readonly string[] = [ErrorCode.unavailable, ErrorCode.timeout];

const VALIDATION_CODES: readonly string[] = [ErrorCode.invalid, ErrorCode.badJson, ErrorCode.tooLarge, ErrorCode.subjectMismatch];

/** Rebuilds a typed error from a reply body received over NATS (a refusal of input is a MeshValidationError). */
export function errorFromBody(body: ErrorBody): MeshError {
  if (VALIDATION_CODES.includes(body.code)) {
    const err = new MeshValidationError(body.message, [], body.code as ErrorCode);
    return Object.assign(err, { message: body.message, issues: body.issues });
  }
  return new MeshError(body.code as ErrorCode, body.message, {
    issues: body.issues,
    retryable: body.retryable ?? RETRYABLE_CODES.includes(body.code),
  });
}
