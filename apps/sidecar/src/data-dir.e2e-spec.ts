import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ManagedProcess, repoRoot } from '@novamesh/testing';
import { afterAll, describe, expect, it } from 'vitest';

// The sidecar's data directory holds the snapshot it serves from at start and its private key:
// a real sidecar process must refuse one that other users can write to, before anything else.
const dir = mkdtempSync(join(tmpdir(), 'novamesh-data-dir-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(dataDir: string): ManagedProcess {
  return new ManagedProcess('sidecar-data-dir', process.execPath, [resolve(repoRoot, 'apps/sidecar/dist/main.js')], {
    NATS_URL: 'nats://127.0.0.1:1',
    SIDECAR_SERVICE: 'shop',
    SIDECAR_APP_PORT: '8080',
    SIDECAR_INBOUND_PORT: '0',
    SIDECAR_OUTBOUND_PORT: '0',
    SIDECAR_ADMIN_PORT: '0',
    SIDECAR_DATA_DIR: dataDir,
    SIDECAR_DRAIN: '100ms',
    LOG_LEVEL: 'info',
  });
}

describe('the sidecar data directory', () => {
  it('is refused, with the reason, when every user may write to it', async () => {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const proc = start(open);
    expect(await proc.exited).toBe(78);
    expect(proc.output.join('\n')).toMatch(/SIDECAR_DATA_DIR ".*open" is writable by every user \(mode 777\): make it 0700/);
  });

  it('is created 0700 when missing, and the sidecar starts', async () => {
    const fresh = join(dir, 'a', 'b');
    const proc = start(fresh);
    try {
      await proc.waitForLine(/"msg":"sidecar ready"/, 30_000);
      expect(statSync(fresh).mode & 0o777).toBe(0o700);
    } finally {
      await proc.stop('SIGTERM', 5_000);
    }
  });
});
