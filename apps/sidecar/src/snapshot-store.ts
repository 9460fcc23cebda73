import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ACK_REASON_MAX, type ProxyAckV1, ProxySnapshotV1 } from '@novamesh/contracts';
import { hashMatchesAsSent, hashSnapshot, keptAsIs, takesSnapshot } from '@novamesh/proxy-config';
import { DiskWriter } from './disk-writer';

/** Why a snapshot was not applied; the sidecar keeps serving the one it has. */
export interface Rejection {
  version: number;
  hash: string;
  reason: string;
}

const FILE = 'snapshot.json';

/** What became of an offered snapshot. */
export interface OfferOutcome {
  applied: boolean;
  /** Why it was refused (nothing when it was merely not newer). */
  reason?: string;
  /** A live snapshot older than the one in use: read the stored value in `recheckMs` (MESH_PROXY may have started its versions over). */
  recheckMs?: number;
  /** It was applied although older: MESH_PROXY's versions started over (from the version in use to this one). */
  restarted?: { from: number; to: number };
}
/**
 * Creates the data directory (0700) when missing and checks it: it holds the snapshot the sidecar
 * serves from at start and its private key. The default one, under the shared $TMPDIR, must be
 * this process's own and not writable by others, and so must its parent (another user could
 * otherwise choose both): `problem` when not. A directory the operator named (SIDECAR_DATA_DIR)
 * may be a volume set up otherwise (a Kubernetes emptyDir is 0777): only `warning`s for it.
 */
export async function checkDataDir(dir: string, opts: { chosen: boolean }): Promise<{ problem?: string; warning?: string }> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const own = async (d: string): Promise<string | undefined> => {
      const st = await stat(d);
      if (!st.isDirectory()) return `"${d}" is not a directory`;
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid) return `"${d}" belongs to uid ${st.uid}, not to this sidecar's uid ${uid}`;
      if (st.mode & 0o022) return `"${d}" is writable by other users (mode ${(st.mode & 0o777).toString(8)})`;
      return undefined;
    };
    if (opts.chosen) {
      const issue = await own(dir);
      return issue ? { warning: `${issue}: another user could replace its snapshot and key` } : {};
    }
    const issue = (await own(dirname(dir))) ?? (await own(dir));
    return issue
      ? { problem: `${issue}: another user could replace its snapshot and key; set SIDECAR_DATA_DIR to a directory of this user's` }
      : {};
  } catch (err) {
    return { problem: `"${dir}" cannot be used: ${(err as Error).message}` };
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
  /**
   * The snapshot in use came from disk and the control plane has not sent one since: the first
   * stored snapshot read back from MESH_PROXY replaces it whatever its version (the mesh may have
   * been reset meanwhile, its versions starting over), as long as it checks out.
   */
  private fromDisk = false;
  private appliedAt: string | undefined;
  private lastRejection: Rejection | undefined;
  private readonly disk: DiskWriter;

  constructor(
    private readonly service: string,
    private readonly dataDir: string,
    private readonly apply: (snapshot: ProxySnapshotV1) => void,
  ) {
    this.disk = new DiskWriter(dataDir);
  }

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
    if (outcome.applied) this.fromDisk = true;
    return outcome.applied ? { loaded: true } : { loaded: false, reason: outcome.reason ?? 'not newer' };
  }

  /**
   * Validates and applies `raw` (JSON, as text or as the message's bytes). `applied` false with no
   * reason means it was not newer (a redelivery or the same content): nothing to report.
   */
  offer(raw: string | Uint8Array, opts: { persist?: boolean; live?: boolean } = {}): OfferOutcome {
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
    const live = opts.live === true;
    const replacesDisk = this.fromDisk && !live && opts.persist !== false;
    let restarted: OfferOutcome['restarted'];
    if (!replacesDisk && !takesSnapshot(snap, this.current, live)) {
      const current = this.current;
      if (current === undefined || snap.version >= current.version || snap.hash === current.hash) return { applied: false };
      // An older version: a live one only prompts a read of what MESH_PROXY holds. A stored one made
      // after the one in use means proxy-config numbered from 1 again (MESH_PROXY was lost while none
      // ran); one made before is a read that raced a snapshot being stored, or a version the stream
      // refused to store: neither replaces the one in use.
      if (live) return { applied: false, recheckMs: 1_000 };
      if (!(Date.parse(snap.createdAt) > Date.parse(current.createdAt))) return { applied: false };
      restarted = { from: current.version, to: snap.version };
    }
    try {
      this.apply(snap);
    } catch (e) {
      return this.reject(snap, `cannot be applied: ${(e as Error).message}`);
    }
    this.current = snap;
    // Applied after what was refused: the refusal is history (acknowledgements report the last one only while it stands).
    this.lastRejection = undefined;
    if (opts.persist !== false) this.fromDisk = false;
    this.appliedAt = new Date().toISOString();
    if (opts.persist !== false) void this.persist(text);
    return restarted ? { applied: true, restarted } : { applied: true };
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
      // An ack carries a version of at least 0 (ProxyAckV1): a refused snapshot claiming a negative one is reported as 0.
      version: typeof c.version === 'number' && Number.isInteger(c.version) && c.version >= 0 ? c.version : 0,
      hash: typeof c.hash === 'string' ? c.hash.slice(0, 64) : '',
      reason: reason.slice(0, ACK_REASON_MAX),
    };
    return { applied: false, reason };
  }

  /** The disk copy, written whole and in order ({@link DiskWriter}): a quick succession of snapshots ends with the last one. */
  private persist(raw: string): Promise<void> {
    // Serving does not depend on the disk copy; the next snapshot tries again.
    return this.disk.write(FILE, raw).catch(() => undefined);
  }
}
