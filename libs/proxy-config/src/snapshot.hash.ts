import { createHash, hash } from 'node:crypto';
import { appendJsonMembers, type ProxySnapshotV1 } from '@novamesh/contracts';
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
 * What `snapshotMessageJson` appends to the content's canonical JSON (through `appendJsonMembers`, in
 * this order): the members outside the hash. The spec of `hashMatchesAsSent` holds the two together.
 */
const SENT_SUFFIX = /^,"version":\d{1,16},"hash":"([0-9a-f]{64})","createdAt":"[^"\\]*"\}$/;
/** How the canonical JSON of a snapshot content begins (its first member in sorted order). */
const CONTENT_START = '{"inbound":';
const CONTENT_START_BYTES = Buffer.from(CONTENT_START);
const SUFFIX_START_BYTES = Buffer.from(',"version":');
const CLOSING_BRACE = Buffer.from('}');
/** Longest suffix `snapshotMessageJson` writes, with room for a long createdAt. */
const MAX_SUFFIX = 256;
/** From this content size on, the content is hashed in place instead of copied with its closing brace. */
const STREAM_HASH_FROM = 16 * 1024;

/**
 * The JSON of a whole snapshot (ProxySnapshotV1) from its content's canonical JSON and the members
 * outside the hash, appended: what a publisher sends, without serializing the content again.
 */
export function snapshotMessageJson(canonical: string, meta: { version: number; hash: string; createdAt: string }): string {
  if (!canonical.startsWith(CONTENT_START) || !canonical.endsWith('}'))
    throw new RangeError('not the canonical JSON of a snapshot content');
  return appendJsonMembers(canonical, { version: meta.version, hash: meta.hash, createdAt: meta.createdAt });
}

/**
 * Whether `message` — a snapshot message's bytes or text — carries `declared` as its hash in the
 * layout `snapshotMessageJson` sends (the content's canonical JSON, then version, hash and
 * createdAt appended) and the content part before them hashes to it: the hash check of a received
 * snapshot over the bytes it already has, instead of canonicalizing the parsed content again.
 * False for any other layout (a message built by hand or by another publisher); the caller then
 * falls back to `hashSnapshot` of the parsed snapshot. It proves only that the bytes are what was
 * hashed: a caller must also know that what it applies is exactly what the bytes say (see
 * `keptAsIs`), or a member its schema drops or a default it fills in would go unnoticed.
 */
export function hashMatchesAsSent(message: string | Uint8Array, declared: string): boolean {
  const bytes =
    typeof message === 'string' ? Buffer.from(message, 'utf8') : Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (
    bytes.length < CONTENT_START_BYTES.length ||
    bytes.compare(CONTENT_START_BYTES, 0, CONTENT_START_BYTES.length, 0, CONTENT_START_BYTES.length) !== 0
  )
    return false;
  const at = bytes.lastIndexOf(SUFFIX_START_BYTES);
  if (at < Math.max(CONTENT_START_BYTES.length, bytes.length - MAX_SUFFIX)) return false;
  const suffix = SENT_SUFFIX.exec(bytes.toString('latin1', at));
  if (!suffix || suffix[1] !== declared) return false;
  const content = bytes.subarray(0, at);
  // Small messages: one copy and a one-shot hash is cheaper than a streaming hash object.
  const digest =
    at < STREAM_HASH_FROM
      ? hash('sha256', Buffer.concat([content, CLOSING_BRACE], at + 1), 'hex')
      : createHash('sha256').update(content).update(CLOSING_BRACE).digest('hex');
  return digest === declared;
}

/**
 * Whether `output` (what a schema made of a parsed message) holds exactly what `input` (the parsed
 * message) held: the same members at every level, none dropped and none added, and equal values.
 * Then the applied snapshot is the received content, and a hash over the received bytes covers it.
 */
export function keptAsIs(input: unknown, output: unknown): boolean {
  if (input === output) return true;
  if (typeof input !== 'object' || typeof output !== 'object' || input === null || output === null) return false;
  if (Array.isArray(input)) {
    if (!Array.isArray(output) || output.length !== input.length) return false;
    for (let i = 0; i < input.length; i++) if (!keptAsIs(input[i], output[i])) return false;
    return true;
  }
  if (Array.isArray(output)) return false;
  const a = input as Record<string, unknown>;
  const b = output as Record<string, unknown>;
  let count = 0;
  for (const key in b) {
    if (!Object.hasOwn(a, key) || !keptAsIs(a[key], b[key])) return false;
    count++;
  }
  return count === Object.keys(a).length;
}
