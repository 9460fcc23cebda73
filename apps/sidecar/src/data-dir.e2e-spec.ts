import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ManagedProcess, repoRoot } from '@novamesh/testing';
import { afterAll, describe, expect, it } from 'vitest';

// The sidecar's data directory holds the snapshot it serves from at start and its private key.
// Real sidecar processes, their $TMPDIR pointed at a directory of this test.
const dir = mkdtempSync(join(tmpdir(), 'novamesh-data-dir-'));
const uid = process.getuid?.() ?? 'user';

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(env: NodeJS.ProcessEnv): ManagedProcess {
  return new ManagedProcess('sidecar-data-dir', process.execPath, [resolve(repoRoot, 'apps/sidecar/dist/main.js')], {
    NATS_URL: 'nats://127.0.0.1:1',
    SIDECAR_SERVICE: 'shop',
    SIDECAR_APP_PORT: '8080',
    SIDECAR_INBOUND_PORT: '0',
    SIDECAR_OUTBOUND_PORT: '0',
    SIDECAR_ADMIN_PORT: '0',
    SIDECAR_DRAIN: '100ms',
    LOG_LEVEL: 'info',
    ...env,
  });
}

async function ready(proc: ManagedProcess): Promise<void> {
  try {
    await proc.waitForLine(/"msg":"sidecar ready"/, 30_000);
  } finally {
    await proc.stop('SIGTERM', 5_000);
  }
}

describe('the sidecar data directory', () => {
  it('by default is $TMPDIR/novamesh-sidecar-<uid>/<service>-<app port>, created 0700', async () => {
    const tmp = join(dir, 'fresh');
    mkdirSync(tmp);
    await ready(start({ TMPDIR: tmp }));
    for (const d of [join(tmp, `novamesh-sidecar-${uid}`), join(tmp, `novamesh-sidecar-${uid}`, 'shop-8080')])
      expect(statSync(d).mode & 0o777, d).toBe(0o700);
  });

  it('refuses a default directory other users may write to, with the reason', async () => {
    const tmp = join(dir, 'shared');
    const parent = join(tmp, `novamesh-sidecar-${uid}`);
    mkdirSync(parent, { recursive: true });
    chmodSync(parent, 0o777);
    const proc = start({ TMPDIR: tmp });
    expect(await proc.exited).toBe(78);
    expect(proc.output.join('\n')).toMatch(
      /the data directory ".*novamesh-sidecar-.*" is writable by other users \(mode 777\): another user could replace its snapshot and key; set SIDECAR_DATA_DIR/,
    );
  });

  it('takes a directory the operator named even when others may write to it (a volume), with a warning', async () => {
    const open = join(dir, 'volume');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const proc = start({ SIDECAR_DATA_DIR: open });
    await ready(proc);
    expect(proc.output.join('\n')).toMatch(/SIDECAR_DATA_DIR .*volume.* is writable by other users \(mode 777\)/);
  });
});

describe('the sidecar listeners', () => {
  it('refuses to start on a port another process holds, naming the setting to change (exit 78, no stack trace)', async () => {
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const port = (holder.address() as AddressInfo).port;
    try {
      const proc = start({ SIDECAR_OUTBOUND_PORT: String(port), TMPDIR: dir });
      expect(await proc.exited).toBe(78);
      const out = proc.output.join('\n');
      expect(out).toContain(
        `sidecar: cannot listen on 127.0.0.1:${port}: it is in use by another process; choose another with SIDECAR_OUTBOUND_PORT (meshctl --outbound-port)`,
      );
      expect(out).not.toMatch(/\n\s+at /);
    } finally {
      holder.close();
    }
  });
});
