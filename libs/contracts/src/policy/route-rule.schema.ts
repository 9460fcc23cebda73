import { z } from 'zod';
import { SERVICE_NAME_PATTERN } from '../names';
import { duration, labels } from '../service.schema';
import {
  description,
  dnsLabel,
  exactlyOne,
  headerName,
  headerValue,
  isRecord,
  POLICY_LIMITS,
  pathValue,
  percentage,
  RequestMatchSchema,
  targetService,
} from './common.schema';
import { RetryPolicySchema } from './traffic-policy.schema';

/** A named group of a service's endpoints, selected by endpoint labels (e.g. `version: v2`). */
export const SubsetSchema = z.strictObject({
  name: dnsLabel,
  labels: labels.refine((l) => Object.keys(l).length > 0, 'must select at least one label'),
});
export type Subset = z.output<typeof SubsetSchema>;

/**
 * Weighted split of a route's traffic across subsets (a canary). Weights are whole percents
 * summing to 100; a single subset may leave its weight out (100).
 */
export const SplitSchema = z
  .array(z.strictObject({ subset: dnsLabel, weight: z.number().int().min(0).max(100).optional() }))
  .min(1)
  .max(POLICY_LIMITS.split)
  .superRefine((entries, ctx) => {
    entries.forEach((e, i) => {
      const first = entries.findIndex((o) => o.subset === e.subset);
      if (first !== i) ctx.addIssue({ code: 'custom', path: [i, 'subset'], message: `duplicates split[${first}].subset "${e.subset}"` });
    });
    if (entries.length === 1) {
      const only = entries[0];
      if (only?.weight !== undefined && only.weight !== 100)
        ctx.addIssue({ code: 'custom', path: [0, 'weight'], message: `must be 100 for a single subset (received ${only.weight})` });
      return;
    }
    const missing = entries.map((e, i) => (e.weight === undefined ? i : -1)).filter((i) => i >= 0);
    for (const i of missing)
      ctx.addIssue({ code: 'custom', path: [i, 'weight'], message: 'is required when splitting across more than one subset' });
    if (missing.length) return;
    const sum = entries.reduce((s, e) => s + (e.weight ?? 0), 0);
    if (sum !== 100) ctx.addIssue({ code: 'custom', message: `weights must sum to 100 (they sum to ${sum})` });
  })
  .transform((entries) => entries.map((e) => ({ subset: e.subset, weight: e.weight ?? 100 })));

/**
 * Headers a route may not set, add or remove: they frame the message or belong to one connection,
 * and the sidecar writes them itself (a changed Content-Length would make part of a body read as
 * another request). Refused when a policy is applied (libs/policy validatePolicy), not by this
 * schema: it also reads what was stored before the rule existed, which must keep working.
 */
export const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
]);

const headerMap = z
  .record(headerName, headerValue)
  .refine((m) => Object.keys(m).length <= POLICY_LIMITS.headerOps, `must have at most ${POLICY_LIMITS.headerOps} headers`);

/** `set` replaces a header, `add` appends a value, `remove` drops it. */
export const HeaderOperationsSchema = z.strictObject({
  set: headerMap.optional(),
  add: headerMap.optional(),
  remove: z.array(headerName).min(1).max(POLICY_LIMITS.headerOps).optional(),
});

export const RouteHeadersSchema = z.strictObject({
  request: HeaderOperationsSchema.optional(),
  response: HeaderOperationsSchema.optional(),
});

/** `path` replaces the whole path; `prefix` replaces the part matched by `match.path.prefix`. */
export const RewriteSchema = z
  .strictObject({ path: pathValue.optional(), prefix: pathValue.optional() })
  .superRefine(exactlyOne(['path', 'prefix'], 'what to rewrite'));

/** Copies a percentage of the route's requests to a subset; responses of the copies are dropped. */
export const MirrorSchema = z.strictObject({ subset: dnsLabel, percentage: percentage.default(100) });

/**
 * An injected abort: HTTP callers get `httpStatus`; gRPC callers (content-type application/grpc…)
 * get a trailers-only response with `grpcStatus` (0–16, Envoy's `abort.grpc_status`), or without
 * it the gRPC status that gRPC's HTTP-to-status mapping gives `httpStatus`.
 */
export const FaultAbortSchema = z.strictObject({
  httpStatus: z.number().int().min(200).max(599),
  grpcStatus: z.number().int().min(0).max(16).optional(),
  percentage: percentage.default(100),
});

