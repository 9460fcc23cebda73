import type { RetryOnCondition, RetryPolicy } from '@novamesh/contracts';

/** How an attempt failed before a complete response, as the retry conditions name it. */
export type AttemptFailure = 'connect-failure' | 'refused-stream' | 'reset' | 'timeout';

const BIT: Record<RetryOnCondition, number> = {
  'connect-failure': 1,
  'refused-stream': 2,
  unavailable: 4,
  '5xx': 8,
  'gateway-error': 16,
  reset: 32,
  'retriable-status-codes': 64,
};
/** Failures where the request provably never reached the application: safe to retry for any method. */
const NEVER_SENT: ReadonlySet<AttemptFailure> = new Set(['connect-failure', 'refused-stream']);
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Istio's default conditions when a policy sets `attempts` without `retryOn`. */
export const DEFAULT_RETRY_ON: readonly RetryOnCondition[] = ['connect-failure', 'refused-stream', 'unavailable', 'gateway-error'];
/** gRPC status UNAVAILABLE, what the `unavailable` condition retries. */
const GRPC_UNAVAILABLE = '14';
/**
 * A `Retry-After` longer than this (or than the request's time left) is not waited for: the
 * response, with its `Retry-After`, is passed on instead of being retried early. Envoy's
 * `rate_limited_retry_back_off.max_interval` plays this part (default 300 s, and Envoy then falls
 * back to its usual backoff); 30 s keeps a caller's request from being held longer than a person
 * would wait.
 */
export const RETRY_AFTER_CAP_MS = 30_000;

/** RFC 9110 §9.2.2 idempotent methods: a retry cannot repeat an effect. */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/**
 * A RetryPolicy compiled for the request path: the retry conditions as a bit mask, so deciding
 * costs a few integer operations and no allocation. Immutable; share it between requests.
 */
export class CompiledRetryPolicy {
  /** Retries after the first try. */
  readonly attempts: number;
  readonly perTryTimeout: number | undefined;
  readonly baseInterval: number;
  readonly maxInterval: number;
  readonly jitter: boolean;
  private readonly mask: number;
  private readonly codes: ReadonlySet<number>;

  constructor(readonly policy: RetryPolicy) {
    this.attempts = policy.attempts;
    this.perTryTimeout = policy.perTryTimeout;
    this.baseInterval = policy.backoff?.baseInterval ?? 25;
    this.maxInterval = policy.backoff?.maxInterval ?? this.baseInterval * 10;
    this.jitter = policy.backoff?.jitter ?? true;
    let mask = 0;
    for (const c of policy.retryOn ?? DEFAULT_RETRY_ON) mask |= BIT[c];
    this.mask = mask;
    this.codes = new Set(policy.retriableStatusCodes ?? []);
  }

  private has(c: RetryOnCondition): boolean {
    return (this.mask & BIT[c]) !== 0;
  }

  /**
   * Whether a response is worth another try: `5xx` any 5xx, `gateway-error` 502/503/504,
   * `retriable-status-codes` the listed ones, `unavailable` gRPC status 14 (a trailers-only
   * response carries it in the headers).
   */
  retriableStatus(status: number, grpcStatus?: unknown): boolean {
    if (status >= 500 && status <= 599) {
      if (this.has('5xx')) return true;
      if ((status === 502 || status === 503 || status === 504) && this.has('gateway-error')) return true;
    }
    if (this.has('retriable-status-codes') && this.codes.has(status)) return true;
    return grpcStatus === GRPC_UNAVAILABLE && this.has('unavailable');
  }

  /**
   * Whether a failure without a response is worth another try, with Envoy's semantics: `5xx`,
   * `gateway-error` and `reset` cover every failure (a reset, a timeout, no connection);
   * `connect-failure` and `refused-stream` only their own.
   */
  retriableFailure(failure: AttemptFailure): boolean {
    if (this.has('5xx') || this.has('gateway-error') || this.has('reset')) return true;
    return (failure === 'connect-failure' && this.has('connect-failure')) || (failure === 'refused-stream' && this.has('refused-stream'));
  }

  /**
   * Whether `method` may be retried after `failure` (undefined: after a response, whose gRPC
   * status is `grpcStatus`). Idempotent methods always; the others (POST, PATCH) only when the
   * request provably never reached the application (no connection, refused stream) or when a gRPC
   * server answered UNAVAILABLE, which gRPC defines as "the client can retry just the failing
   * call" (every gRPC call is a POST, so the method says nothing about it); all of them when the
   * policy's `retryNonIdempotent` is set.
   */
  methodAllows(method: string, failure: AttemptFailure | undefined, grpcStatus?: unknown): boolean {
    if (this.policy.retryNonIdempotent === true || isIdempotent(method)) return true;
    return failure !== undefined ? NEVER_SENT.has(failure) : grpcStatus === GRPC_UNAVAILABLE;
  }

  /** Wait before retry number `retry` (1-based): exponential from baseInterval, capped at maxInterval, fully jittered. */
  backoff(retry: number, random: () => number = Math.random): number {
    const ceiling = Math.min(this.maxInterval, this.baseInterval * 2 ** Math.min(retry - 1, 30));
    return this.jitter ? Math.floor(random() * ceiling) : ceiling;
  }
}

/**
 * Milliseconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date, RFC 9110
 * §10.2.3), at least 0; undefined when absent or not understood.
 */
export function parseRetryAfter(value: unknown, now: number = Date.now()): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  // An HTTP date names a weekday and a month; Date.parse alone would take "-1" as a year.
  const at = /[a-z]{3}/i.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
