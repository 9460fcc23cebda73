import { z } from 'zod';
import { AuthorizationPolicySchema } from './authorization-policy.schema';
import { MTLS_MODES, MutualTLSPolicySchema } from './mutual-tls-policy.schema';
import { RateLimitPolicySchema } from './rate-limit-policy.schema';
import { RouteRuleSchema } from './route-rule.schema';
import { TrafficPolicySchema } from './traffic-policy.schema';

/** Policy kinds; a kind and a name identify a policy (KV key `<kind>.<name>`). Additions only within v1. */
export const POLICY_KINDS = ['TrafficPolicy', 'RouteRule', 'RateLimitPolicy', 'AuthorizationPolicy', 'MutualTLSPolicy'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/**
 * Any policy, told apart by `kind`. Parsing normalizes: durations become milliseconds, the
 * seed's string maps become the typed form, defaults are filled in. The output parses again to
 * itself, so a stored policy can be re-validated at any time.
 */
export const PolicySchema = z.discriminatedUnion('kind', [
  TrafficPolicySchema,
  RouteRuleSchema,
  RateLimitPolicySchema,
  AuthorizationPolicySchema,
  MutualTLSPolicySchema,
]);
export type Policy = z.output<typeof PolicySchema>;
export type PolicyInput = z.input<typeof PolicySchema>;

/** Published on mesh.v1.config.policy.<service>, last value per subject. */
export const EffectivePolicyV1 = z.object({
  service: z.string(),
  /** Grows with every change of the effective policy of this service. */
  revision: z.number().int(),
  /** The service's TrafficPolicy; when several target it, the most recently revised one. */
  traffic: TrafficPolicySchema.nullable(),
  /** Every RouteRule of the service, sorted by name; routes are evaluated rule by rule in this order. */
  routes: z.array(RouteRuleSchema),
  /** Every RateLimitPolicy of the service, sorted by name; all of them apply. */
  rateLimits: z.array(RateLimitPolicySchema),
  authorization: z.object({
    /**
     * What happens to a request no policy decided: the `defaultAction` set by the service's own
     * policies (DENY if they disagree), else by mesh-wide ones, else DENY when an ALLOW policy
     * applies (as in Istio) and ALLOW otherwise.
     */
    defaultAction: z.enum(['ALLOW', 'DENY']),
    /** Mesh-wide policies first, then the service's, each sorted by name. DENY is evaluated before ALLOW regardless of order. */
    policies: z.array(AuthorizationPolicySchema),
  }),
  /** The service's own MutualTLSPolicy wins over a mesh-wide one; `source` is its key, null for the default (permissive). */
  mtls: z.object({
    mode: z.enum(MTLS_MODES),
    source: z.string().nullable(),
    /** Bring-your-own certificate files, when the service's MutualTLSPolicy names them. */
    certificates: z.object({ certPath: z.string(), keyPath: z.string(), caPath: z.string() }).optional(),
  }),
  /** Every policy that contributed, by kind (POLICY_KINDS order) then name. */
  sources: z.array(z.object({ kind: z.string(), name: z.string(), revision: z.number() })),
  updatedAt: z.string(),
});
export type EffectivePolicyV1 = z.output<typeof EffectivePolicyV1>;
