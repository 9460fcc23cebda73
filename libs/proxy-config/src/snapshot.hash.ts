import { hash } from 'node:crypto';
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
  return sha256Hex(canonicalJson({ service, inbound, upstreams, trust }));
}

/** SHA-256 of `text` (UTF-8), lower-case hex. */
export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/**
 * `canonicalJson({ service, inbound, upstreams, trust })` assembled from the canonical JSON of its
 * parts (what the compiler memoizes), byte for byte: the members in canonicalJson's sorted key
 * order (inbound, service, trust, upstreams), `trust` left out when there is none. So
 * `sha256Hex(joinSnapshotJson(…))` is `hashSnapshot` of the same content without walking the
 * parts shared by many snapshots again.
 */
export function joinSnapshotJson(service: string, inboundJson: string, upstreamJsons: readonly string[], trustJson?: string): string {
  const trust = trustJson === undefined ? '' : `"trust":${trustJson},`;
  return `{"inbound":${inboundJson},"service":${JSON.stringify(service)},${trust}"upstreams":[${upstreamJsons.join(',')}]}`;
}

/**
 * The JSON of a whole snapshot (ProxySnapshotV1) from its content's canonical JSON and the members
 * outside the hash, appended: what a publisher sends, without serializing the content again.
 */
export function snapshotMessageJson(canonical: string, meta: { version: number; hash: string; createdAt: string }): string {
  if (!canonical.startsWith('{"inbound":') || !canonical.endsWith('}'))
    throw new RangeError('not the canonical JSON of a snapshot content');
  return `${canonical.slice(0, -1)},"version":${JSON.stringify(meta.version)},"hash":${JSON.stringify(meta.hash)},"createdAt":${JSON.stringify(meta.createdAt)}}`;
}