/** Fault injection for chaos testing: delay and/or abort a percentage of requests. */
export const FaultSchema = z
  .strictObject({
    delay: z.strictObject({ fixedDelay: duration(1, 600_000), percentage: percentage.default(100) }).optional(),
    abort: FaultAbortSchema.optional(),
  })
  .superRefine((f, ctx) => {
    if (!f.delay && !f.abort) ctx.addIssue({ code: 'custom', message: 'must have a delay, an abort or both' });
  });

/** One HTTP route: the first route (in order) whose match fits a request handles it. */
export const RouteSchema = z
  .strictObject({
    name: dnsLabel.optional(),
    /** Every condition must hold; no conditions match every request. */
    match: RequestMatchSchema.default({}),
    /** Where the traffic goes; without a split, to every endpoint of the service. */
    split: SplitSchema.optional(),
    headers: RouteHeadersSchema.optional(),
    rewrite: RewriteSchema.optional(),
    mirror: MirrorSchema.optional(),
    /** Overrides the TrafficPolicy's request timeout for this route. */
    timeout: duration(1, 86_400_000).optional(),
    /** Overrides the TrafficPolicy's retries for this route. */
    retries: RetryPolicySchema.optional(),
    fault: FaultSchema.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.rewrite?.prefix !== undefined && r.match.path?.prefix === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['rewrite', 'prefix'],
        message: 'needs match.path.prefix: a prefix rewrite replaces the matched prefix',
      });
  });
export type Route = z.output<typeof RouteSchema>;

const isName = (v: unknown): v is string => typeof v === 'string' && SERVICE_NAME_PATTERN.test(v);

/**
 * Cross-field checks of a RouteRule: subset and route names are unique, every subset a route
 * splits to or mirrors to is defined. Runs even when other fields failed, so every problem is
 * reported at once; it therefore reads the (possibly partial) value defensively.
 */
function checkReferences(rule: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(rule)) return;
  const defined = new Map<string, number>();
  const subsetsOk = Array.isArray(rule.subsets);
  if (Array.isArray(rule.subsets))
    rule.subsets.forEach((s: unknown, i) => {
      if (!isRecord(s) || !isName(s.name)) return;
      const prev = defined.get(s.name);
      if (prev !== undefined)
        ctx.addIssue({ code: 'custom', path: ['subsets', i, 'name'], message: `duplicates subsets[${prev}].name "${s.name}"` });
      else defined.set(s.name, i);
    });
  const ref = (subset: unknown, path: (string | number)[]) => {
    if (!subsetsOk || !isName(subset) || defined.has(subset)) return;
    ctx.addIssue({
      code: 'custom',
      path,
      message: defined.size
        ? `subset "${subset}" is not defined (subsets: ${[...defined.keys()].join(', ')})`
        : `subset "${subset}" is not defined: this RouteRule has no subsets`,
    });
  };
  if (!Array.isArray(rule.routes)) return;
  const routeNames = new Map<string, number>();
  rule.routes.forEach((r: unknown, i) => {
    if (!isRecord(r)) return;
    if (isName(r.name)) {
      const prev = routeNames.get(r.name);
      if (prev !== undefined)
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `duplicates routes[${prev}].name "${r.name}"` });
      else routeNames.set(r.name, i);
    }
    if (Array.isArray(r.split))
      r.split.forEach((e: unknown, j) => {
        if (isRecord(e)) ref(e.subset, ['routes', i, 'split', j, 'subset']);
      });
    if (isRecord(r.mirror)) ref(r.mirror.subset, ['routes', i, 'mirror', 'subset']);
  });
}

/**
 * Ordered HTTP routes of one service, like an Istio VirtualService's `http` routes, with the
 * subsets they route to. Several RouteRules may target a service; their routes are evaluated
 * rule by rule in name order.
 */
export const RouteRuleSchema = z
  .strictObject({
    kind: z.literal('RouteRule'),
    name: dnsLabel,
    serviceName: targetService,
    description: description.optional(),
    subsets: z.array(SubsetSchema).max(POLICY_LIMITS.subsets).default([]),
    routes: z.array(RouteSchema).min(1).max(POLICY_LIMITS.routes),
  })
  .superRefine(checkReferences, { when: () => true });
export type RouteRule = z.output<typeof RouteRuleSchema>;
export type RouteRuleInput = z.input<typeof RouteRuleSchema>;
