import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProxyAckV1, type ProxySnapshotV1 } from '@novamesh/contracts';
import { canonicalJson, hashSnapshot, sha256Hex, snapshotMessageJson } from '@novamesh/proxy-config';
import { waitFor } from '@novamesh/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotStore } from './snapshot-store';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A valid snapshot of `svc` at `version`; `defaultAction` varies the content (and so the hash). */
function snapshot(version: number, defaultAction: 'ALLOW' | 'DENY' = 'ALLOW', createdAt = '2026-01-01T00:00:00.000Z'): string {
  const content = {
    service: 'svc',
    inbound: { mtls: { mode: 'permissive' as const }, authorization: { defaultAction, policies: [] }, rateLimits: [] },
    upstreams: [],
  };
  return JSON.stringify({ ...content, version, hash: hashSnapshot(content), createdAt });
}

function store(): { store: SnapshotStore; applied: ProxySnapshotV1[] } {
  const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
  dirs.push(dir);
  const applied: ProxySnapshotV1[] = [];
  return { store: new SnapshotStore('svc', dir, (s) => applied.push(s)), applied };
}

describe('SnapshotStore acks', () => {
  it('stay valid acks after refusing a snapshot that claims a negative version (reported as 0), so the refusal is seen', () => {
    const { store: s } = store();
    const bad = JSON.parse(snapshot(1)) as Record<string, unknown>;
    expect(s.offer(JSON.stringify({ ...bad, version: -1 }), { persist: false, live: true }).applied).toBe(false);
    const ack = s.ack('svc-1', '127.0.0.1');
    expect(ProxyAckV1.safeParse(ack).success).toBe(true);
    expect(ack.rejected?.version).toBe(0);
  });

  it('report a refusal only until a snapshot is applied after it', () => {
    const { store: s } = store();
    expect(s.offer(snapshot(1), { persist: false, live: true }).applied).toBe(true);
    expect(s.offer('not json', { persist: false, live: true }).applied).toBe(false);
    expect(s.ack('svc-1', '127.0.0.1').rejected?.reason).toMatch(/^not JSON/);
    expect(s.offer(snapshot(2, 'DENY'), { persist: false, live: true }).applied).toBe(true);
    expect(s.ack('svc-1', '127.0.0.1').rejected).toBeUndefined();
  });
});

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

  it('never goes back to an older version made before the one in use, live or stored; a live one asks for the stored value to be read', () => {
    const { store: s } = store();
    s.offer(snapshot(5, 'ALLOW', '2026-01-01T00:00:05.000Z'), { persist: false });
    // A live publish that lost (a replica behind), even made later: only a read of what is stored.
    expect(s.offer(snapshot(4, 'DENY', '2026-01-01T00:00:09.000Z'), { persist: false, live: true })).toEqual({
      applied: false,
      recheckMs: 1_000,
    });
    // Stored but made before the one in use: a read that raced a store, or a version the stream refused to store.
    expect(s.offer(snapshot(4, 'DENY', '2026-01-01T00:00:04.000Z'), { persist: false })).toEqual({ applied: false });
    expect(s.snapshot?.version).toBe(5);
  });

  it('takes an older stored snapshot made after the one in use: MESH_PROXY was lost and proxy-config numbered from 1 again', () => {
    const { store: s, applied } = store();
    s.offer(snapshot(40, 'ALLOW', '2026-01-01T00:00:40.000Z'), { persist: false });
    expect(s.offer(snapshot(1, 'DENY', '2026-01-01T00:01:00.000Z'), { persist: false })).toEqual({
      applied: true,
      restarted: { from: 40, to: 1 },
    });
    expect(applied.map((a) => a.version)).toEqual([40, 1]);
    // From then on the usual order holds.
    expect(s.offer(snapshot(2, 'ALLOW', '2026-01-01T00:01:01.000Z'), { persist: false, live: true })).toEqual({ applied: true });
    expect(s.offer(snapshot(1, 'DENY', '2026-01-01T00:01:00.000Z'), { persist: false })).toEqual({ applied: false });
  });
});

