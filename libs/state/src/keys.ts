import { createHash } from 'node:crypto';

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
  /**
   * Hash {w: window index, c: count in it, p: count in the previous one}, expiring after two
   * windows: one global rate limit (`<policy>/<limit>`) of a service for one key value. Values
   * longer than 128 characters are replaced by their SHA-256, so a key stays small.
   */
  rateLimit: (service: string, limit: string, keyValue: string) =>
    `novamesh:rl:${service}:${limit}:${keyValue.length > 128 ? `sha256:${createHash('sha256').update(keyValue).digest('hex')}` : keyValue}`,
} as const;
