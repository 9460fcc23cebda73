import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxySnapshotV1 } from '@novamesh/contracts';
import { hashSnapshot } from '@novamesh/proxy-config';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotStore } from './snapshot-store';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A valid snapshot of `svc` at `version`; `defaultAction` varies the content (and so the hash). */
function snapshot(version: number, defaultAction: 'ALLOW' | 'DENY' = 'ALLOW'): string {
  const content = {
    service: 'svc',
    inbound: { mtls: { mode: 'permissive' as const }, authorization: { defaultAction, policies: [] }, rateLimits: [] },
    upstreams: [],
  };
  return JSON.stringify({ ...content, version, hash: hashSnapshot(content), createdAt: '2026-01-01T00:00:00.000Z' });
}

function store(): { store: SnapshotStore; applied: ProxySnapshotV1[] } {
  const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
  dirs.push(dir);
  const applied: ProxySnapshotV1[] = [];
  return { store: new SnapshotStore('svc', dir, (s) => applied.push(s)), applied };
}

describe('SnapshotStore.offer: live (just published) vs stored snapshots', () => {
  it('takes a live snapshot only when it is newer than the current one', () => {
    const { store: s, applied } = store();
    expect(s.offer(snapshot(1), { persist: false, live: true })).toEqual({ applied: true });
    expect(s.offer(snapshot(2, 'DENY'), { persist: false, live: true })).toEqual({ applied: true });
    expect(applied.map((a) => a.version)).toEqual([1, 2]);
  });

  it('ignores a live snapshot of the current version with other content (a conditional publish that lost)', () => {
    const { store: s, applied } = store();
    s.offer(snapshot(3), { persist: false, live: true });
    expect(s.offer(snapshot(3, 'DENY'), { persist: false, live: true })).toEqual({ applied: false });
    expect(s.snapshot?.inbound.authorization.defaultAction).toBe('ALLOW');
    expect(applied).toHaveLength(1);
  });

  it('lets the stored snapshot of the current version overrule what a live one brought', () => {
    const { store: s } = store();
    s.offer(snapshot(3, 'DENY'), { persist: false, live: true });
    expect(s.offer(snapshot(3), { persist: false })).toEqual({ applied: true });
    expect(s.snapshot?.inbound.authorization.defaultAction).toBe('ALLOW');
    // The same stored value read back again (reconcile) changes nothing.
    expect(s.offer(snapshot(3), { persist: false })).toEqual({ applied: false });
  });

  it('never goes back to an older version, live or stored', () => {
    const { store: s } = store();
    s.offer(snapshot(5), { persist: false });
    expect(s.offer(snapshot(4, 'DENY'), { persist: false })).toEqual({ applied: false });
    expect(s.offer(snapshot(4, 'DENY'), { persist: false, live: true })).toEqual({ applied: false });
    expect(s.snapshot?.version).toBe(5);
  });
});
