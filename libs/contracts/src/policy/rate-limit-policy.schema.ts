import { z } from 'zod';
import { description, dnsLabel, headerName, POLICY_LIMITS, RequestMatchSchema, targetService } from './common.schema';

export const RATE_LIMIT_KEY_TYPES = ['source-identity', 'header', 'path', 'client-ip'] as const;
export type RateLimitKeyType = (typeof RATE_LIMIT_KEY_TYPES)[number];

/** What a limit counts separately: each caller identity (SPIFFE ID), header value, path or client IP. */
export const RateLimitKeySchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('source-identity') }),
  z.strictObject({ type: z.literal('header'), name: headerName }),
  z.strictObject({ type: z.literal('path') }),
  z.strictObject({ type: z.literal('client-ip') }),
]);
export type RateLimitKey = z.output<typeof RateLimitKeySchema>;

/**
 * One limit: `requests` per `per` for each key. `local` limits are token buckets in each
 * sidecar (capacity `burst`, default `requests`); `global` limits are counted in Redis and
 * shared by every sidecar of the service.
 */
export const RateLimitSchema = z
  .strictObject({
    name: dnsLabel,
    scope: z.enum(['local', 'global']).default('local'),
    requests: z.number().int().min(1).max(1_000_000_000),
    per: z.enum(['second', 'minute']),
    burst: z.number().int().min(1).max(1_000_000_000).optional(),
    /** Without a key, all requests of the service share one budget (per sidecar when local). */
    key: RateLimitKeySchema.optional(),
    /** Without a match, the limit applies to every request. */
    match: RequestMatchSchema.optional(),
  })
  .superRefine((l, ctx) => {
    if (l.scope === 'global' && l.burst !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['burst'],
        message: 'only local limits have a burst (global limits count requests per window)',
      });
  });
export type RateLimit = z.output<typeof RateLimitSchema>;

export const RateLimitPolicySchema = z.strictObject({
  kind: z.literal('RateLimitPolicy'),
  name: dnsLabel,
  serviceName: targetService,
  description: description.optional(),
  limits: z
    .array(RateLimitSchema)
    .min(1)
    .max(POLICY_LIMITS.rateLimits)
    .superRefine((ls, ctx) => {
      ls.forEach((l, i) => {
        const first = ls.findIndex((o) => o.name === l.name);
        if (first !== i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicates limits[${first}].name "${l.name}"` });
      });
    }),
  /** What a limited request gets: `status` (default 429) and, when `sendHeaders`, `Retry-After` and `RateLimit-*` headers. */
  response: z
    .strictObject({ status: z.number().int().min(400).max(599).default(429), sendHeaders: z.boolean().default(true) })
    .default({ status: 429, sendHeaders: true }),
  /** Global limits when Redis is unreachable: `open` lets requests through, `closed` refuses them. */
  failureMode: z.enum(['open', 'closed']).default('open'),
});
export type RateLimitPolicy = z.output<typeof RateLimitPolicySchema>;
export type RateLimitPolicyInput = z.input<typeof RateLimitPolicySchema>;
