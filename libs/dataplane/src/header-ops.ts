import type { SnapshotRouteV1 } from '@novamesh/contracts';

/** A route's `headers.request` or `headers.response` as the policy states it. */
export type HeaderOperations = NonNullable<NonNullable<SnapshotRouteV1['headers']>['request']>;

/** Header operations with lower-case names, compiled once per snapshot. Immutable. */
export interface CompiledHeaderOps {
  readonly remove: readonly string[];
  readonly set: readonly (readonly [name: string, value: string])[];
  readonly add: readonly (readonly [name: string, value: string])[];
}

/** Lower-cases the names once, so applying the operations costs no string work per request. */
export function compileHeaderOps(ops: HeaderOperations): CompiledHeaderOps {
  const pairs = (m: Record<string, string> | undefined) =>
    Object.freeze(Object.entries(m ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const));
  return Object.freeze({ remove: Object.freeze((ops.remove ?? []).map((n) => n.toLowerCase())), set: pairs(ops.set), add: pairs(ops.add) });
}

/**
 * Applies operations to a header record with lower-case names (node:http's form), in place, in
 * Envoy's order: remove, then set (replaces), then add (appends a value). Returns `headers`.
 */
export function applyHeaderOps<H extends Record<string, string | string[] | undefined>>(headers: H, ops: CompiledHeaderOps): H {
  const h = headers as Record<string, string | string[] | undefined>;
  for (const name of ops.remove) delete h[name];
  for (const [name, value] of ops.set) h[name] = value;
  for (const [name, value] of ops.add) {
    const old = h[name];
    h[name] = old === undefined ? value : typeof old === 'string' ? [old, value] : [...old, value];
  }
  return headers;
}
