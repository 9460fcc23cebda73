import { z } from 'zod';
import { duration } from '../service.schema';
import { description, dnsLabel, exactlyOne, headerName, httpStatus, queryParamName, TOKEN, targetService } from './common.schema';
import { normalizeHashKey, normalizeLoadBalancing, normalizeSeedObject } from './seed';

/** The seed's form of a TrafficPolicy section: a map of string values (`{ "max_connections": "100" }`). */
export type SeedStringMap = Record<string, string>;

/**
 * Wraps a schema so it also takes the seed's string-map form (see seed.ts); the input type
 * accepts the typed form or a string map, the output is always the typed form.
 */
function seedForm<S extends z.ZodType>(schema: S, normalize: (v: unknown) => unknown = normalizeSeedObject) {
  return z.preprocess(normalize, schema) as unknown as z.ZodType<z.output<S>, z.input<S> | SeedStringMap>;
}

const count = (min: number, max = 1_000_000) => z.number().int().min(min).max(max);

export const RETRY_ON_CONDITIONS = [
  'connect-failure',
  'refused-stream',
  'unavailable',
  '5xx',
  'gateway-error',
  'reset',
  'retriable-status-codes',
] as const;
export type RetryOnCondition = (typeof RETRY_ON_CONDITIONS)[number];

export const RetryBackoffSchema = seedForm(
  z
    .strictObject({
      /** First retry waits up to this long; each next one doubles, up to maxInterval. */
      baseInterval: duration(1, 60_000).default(25),
      /** Default 10 × baseInterval. */
      maxInterval: duration(1, 300_000).optional(),
      /** Randomize each wait between 0 and the interval (full jitter). */
      jitter: z.boolean().default(true),
    })
    .superRefine((b, ctx) => {
      if (b.maxInterval !== undefined && b.maxInterval < b.baseInterval)
        ctx.addIssue({ code: 'custom', path: ['maxInterval'], message: `must not be shorter than baseInterval (${b.baseInterval}ms)` });
    }),
);

export const RetryBudgetSchema = seedForm(
  z.strictObject({
    /** Retries may add at most this fraction of the live (non-retry) requests, 0 < ratio ≤ 1. */
    ratio: z.number().gt(0).max(1),
    /** ...but at least this many retries per second are always allowed. */
    minRetriesPerSecond: count(0, 100_000).default(10),
  }),
);

/** Retries of a TrafficPolicy, or of one route of a RouteRule (which then override the policy's). */
export const RetryPolicySchema = seedForm(
  z
    .strictObject({
      /** Retries after the first try; 0 disables retries. */
      attempts: count(0, 10),
      perTryTimeout: duration(1, 3_600_000).optional(),
      retryOn: z.array(z.enum(RETRY_ON_CONDITIONS)).min(1).max(RETRY_ON_CONDITIONS.length).optional(),
      /** Used with retryOn `retriable-status-codes`. */
      retriableStatusCodes: z.array(httpStatus).min(1).max(32).optional(),
      backoff: RetryBackoffSchema.optional(),
      budget: RetryBudgetSchema.optional(),
      /**
       * Retry POST and PATCH after a response or a reset too, like the idempotent methods. Off by
       * default: they are retried only when they provably never reached the application (no
       * connection, refused stream) or a gRPC server answered UNAVAILABLE. Set it only for
       * upstreams whose non-idempotent endpoints are safe to repeat (idempotency keys).
       */
      retryNonIdempotent: z.boolean().optional(),
    })
    .superRefine((r, ctx) => {
      r.retryOn?.forEach((c, i) => {
        if (r.retryOn?.indexOf(c) !== i) ctx.addIssue({ code: 'custom', path: ['retryOn', i], message: `duplicates "${c}"` });
      });
      const wantsCodes = r.retryOn?.includes('retriable-status-codes') ?? false;
      if (wantsCodes && !r.retriableStatusCodes)
        ctx.addIssue({
          code: 'custom',
          path: ['retriableStatusCodes'],
          message: 'is required when retryOn includes "retriable-status-codes"',
        });
      if (!wantsCodes && r.retriableStatusCodes)
        ctx.addIssue({
          code: 'custom',
          path: ['retriableStatusCodes'],
          message: 'is only used when retryOn includes "retriable-status-codes"; add it there',
        });
    }),
);
export type RetryPolicy = z.output<typeof RetryPolicySchema>;

export const LOAD_BALANCING_ALGORITHMS = ['round-robin', 'least-request', 'random', 'weighted', 'ring-hash', 'maglev'] as const;
export type LoadBalancingAlgorithm = (typeof LOAD_BALANCING_ALGORITHMS)[number];

