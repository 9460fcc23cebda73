import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskWriter } from './disk-writer';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'novamesh-disk-writer-'));
  dirs.push(d);
  return d;
}

describe('DiskWriter', () => {
  it('ends with the last of many writes asked for at once, whole, and leaves no temporary file', async () => {
    const d = dir();
    const w = new DiskWriter(d);
    // Large enough that one write takes several chunks: interleaved writes would mix or truncate them.
    const contents = Array.from({ length: 30 }, (_, i) => `${i}:`.repeat(100_000 + i * 1_000));
    await Promise.all(contents.map((c) => w.write('identity.json', c)));
    expect(readFileSync(join(d, 'identity.json'), 'utf8')).toBe(contents.at(-1));
    expect(readdirSync(d)).toEqual(['identity.json']);
  });

  it('writes mode 0600, also over a stale temporary file of another mode', async () => {
    const d = dir();
    writeFileSync(join(d, `snapshot.json.${process.pid}.tmp`), 'stale', { mode: 0o644 });
    await new DiskWriter(d).write('snapshot.json', '{}');
    expect(statSync(join(d, 'snapshot.json')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(d, 'snapshot.json'), 'utf8')).toBe('{}');
  });

  it('rejects a write that fails, with the reason, and goes on with the next ones', async () => {
    const d = dir();
    mkdirSync(join(d, 'taken'));
    const w = new DiskWriter(d);
    const failed = w.write('taken', 'x');
    const next = w.write('snapshot.json', 'after');
    await expect(failed).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    await next;
    expect(readFileSync(join(d, 'snapshot.json'), 'utf8')).toBe('after');
    // The failed write's temporary file (it may hold a private key) is gone.
    expect(readdirSync(d).sort()).toEqual(['snapshot.json', 'taken']);
  });

  it('removes temporary files a crashed process left, and writes only the newest of the texts still waiting', async () => {
    const d = dir();
    // A pid no process has (above pid_max), and this process's own (another writer here may be mid-write).
    writeFileSync(join(d, 'identity.json.99999999.tmp'), 'a key nobody renamed');
    writeFileSync(join(d, `identity.json.${process.pid}.tmp`), 'being written by another writer');
    const w = new DiskWriter(d);
    const writes = ['one', 'two', 'three', 'four'].map((t) => w.write('snapshot.json', t));
    await Promise.all(writes);
    expect(readFileSync(join(d, 'snapshot.json'), 'utf8')).toBe('four');
    expect(readdirSync(d).sort()).toEqual([`identity.json.${process.pid}.tmp`, 'snapshot.json']);
  });
});
