import type { RateLimit, RateLimitPolicy } from '@novamesh/contracts';
import type { Clock } from './outlier-detector';
import { headerValue, type RequestView } from './request-view';
import { CompiledRequestMatch } from './route-table';
import { TokenBucket } from './token-bucket';

/** One window a global limit counts a request in: `requests` per `windowMs` for one key value. */
export interface GlobalRateLimitWindow {
  /** `<policy>/<limit>`: unique within a service. */
  limit: string;
  /** The key value ('' when the limit has no key or the request lacks it). */
  key: string;
  requests: number;
  windowMs: number;
}

/** What the store answers for one request: admitted in every window, or refused by one. */
export interface GlobalRateLimitVerdict {
  allowed: boolean;
  /** Index of the window that refused (-1 when allowed). */
  refused: number;
  /** ms until a request would be admitted again, and until the refusing window's count is spent (0 when allowed). */
  retryAfterMs: number;
  resetMs: number;
  /** Per window, in order: the requests it would still admit after this one (for `RateLimit-Remaining`). */
  remaining: readonly number[];
  /** The store's clock at the decision (ms): window `i` ends `windowMs - now % windowMs` ms later. */
  now: number;
}

/**
 * The port global limits are counted through (Redis in the sidecar): one atomic decision per request
 * for every global limit it matches, all or nothing (the store may decide concurrent requests for
 * the same windows together, as long as each gets the answer it would have got alone, in order).
 * Rejects when the store is unreachable; the limits' `failureMode` then decides. May be called
 * concurrently.
 */
export interface GlobalRateLimitStore {
  consume(windows: GlobalRateLimitWindow[]): Promise<GlobalRateLimitVerdict>;
}

/** A request a rate limit refused: the answer the policy asks for. */
export interface RateLimitRefusal {
  allowed: false;
  policy: string;
  limit: string;
  /** The policy's `response.status` (default 429). */
  status: number;
  /** Names the policy and the limit, and whether the store was unreachable. */
  reason: string;
  /** `Retry-After` and `RateLimit-Limit/-Remaining/-Reset` (draft-ietf-httpapi-ratelimit-headers) when the policy's `sendHeaders`; else empty. */
  headers: Record<string, string>;
}

/**
 * An admitted request that a limit of a policy with `sendHeaders` selected: `RateLimit-Limit`,
 * `RateLimit-Remaining` and `RateLimit-Reset` (seconds) of the tightest such limit (the fewest
 * requests left), for the response, as Envoy's `enable_x_ratelimit_headers` does.
 */
export interface RateLimitAdmission {
  allowed: true;
  headers: Record<string, string>;
}

/** What `RateLimiter.check` answers when it has something to say. */
export type RateLimitDecision = RateLimitRefusal | RateLimitAdmission;

/** Local limits keep a bucket per key value; beyond this many the oldest is forgotten (it comes back full). */
export const MAX_KEYS_PER_LIMIT = 10_000;

const WINDOW_MS = { second: 1_000, minute: 60_000 } as const;

type KeyReader = (req: RequestView) => string;

function compileKey(limit: RateLimit): KeyReader {
  const key = limit.key;
  switch (key?.type) {
    case 'source-identity':
      return (req) => req.principal ?? '';
    case 'header': {
      const name = key.name.toLowerCase();
      return (req) => headerValue(req.headers, name) ?? '';
    }
    case 'path':
      return (req) => req.path;
    case 'client-ip':
      return (req) => req.sourceIp ?? '';
    default:
      return () => '';
  }
}

/** One limit of one policy, compiled: its match, how to read its key, and (local) its buckets. */
class CompiledLimit {
  readonly id: string;
  readonly windowMs: number;
  readonly keyOf: KeyReader;
  readonly match: CompiledRequestMatch | undefined;
  /** Its policy's `response.sendHeaders`: admitted requests it selects carry RateLimit-* headers too. */
  readonly sendsHeaders: boolean;
  /** Local limits only: one bucket per key value, in insertion order (the first is the oldest). */
  readonly buckets = new Map<string, TokenBucket>();

