/**
 * Redis key layout. Renaming a key loses live health state across an upgrade: add a new key
 * and migrate instead.
 */
export const redisKeys = {
  /** Hash: endpoint id → JSON `CheckState` of active health checks. */
  health: (service: string) => `mesh:health:{${service}}`,
  /** Hash: endpoint id → last heartbeat (epoch ms). */
  heartbeats: (service: string) => `mesh:hb:{${service}}`,
  /** Sorted set: discovery replica id → last seen (epoch ms). */
  members: (group: string) => `mesh:members:${group}`,
  /** String with expiry: which replica runs one check in one interval slot. */
  checkClaim: (service: string, endpointId: string, slot: number) => `mesh:hc:claim:{${service}}:${endpointId}:${slot}`,
} as const;
