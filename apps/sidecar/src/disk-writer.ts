import { chmod, mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Writes the files a restarted sidecar starts from (its snapshot, its key and certificate) whole
 * and one after another: each goes to a temporary file (0600) that is flushed to disk and then
 * renamed over the old one, and the directory is flushed too, so a crash or a power cut leaves
 * the old content or the new one, never a mix or an empty file. Writes are serialized, so the last
 * one asked for is the last on disk, and two never share the temporary file.
 */
export class DiskWriter {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {}

  /** Resolves once `text` is in `file` for good; rejects with the reason (later writes still run). */
  write(file: string, text: string): Promise<void> {
    const next = this.chain.then(() => this.writeNow(file, text));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async writeNow(file: string, text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `${file}.${process.pid}.tmp`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, 0o600); // an existing temporary file keeps its mode on open
    await rename(tmp, join(this.dir, file));
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } catch {
      // Some filesystems refuse to flush a directory; the rename is done either way.
    } finally {
      await dir.close();
    }
  }
}
