import type { ProxyAckV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { SidecarStatusBook } from './sidecar-status.book';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const ack = (sidecar: string, version: number, hash: string, extra: Partial<ProxyAckV1> = {}): ProxyAckV1 => ({
  service: 'web',
  sidecar,
  version,
  hash,
  sentAt: iso(T0),
  ...extra,
});

describe('SidecarStatusBook', () => {
  const book = () => {
    const b = new SidecarStatusBook({ staleAfterMs: 30_000 });
    b.recordSnapshot('web', 1, 'h1', iso(T0), T0);
    b.recordSnapshot('web', 2, 'h2', iso(T0 + 1_000), T0);
    b.recordSnapshot('web', 3, 'h3', iso(T0 + 5_000), T0);
    b.recordSnapshot('web', 2, 'h2', iso(T0 + 1_000), T0); // a replay changes nothing
    return b;
  };

  it('reports in sync, behind (lag since the first version not applied), rejected and stale', () => {
    const b = book();
    b.recordAck(ack('synced', 3, 'h3', { address: '10.0.0.1:15001' }), T0 + 9_000);
    b.recordAck(ack('behind', 1, 'h1'), T0 + 9_000);
    b.recordAck(ack('refused', 2, 'h2', { rejected: { version: 3, hash: 'h3', reason: 'route to unknown subset' } }), T0 + 9_000);
    b.recordAck(ack('silent', 3, 'h3'), T0 - 30_000);
    b.recordAck(ack('wrong-hash', 3, 'other'), T0 + 9_000);
    b.recordAck({ ...ack('other', 0, ''), service: 'cart' }, T0 + 9_000);
    const now = T0 + 10_000;
    const byId = Object.fromEntries(b.entries(now).map((e) => [`${e.service}/${e.sidecar}`, e]));
    expect(Object.keys(byId)).toEqual(['cart/other', 'web/behind', 'web/refused', 'web/silent', 'web/synced', 'web/wrong-hash']);
    expect(byId['web/synced']).toEqual({
      service: 'web',
      sidecar: 'synced',
      address: '10.0.0.1:15001',
      version: 3,
      latestVersion: 3,
      inSync: true,
      lagMs: 0,
      lastSeenMs: 1_000,
      stale: false,
    });
    expect(byId['web/behind']).toMatchObject({ inSync: false, lagMs: 9_000, stale: false });
    expect(byId['web/refused']).toMatchObject({ inSync: false, lagMs: 5_000, rejected: { version: 3, reason: 'route to unknown subset' } });
    expect(byId['web/silent']).toMatchObject({ inSync: true, stale: true, lastSeenMs: 40_000 });
    expect(byId['web/wrong-hash']).toMatchObject({ inSync: false, lagMs: 5_000 });
    // Nothing published for cart: latest 0, and a sidecar with nothing applied is "in sync" with nothing.
    expect(byId['cart/other']).toMatchObject({ latestVersion: 0, inSync: true, lagMs: 0 });
    expect(b.entries(now, 'cart').map((e) => e.sidecar)).toEqual(['other']);
    expect(b.entries(now, 'nobody')).toEqual([]);
  });

  it('uses the oldest kept newer version when the history no longer reaches back', () => {
    const b = new SidecarStatusBook({ historyPerService: 2 });
    for (let v = 1; v <= 5; v++) b.recordSnapshot('web', v, `h${v}`, iso(T0 + v * 1_000), T0);
    b.recordAck(ack('old', 1, 'h1'), T0 + 10_000);
    expect(b.entries(T0 + 10_000)[0]?.lagMs).toBe(6_000);
  });

  it('forgets a sidecar at once when its acknowledgement says it is leaving, and only that one', () => {
    const b = book();
    b.recordAck(ack('a', 3, 'h3'), T0 + 9_000);
    b.recordAck(ack('b', 3, 'h3'), T0 + 9_000);
    b.recordAck(ack('a', 3, 'h3', { leaving: true }), T0 + 9_500);
    expect(b.entries(T0 + 10_000).map((e) => e.sidecar)).toEqual(['b']);
    b.recordAck(ack('b', 3, 'h3', { leaving: true }), T0 + 9_600);
    b.recordAck(ack('never-seen', 3, 'h3', { leaving: true }), T0 + 9_600);
    expect(b.entries(T0 + 10_000)).toEqual([]);
  });

  it('forgets sidecars silent for much longer than the stale limit', () => {
    const b = new SidecarStatusBook({ staleAfterMs: 1_000, forgetAfterMs: 5_000 });
    b.recordAck(ack('gone', 0, ''), T0);
    expect(b.entries(T0 + 4_000)).toHaveLength(1);
    expect(b.entries(T0 + 6_000)).toHaveLength(0);
  });
});
