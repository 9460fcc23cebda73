import { createHash } from 'node:crypto';
import type { ProxySnapshotV1 } from '@novamesh/contracts';
import { canonicalJson } from './canonical-json';

/** What a snapshot says, without its version, hash and creation time: what the hash covers. */
export type SnapshotContent = Pick<ProxySnapshotV1, 'service' | 'inbound' | 'upstreams' | 'trust'>;

/**
 * SHA-256 (lower-case hex) of the canonical JSON (sorted keys) of `{ service, inbound, upstreams,
 * trust }`. Any other member of `content` (version, hash, createdAt) is ignored, so a whole
 * snapshot may be passed. Deterministic: the same content gives the same hash on every replica.
 */
export function hashSnapshot(content: SnapshotContent): string {
  const { service, inbound, upstreams, trust } = content;
  return createHash('sha256').update(canonicalJson({ service, inbound, upstreams, trust })).digest('hex');
}