  constructor(
    readonly policy: RateLimitPolicy,
    readonly limit: RateLimit,
    at: string,
  ) {
    this.id = `${policy.name}/${limit.name}`;
    this.windowMs = WINDOW_MS[limit.per];
    this.keyOf = compileKey(limit);
    this.match = limit.match ? new CompiledRequestMatch(limit.match, `${at}.match`) : undefined;
    this.sendsHeaders = policy.response.sendHeaders;
  }

  selects(req: RequestView): boolean {
    return this.match === undefined || this.match.matches(req);
  }

  bucket(key: string, now: number, maxKeys: number): TokenBucket {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
      b = TokenBucket.forRate(this.limit.requests, this.windowMs, now, this.limit.burst ?? this.limit.requests);
      this.buckets.set(key, b);
    }
    return b;
  }

  describe(): string {
    const l = this.limit;
    const key = l.key ? ` per ${l.key.type === 'header' ? `header ${l.key.name}` : l.key.type}` : '';
    return `${l.requests} per ${l.per}${key}${l.scope === 'local' ? ', in each sidecar' : ', across the service'}`;
  }

  refusal(retryAfterMs: number, resetMs: number): RateLimitRefusal {
    const { response } = this.policy;
    return {
      allowed: false,
      policy: this.policy.name,
      limit: this.limit.name,
      status: response.status,
      reason: `rate limit ${this.id} exceeded (${this.describe()})`,
      headers: response.sendHeaders
        ? {
            'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
            'ratelimit-limit': String(this.limit.requests),
            'ratelimit-remaining': '0',
            'ratelimit-reset': String(Math.max(1, Math.ceil(resetMs / 1000))),
          }
        : {},
    };
  }

  /** failureMode closed with the store unreachable. */
  storeDown(): RateLimitRefusal {
    return {
      allowed: false,
      policy: this.policy.name,
      limit: this.limit.name,
      status: this.policy.response.status,
      reason: `rate limit ${this.id}: the rate limit store (Redis) is unreachable and the policy's failureMode is closed`,
      headers: this.policy.response.sendHeaders ? { 'retry-after': '1' } : {},
    };
  }
}

/** Of the limits with `sendHeaders` that admitted a request, the one with the fewest requests left. */
class Tightest {
  constructor(
    readonly limit: CompiledLimit,
    /** Whole requests left after this one. */
    readonly remaining: number,
    /** ms until the limit's budget is whole again (a token bucket full, a window over). */
    readonly resetMs: number,
  ) {}

  admission(): RateLimitAdmission {
    return {
      allowed: true,
      headers: {
        'ratelimit-limit': String(this.limit.limit.requests),
        'ratelimit-remaining': String(this.remaining),
        'ratelimit-reset': String(Math.ceil(this.resetMs / 1000)),
      },
    };
  }
}

/**
 * The RateLimitPolicies of a service, compiled once per snapshot. `check` applies every limit
 * whose `match` selects the request: local ones in this process (token buckets, all or nothing
 * among them), then global ones in one call to the store. It answers synchronously unless a
 * global limit applies. An admitted request that limits with `sendHeaders` selected gets the
 * RateLimit-* headers of the tightest of them (fewest requests left); when none did, the answer is
 * undefined, with nothing allocated for headers. Owns the local buckets; single-threaded use.
 */
export class RateLimiter {
  private readonly locals: CompiledLimit[] = [];
  private readonly globals: CompiledLimit[] = [];
  private readonly store: GlobalRateLimitStore | undefined;
  /** Some global limit's policy sends headers (else the store's remaining counts are not read). */
  private readonly globalHeaders: boolean;

