import { z } from 'zod';
import { port } from '../service.schema';
import { description, dnsLabel, headerName, httpMethods, POLICY_LIMITS, StringMatchSchema, targetServiceOrMesh } from './common.schema';

export const AUTHORIZATION_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;
export type AuthorizationAction = (typeof AUTHORIZATION_ACTIONS)[number];

/**
 * `spiffe://<trust-domain>/<path>`, or a prefix ending in `/*` (`spiffe://td/ns/shop/*`), or
 * `*` for any authenticated peer. Segments follow the SPIFFE ID spec.
 */
const SPIFFE_PRINCIPAL = /^spiffe:\/\/[a-z0-9._-]{1,255}(\/(?!\.\.?(\/|$))[A-Za-z0-9._-]+)*(\/\*)?$/;
export const spiffePrincipal = z
  .string()
  .max(2048)
  .refine(
    (v) => v === '*' || SPIFFE_PRINCIPAL.test(v),
    'must be a SPIFFE ID (spiffe://<trust-domain>/<path>), a prefix ending in "/*", or "*"',
  );

/** `/exact/path`, a prefix `/api/*`, or `*` for any path. */
export const authorizationPath = z
  .string()
  .max(POLICY_LIMITS.stringValue)
  .refine(
    (v) => v === '*' || (v.startsWith('/') && !v.slice(0, -1).includes('*')),
    'must be a path starting with "/", optionally ending in "*" for a prefix, or "*"',
  );

const list = <T extends z.ZodType>(item: T) => z.array(item).min(1).max(POLICY_LIMITS.ruleEntries);

/**
 * One rule: matches when the request comes `from` any listed principal or namespace, goes `to`
 * any listed path, method and port, and `when` all header conditions hold. Omitted parts match
 * everything; a rule matches when all its parts do.
 */
export const AuthorizationRuleSchema = z.strictObject({
  from: z
    .strictObject({
      principals: list(spiffePrincipal).optional(),
      /** Namespaces of the callers' SPIFFE IDs (`spiffe://td/ns/<namespace>/...`). */
      namespaces: list(dnsLabel).optional(),
    })
    .optional(),
  to: z
    .strictObject({
      paths: list(authorizationPath).optional(),
      methods: httpMethods.optional(),
      ports: list(port).optional(),
    })
    .optional(),
  when: z
    .strictObject({
      headers: z
        .record(headerName, StringMatchSchema)
        .refine((r) => Object.keys(r).length <= POLICY_LIMITS.matchEntries, `must have at most ${POLICY_LIMITS.matchEntries} entries`),
    })
    .optional(),
});
export type AuthorizationRule = z.output<typeof AuthorizationRuleSchema>;

/**
 * Who may call a service (or, with `serviceName: '*'`, every service). A request matching a
 * DENY policy is refused before any ALLOW policy is looked at; AUDIT policies only log.
 * `defaultAction` decides requests no rule matched (see EffectivePolicyV1.authorization).
 * An ALLOW policy without rules matches nothing.
 */
export const AuthorizationPolicySchema = z.strictObject({
  kind: z.literal('AuthorizationPolicy'),
  name: dnsLabel,
  serviceName: targetServiceOrMesh,
  description: description.optional(),
  action: z.enum(AUTHORIZATION_ACTIONS),
  defaultAction: z.enum(['ALLOW', 'DENY']).optional(),
  rules: z.array(AuthorizationRuleSchema).max(POLICY_LIMITS.authorizationRules).default([]),
});
export type AuthorizationPolicy = z.output<typeof AuthorizationPolicySchema>;
export type AuthorizationPolicyInput = z.input<typeof AuthorizationPolicySchema>;