describe('SnapshotStore.offer: the content hash', () => {
  /**
   * A snapshot's bytes exactly as proxy-config publishes them (canonical content, then version,
   * hash, createdAt); `inboundExtra` adds members to `inbound`, as a newer proxy-config might.
   */
  function asSent(version: number, defaultAction: 'ALLOW' | 'DENY' = 'ALLOW', inboundExtra: object = {}): Uint8Array {
    const parsed = JSON.parse(snapshot(version, defaultAction)) as { inbound: object; service: string; upstreams: unknown[] };
    const inbound = { ...parsed.inbound, ...inboundExtra };
    const canonical = canonicalJson({ inbound, service: parsed.service, upstreams: parsed.upstreams });
    return new TextEncoder().encode(
      snapshotMessageJson(canonical, { version, hash: sha256Hex(canonical), createdAt: '2026-01-01T00:00:00.000Z' }),
    );
  }

  it('takes a snapshot as proxy-config sends it, as bytes, checked over those bytes', () => {
    const { store: s, applied } = store();
    expect(s.offer(asSent(1), { persist: false, live: true })).toEqual({ applied: true });
    expect(s.snapshot?.hash).toBe(hashSnapshot(s.snapshot as ProxySnapshotV1));
    expect(applied).toHaveLength(1);
  });

  it('refuses content that is not what the declared hash covers, in the layout proxy-config sends and in any other', () => {
    const { store: s, applied } = store();
    const sent = new TextDecoder().decode(asSent(2));
    // Still valid JSON and a valid snapshot, but the content changed after hashing.
    const tampered = new TextEncoder().encode(sent.replace('"defaultAction":"ALLOW"', '"defaultAction":"DENY"'));
    const outcome = s.offer(tampered, { persist: false, live: true });
    expect(outcome.applied).toBe(false);
    expect(outcome.reason).toMatch(/^content hash [0-9a-f]{64} does not match the declared hash [0-9a-f]{64}$/);
    // The same change in another layout (members in another order): checked by canonicalizing.
    const { service, ...rest } = JSON.parse(sent) as { service: string; inbound: object };
    const otherLayout = JSON.stringify({
      ...rest,
      service,
      inbound: { ...rest.inbound, authorization: { defaultAction: 'DENY', policies: [] } },
    });
    expect(s.offer(otherLayout, { persist: false }).reason).toMatch(/^content hash [0-9a-f]{64} does not match the declared hash/);
    expect(applied).toHaveLength(0);
    expect(s.rejection?.version).toBe(2);
  });
  it('refuses a member its schema does not know, even when the bytes hash to the declared hash (a newer publisher must not be half-applied)', () => {
    const { store: s, applied } = store();
    const outcome = s.offer(asSent(3, 'ALLOW', { futureDeny: ['*'] }), { persist: false, live: true });
    expect(outcome.applied).toBe(false);
    expect(outcome.reason).toMatch(/^content hash [0-9a-f]{64} does not match the declared hash/);
    expect(applied).toHaveLength(0);
  });

  it('refuses bytes that are not UTF-8, whatever their hash', () => {
    const { store: s } = store();
    const sent = asSent(4);
    const at = new TextDecoder().decode(sent).indexOf('"svc"') + 2;
    const broken = Uint8Array.from(sent);
    broken[at] = 0xff; // inside the service name
    expect(s.offer(broken, { persist: false, live: true })).toEqual({ applied: false, reason: 'not UTF-8' });
  });

  it('writes to disk exactly what it checked, and a restarted sidecar starts from it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
    dirs.push(dir);
    const first = new SnapshotStore('svc', dir, () => undefined);
    const sent = asSent(5, 'DENY');
    expect(first.offer(sent, { live: true })).toEqual({ applied: true });
    await waitFor(() => {
      try {
        return readFileSync(join(dir, 'snapshot.json'), 'utf8') === new TextDecoder().decode(sent);
      } catch {
        return false;
      }
    });
    const restarted = new SnapshotStore('svc', dir, () => undefined);
    expect(await restarted.loadFromDisk()).toEqual({ loaded: true });
    expect(restarted.snapshot?.version).toBe(5);
    expect(restarted.snapshot?.inbound.authorization.defaultAction).toBe('DENY');
  });

  it('refuses a snapshot on disk for another service, with the reason, without reporting it as a refusal of what proxy-config sent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'snapshot.json'), asSent(5, 'DENY'));
    const other = new SnapshotStore('other', dir, () => undefined);
    expect(await other.loadFromDisk()).toEqual({ loaded: false, reason: 'is for service "svc", this sidecar serves "other"' });
    expect(other.snapshot).toBeUndefined();
    expect(other.ack('sc-1', '127.0.0.1:1').rejected).toBeUndefined();
  });

  it('lets the first stored snapshot from the control plane replace one from disk whatever its version (a reset mesh starts its versions over)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'snapshot.json'), asSent(40, 'DENY'));
    const s = new SnapshotStore('svc', dir, () => undefined);
    expect(await s.loadFromDisk()).toEqual({ loaded: true });
    // live: only newer, as always (an older one asks for the stored value to be read)
    expect(s.offer(asSent(1, 'ALLOW'), { live: true })).toEqual({ applied: false, recheckMs: 1_000 });
    expect(s.offer(asSent(2, 'ALLOW'))).toEqual({ applied: true }); // stored, read back from MESH_PROXY
    expect(s.snapshot?.version).toBe(2);
    // From then on the usual order holds: never back to an older version on one read.
    expect(s.offer(asSent(1, 'DENY'))).toMatchObject({ applied: false });
    expect(s.offer(asSent(3, 'DENY'), { live: true })).toEqual({ applied: true });
  });

  it('ends with the last of several snapshots applied in quick succession on disk', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novamesh-snapshot-store-'));
    dirs.push(dir);
    const s = new SnapshotStore('svc', dir, () => undefined);
    for (let v = 1; v <= 20; v++) expect(s.offer(asSent(v, v % 2 ? 'ALLOW' : 'DENY'), { live: true })).toEqual({ applied: true });
    const last = new TextDecoder().decode(asSent(20, 'DENY'));
    await waitFor(() => {
      try {
        return readFileSync(join(dir, 'snapshot.json'), 'utf8') === last;
      } catch {
        return false;
      }
    });
    await new Promise((r) => setTimeout(r, 200)); // nothing older lands afterwards
    expect(readFileSync(join(dir, 'snapshot.json'), 'utf8')).toBe(last);
  });
});