  /** `store` is called once, only when a limit is global (the sidecar connects to Redis then). */
  constructor(
    policies: readonly RateLimitPolicy[],
    private readonly opts: { store?: () => GlobalRateLimitStore; clock?: Clock; maxKeysPerLimit?: number } = {},
  ) {
    policies.forEach((p, i) => {
      p.limits.forEach((l, j) => {
        (l.scope === 'global' ? this.globals : this.locals).push(new CompiledLimit(p, l, `rateLimits[${i}].limits[${j}]`));
      });
    });
    this.globalHeaders = this.globals.some((g) => g.sendsHeaders);
    if (this.globals.length) {
      if (!opts.store) throw new Error('global rate limits need a store');
      this.store = opts.store();
    }
  }

  /**
   * undefined: admitted (and counted), no limit with `sendHeaders` selected it; else admitted with
   * the headers to add to the response, or refused with the answer to send. A promise only when a
   * global limit selects the request.
   */
  check(req: RequestView): RateLimitDecision | undefined | Promise<RateLimitDecision | undefined> {
    let tight: Tightest | undefined;
    if (this.locals.length) {
      const local = this.checkLocal(req);
      if (local instanceof Tightest) tight = local;
      else if (local) return local;
    }
    if (!this.store) return tight?.admission();
    const windows: GlobalRateLimitWindow[] = [];
    const owners: CompiledLimit[] = [];
    for (const g of this.globals) {
      if (!g.selects(req)) continue;
      windows.push({ limit: g.id, key: g.keyOf(req), requests: g.limit.requests, windowMs: g.windowMs });
      owners.push(g);
    }
    if (!windows.length) return tight?.admission();
    return this.store.consume(windows).then(
      (v) => (v.allowed ? this.admitted(owners, v, tight) : owners[v.refused]?.refusal(v.retryAfterMs, v.resetMs)),
      () => owners.find((o) => o.policy.failureMode === 'closed')?.storeDown() ?? tight?.admission(),
    );
  }

  /** A request every selected global limit admitted: the headers of the tightest limit with `sendHeaders`, local or global. */
  private admitted(owners: CompiledLimit[], v: GlobalRateLimitVerdict, local: Tightest | undefined): RateLimitAdmission | undefined {
    let tight = local;
    if (!this.globalHeaders) return tight?.admission();
    for (let i = 0; i < owners.length; i++) {
      const o = owners[i] as CompiledLimit;
      const left = v.remaining[i];
      if (o.sendsHeaders && left !== undefined && !(tight && tight.remaining <= left))
        tight = new Tightest(o, left, o.windowMs - (v.now % o.windowMs));
    }
    return tight?.admission();
  }

  /** A refusal, or admitted (and counted): the tightest selected limit with `sendHeaders`, if any. */
  private checkLocal(req: RequestView): RateLimitRefusal | Tightest | undefined {
    const now = (this.opts.clock ?? performance).now();
    const max = this.opts.maxKeysPerLimit ?? MAX_KEYS_PER_LIMIT;
    let taken: TokenBucket[] | undefined;
    let tight: Tightest | undefined;
    for (const l of this.locals) {
      if (!l.selects(req)) continue;
      const b = l.bucket(l.keyOf(req), now, max);
      const tokens = b.available(now);
      if (tokens < 1) return l.refusal(b.msUntilToken(), b.msUntilFull());
      taken ??= [];
      taken.push(b);
      // What the bucket holds once this request took its token.
      if (l.sendsHeaders && !(tight && tight.remaining <= tokens - 1))
        tight = new Tightest(l, Math.floor(tokens - 1), (b.capacity - tokens + 1) / b.perMs);
    }
    for (const b of taken ?? []) b.tryTake(now);
    return tight;
  }
}

/** The limiter for a snapshot's `inbound.rateLimits`; undefined when there are none, so the plain path skips all of it. */
export function compileRateLimits(
  policies: readonly RateLimitPolicy[],
  opts: ConstructorParameters<typeof RateLimiter>[1] = {},
): RateLimiter | undefined {
  return policies.length ? new RateLimiter(policies, opts) : undefined;
}
