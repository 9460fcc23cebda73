import type { ProxyStatusEntryV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { proxyStatusTable, shortDuration, syncState } from './proxy-status';

const base = { service: 'checkout', latestVersion: 7, stale: false, rejected: undefined };
const entries: ProxyStatusEntryV1[] = [
  { ...base, sidecar: 'checkout-7f9c-1', version: 7, inSync: true, lagMs: 0, lastSeenMs: 2_400 },
  { ...base, sidecar: 'checkout-7f9c-2', version: 6, inSync: false, lagMs: 1_250, lastSeenMs: 310 },
  {
    ...base,
    sidecar: 'checkout-7f9c-3',
    version: 6,
    inSync: false,
    lagMs: 95_000,
    lastSeenMs: 4_000,
    rejected: { version: 7, hash: 'ab'.repeat(32), reason: 'upstreams[0].routes[1]: subset "v3" is not defined' },
  },
  { ...base, sidecar: 'checkout-7f9c-4', version: 7, inSync: true, lagMs: 0, lastSeenMs: 3_725_000, stale: true },
  { ...base, service: 'ledger', sidecar: 'ledger-0', version: 0, latestVersion: 0, inSync: true, lagMs: 0, lastSeenMs: 9_000 },
].map(({ rejected, ...e }) => (rejected ? { ...e, rejected } : e));

// Golden file: regenerate with `npx vitest run --project unit apps/cli -u` and review the diff.
describe('meshctl proxy-status output', () => {
  it('renders the table with one state per sidecar and the refusal reasons below it', async () => {
    await expect(proxyStatusTable(entries)).toMatchFileSnapshot('../__golden__/proxy-status.txt');
  });

  it('says SYNCED, STALE (behind or silent), NOT SENT and REJECTED', () => {
    expect(entries.map(syncState)).toEqual(['SYNCED', 'STALE', 'REJECTED', 'STALE', 'NOT SENT']);
  });

  it('says REJECTED only for a sidecar that is not on the latest snapshot, as meshctl check does', () => {
    const synced = entries[0] as ProxyStatusEntryV1;
    // A stray live message numbered above the latest, refused while the sidecar runs the latest.
    expect(syncState({ ...synced, rejected: { version: 8, hash: '', reason: 'not JSON' } })).toBe('SYNCED');
    const behind = entries[1] as ProxyStatusEntryV1;
    expect(syncState({ ...behind, rejected: { version: 7, hash: 'ab'.repeat(32), reason: 'subset "v3" is not defined' } })).toBe(
      'REJECTED',
    );
  });

  it('writes durations the short way', () => {
    expect([850, 1_250, 12_300, 185_000, 7_620_000].map(shortDuration)).toEqual(['850ms', '1.2s', '12s', '3m05s', '2h07m']);
  });
});
