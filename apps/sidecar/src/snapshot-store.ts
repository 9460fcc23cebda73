import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ACK_REASON_MAX, type ProxyAckV1, ProxySnapshotV1 } from '@novamesh/contracts';
import { hashMatchesAsSent, hashSnapshot, keptAsIs, takesSnapshot } from '@novamesh/proxy-config';

/** Why a snapshot was not applied; the sidecar keeps serving the one it has. */
export interface Rejection {
  version: number;
  hash: string;
  reason: string;
}

const FILE = 'snapshot.json';
/**
 * Creates the data directory (0700) when missing and checks it is this process's own: it holds the
 * snapshot the sidecar serves from at start and its private key, so a directory another user owns,
 * or any user may write to, would let them choose both. Returns what is wrong, or undefined.
 */
export async function checkDataDir(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await stat(dir);
    if (!st.isDirectory()) return `"${dir}" is not a directory`;
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid)
      return `"${dir}" belongs to uid ${st.uid}, not to this sidecar's uid ${uid}: another user could replace its snapshot and key`;
    if (st.mode & 0o002) return `"${dir}" is writable by every user (mode ${(st.mode & 0o777).toString(8)}): make it 0700`;
    return undefined;
  } catch (err) {
    return `"${dir}" cannot be used: ${(err as Error).message}`;
  }
}

/** Refuses invalid UTF-8 instead of replacing it: the text saved to disk must be the bytes that were checked. */
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The snapshot a sidecar serves with, and the last good one on disk. `offer()` validates a
 * candidate (schema, service, content hash, newer than the current one) and hands it to `apply`,
 * which compiles it into the live data plane or throws with a reason; only then does it become
 * current and get written to disk. A refused snapshot changes nothing. Not safe for concurrent
 * offers: the control-plane follower delivers one message at a time.
 */
export class SnapshotStore {
  private current: ProxySnapshotV1 | undefined;
  private appliedAt: string | undefined;
  private lastRejection: Rejection | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly service: string,
    private readonly dataDir: string,
    private readonly apply: (snapshot: ProxySnapshotV1) => void,
  ) {}

  get snapshot(): ProxySnapshotV1 | undefined {
    return this.current;
  }

  get rejection(): Rejection | undefined {
    return this.lastRejection;
  }

  /** Loads the last good snapshot from disk (static stability); undefined when there is none or it is unusable. */
  async loadFromDisk(): Promise<{ loaded: boolean; reason?: string }> {
    let text: string;
    try {
      text = await readFile(join(this.dataDir, FILE), 'utf8');
    } catch {
      return { loaded: false, reason: 'no snapshot on disk' };
    }
    // A refused file is this sidecar's own affair: acknowledgements report refusals of what proxy-config sent.
    const before = this.lastRejection;
    const outcome = this.offer(text, { persist: false });
    this.lastRejection = before;
    return outcome.applied ? { loaded: true } : { loaded: false, reason: outcome.reason ?? 'not newer' };
  }

  /**
   * Validates and applies `raw` (JSON, as text or as the message's bytes). `applied` false with no
   * reason means it was not newer (a redelivery or the same content): nothing to report.
   */
  offer(raw: string | Uint8Array, opts: { persist?: boolean; live?: boolean } = {}): { applied: boolean; reason?: string } {
    // The text, not the bytes, is what gets written to disk later: a message's bytes may be a view
    // of the client's read buffer, valid only during this call.
    let text: string;
    try {
      text = typeof raw === 'string' ? raw : decoder.decode(raw);
    } catch {
      return this.reject(undefined, 'not UTF-8');
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      return this.reject(undefined, `not JSON: ${(e as Error).message}`);
    }
    const parsed = ProxySnapshotV1.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      return this.reject(json, `does not match ProxySnapshotV1: ${issues.join('; ')}`);
    }
    const snap = parsed.data;
    if (snap.service !== this.service) return this.reject(snap, `is for service "${snap.service}", this sidecar serves "${this.service}"`);
    // A snapshot as proxy-config sends it is checked over the bytes received (its content part is
    // the canonical JSON the hash covers), provided the schema kept exactly what they say (no
    // member dropped, no default added: a newer publisher's member is refused as before); anything
    // else by canonicalizing the parsed content.
    if (!(hashMatchesAsSent(raw, snap.hash) && keptAsIs(json, snap))) {
      const hash = hashSnapshot(snap);
      if (hash !== snap.hash) return this.reject(snap, `content hash ${hash} does not match the declared hash ${snap.hash}`);
    }
    if (!takesSnapshot(snap, this.current, opts.live === true)) return { applied: false };
    try {
      this.apply(snap);
    } catch (e) {
      return this.reject(snap, `cannot be applied: ${(e as Error).message}`);
    }
    this.current = snap;
    this.appliedAt = new Date().toISOString();
    if (opts.persist !== false) void this.persist(text);
    return { applied: true };
  }

  /** The acknowledgement this sidecar sends now. */
  ack(sidecar: string, address: string): ProxyAckV1 {
    return {
      service: this.service,
      sidecar,
      version: this.current?.version ?? 0,
      hash: this.current?.hash ?? '',
      ...(this.appliedAt ? { appliedAt: this.appliedAt } : {}),
      ...(this.lastRejection ? { rejected: this.lastRejection } : {}),
      address,
      sentAt: new Date().toISOString(),
    };
  }

  private reject(candidate: unknown, reason: string): { applied: false; reason: string } {
    const c = (candidate ?? {}) as { version?: unknown; hash?: unknown };
    this.lastRejection = {
      version: typeof c.version === 'number' && Number.isInteger(c.version) ? c.version : 0,
      hash: typeof c.hash === 'string' ? c.hash.slice(0, 64) : '',
      reason: reason.slice(0, ACK_REASON_MAX),
    };
    return { applied: false, reason };
  }

  /**
   * Atomic write (temp file + rename): a crash never leaves half a snapshot behind. Writes run one
   * after another, so a quick succession of snapshots ends with the last one on disk.
   */
  private persist(raw: string): Promise<void> {
    this.writing = this.writing.then(async () => {
      try {
        await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
        const tmp = join(this.dataDir, `${FILE}.${process.pid}.tmp`);
        await writeFile(tmp, raw, { mode: 0o600 });
        await rename(tmp, join(this.dataDir, FILE));
      } catch {
        // Serving does not depend on the disk copy; the next snapshot tries again.
      }
    });
    return this.writing;
  }
}
