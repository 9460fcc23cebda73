import { chmod, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Errors of a filesystem that cannot flush (some FUSE mounts): the write stands without it. */
const NO_FSYNC = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP']);

interface Pending {
  text: string;
  waiters: { resolve: () => void; reject: (e: unknown) => void }[];
}

/**
 * Writes the files a restarted sidecar starts from (its snapshot, its key and certificate) whole
 * and one after another: each goes to a temporary file (0600) that is flushed to disk and then
 * renamed over the old one, and the directory is flushed too, so a crash or a power cut leaves
 * the old content or the new one, never a mix or an empty file. Writes are serialized, so the last
 * one asked for is the last on disk, and two never share the temporary file; a write still waiting
 * for its turn is replaced by a newer one of the same file (a burst of snapshots writes the last).
 * A failed write leaves no temporary file (it may hold a private key), and the first write removes
 * those a crashed process left.
 */
export class DiskWriter {
  private chain: Promise<void> = Promise.resolve();
  private readonly pending = new Map<string, Pending>();
  private swept = false;

  constructor(private readonly dir: string) {}

  /** Resolves once `text` (or a newer text of `file` asked for meanwhile) is in `file` for good; rejects with the reason. */
  write(file: string, text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiting = this.pending.get(file);
      if (waiting) {
        waiting.text = text;
        waiting.waiters.push({ resolve, reject });
        return;
      }
      const entry: Pending = { text, waiters: [{ resolve, reject }] };
      this.pending.set(file, entry);
      this.chain = this.chain.then(async () => {
        this.pending.delete(file);
        try {
          await this.writeNow(file, entry.text);
          for (const w of entry.waiters) w.resolve();
        } catch (e) {
          for (const w of entry.waiters) w.reject(e);
        }
      });
    });
  }

  private async writeNow(file: string, text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    if (!this.swept) {
      this.swept = true;
      await this.sweep();
    }
    const tmp = join(this.dir, `${file}.${process.pid}.tmp`);
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync().catch((e: NodeJS.ErrnoException) => {
          if (!NO_FSYNC.has(e.code ?? '')) throw e;
        });
      } finally {
        await fh.close();
      }
      await chmod(tmp, 0o600); // an existing temporary file keeps its mode on open
      await rename(tmp, join(this.dir, file));
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } catch {
      // Some filesystems refuse to flush a directory; the rename is done either way.
    } finally {
      await dir.close();
    }
  }

  /**
   * Temporary files (`<file>.<pid>.tmp`) of processes that are gone: a crash mid-write. Not this
   * process's (another writer here may be in the middle of one) nor a live process's (a sidecar
   * still draining in the same directory).
   */
  private async sweep(): Promise<void> {
    const names = await readdir(this.dir).catch((): string[] => []);
    const stale = names.filter((n) => {
      const pid = Number(/\.(\d+)\.tmp$/.exec(n)?.[1]);
      return Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !alive(pid);
    });
    await Promise.all(stale.map((n) => rm(join(this.dir, n), { force: true }).catch(() => undefined)));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