/** What consistent hashing (ring-hash, maglev) hashes on. */
export const HashKeySchema = z.preprocess(
  normalizeHashKey,
  z
    .strictObject(
      {
        header: headerName.optional(),
        cookie: z.string().regex(TOKEN, 'must be a cookie name').optional(),
        queryParameter: queryParamName.optional(),
        sourceIp: z.literal(true).optional(),
      },
      {
        error: (iss) =>
          iss.code === 'invalid_type' && iss.input === undefined
            ? 'is required: ring-hash and maglev need a hashKey (header, cookie, queryParameter or sourceIp)'
            : undefined,
      },
    )
    .superRefine(exactlyOne(['header', 'cookie', 'queryParameter', 'sourceIp'], 'what to hash on')),
) as unknown as z.ZodType<
  { header?: string; cookie?: string; queryParameter?: string; sourceIp?: true },
  { header?: string; cookie?: string; queryParameter?: string; sourceIp?: true } | string
>;
export type HashKey = z.output<typeof HashKeySchema>;

const MAX_RING = 8_388_608;
const MAX_MAGLEV_TABLE = 5_000_011;

/** Trial division; sizes out of range are left to the range check (refinements still run after it). */
function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n > MAX_MAGLEV_TABLE) return true;
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

const loadBalancingUnion = z.discriminatedUnion('algorithm', [
  z.strictObject({ algorithm: z.literal('round-robin') }),
  /** Power of `choiceCount` random choices, picking the endpoint with fewer active requests. */
  z.strictObject({ algorithm: z.literal('least-request'), choiceCount: count(2, 100).default(2) }),
  z.strictObject({ algorithm: z.literal('random') }),
  /** Weighted round robin over the endpoints' registered weights. */
  z.strictObject({ algorithm: z.literal('weighted') }),
  z
    .strictObject({
      algorithm: z.literal('ring-hash'),
      hashKey: HashKeySchema,
      minRingSize: count(1, MAX_RING).default(1024),
      maxRingSize: count(1, MAX_RING).default(MAX_RING),
    })
    .superRefine((lb, ctx) => {
      if (lb.minRingSize > lb.maxRingSize)
        ctx.addIssue({ code: 'custom', path: ['minRingSize'], message: `must not be larger than maxRingSize (${lb.maxRingSize})` });
    }),
  z.strictObject({
    algorithm: z.literal('maglev'),
    hashKey: HashKeySchema,
    /** Lookup table size; must be prime. */
    tableSize: count(2, MAX_MAGLEV_TABLE).refine(isPrime, 'must be a prime number (e.g. 65537, the default)').default(65_537),
  }),
]);
export type LoadBalancing = z.output<typeof loadBalancingUnion>;

/** The typed object, or (the seed's form) an algorithm name such as `"ROUND_ROBIN"` or `"least_request"`. */
export const LoadBalancingSchema = z.preprocess(normalizeLoadBalancing, loadBalancingUnion) as unknown as z.ZodType<
  LoadBalancing,
  z.input<typeof loadBalancingUnion> | SeedStringMap | string
>;

export const CircuitBreakingSchema = seedForm(
  z.strictObject({
    maxConnections: count(1).optional(),
    maxPendingRequests: count(1).optional(),
    maxRequests: count(1).optional(),
    /** Concurrent retries across the service; 0 forbids retries. */
    maxRetries: count(0).optional(),
  }),
);
export type CircuitBreaking = z.output<typeof CircuitBreakingSchema>;

/** Ejects an endpoint from the load-balancing set after consecutive failures. */
export const OutlierDetectionSchema = seedForm(
  z.strictObject({
    consecutive5xx: count(1, 1000).default(5),
    consecutiveGatewayErrors: count(1, 1000).optional(),
    interval: duration(100, 3_600_000).default(10_000),
    baseEjectionTime: duration(100, 86_400_000).default(30_000),
    maxEjectionPercent: count(0, 100).default(10),
  }),
);
export type OutlierDetection = z.output<typeof OutlierDetectionSchema>;

export const TimeoutsSchema = seedForm(
  z.strictObject({
    connect: duration(1, 300_000).optional(),
    request: duration(1, 86_400_000).optional(),
    idle: duration(1, 86_400_000).optional(),
  }),
);
export type Timeouts = z.output<typeof TimeoutsSchema>;

/**
 * How a service's clients reach it: load balancing, circuit breaking, outlier detection,
 * timeouts and retries. One TrafficPolicy per service; durations are milliseconds once parsed.
 */
export const TrafficPolicySchema = z.strictObject({
  kind: z.literal('TrafficPolicy'),
  name: dnsLabel,
  serviceName: targetService,
  description: description.optional(),
  loadBalancing: LoadBalancingSchema.optional(),
  circuitBreaking: CircuitBreakingSchema.optional(),
  outlierDetection: OutlierDetectionSchema.optional(),
  timeouts: TimeoutsSchema.optional(),
  retries: RetryPolicySchema.optional(),
});
export type TrafficPolicy = z.output<typeof TrafficPolicySchema>;
export type TrafficPolicyInput = z.input<typeof TrafficPolicySchema>;
