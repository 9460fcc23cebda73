import type { CaCertRecordV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { LISTED_AFTER_EXPIRY_MS, planPrune, serialsToList } from './cert-prune.service';
import type { StoredCertRecord } from './cert-registry.service';

const NOW = Date.parse('2026-06-01T12:00:00.000Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function stored(serial: string, expiresIn: number, state: CaCertRecordV1['state'] = 'issued'): StoredCertRecord {
  const notAfter = NOW + expiresIn;
  return {
    revision: 1,
    record: {
      serial,
      spiffeId: 'spiffe://novamesh.local/ns/default/svc/payment',
      namespace: 'default',
      service: 'payment',
      notBefore: new Date(notAfter - DAY).toISOString(),
      notAfter: new Date(notAfter).toISOString(),
      issuedAt: new Date(notAfter - DAY).toISOString(),
      proof: 'token',
      state,
    },
  };
}

const entries = [
  stored('a1', HOUR, 'revoked'), // revoked, still valid: listed
  stored('a2', -LISTED_AFTER_EXPIRY_MS + 1_000, 'revoked'), // expired within the clock allowance: listed
  stored('a3', -HOUR, 'revoked'), // expired an hour ago: off the list, record kept
  stored('a4', -DAY - 1, 'revoked'), // expired a day ago: off the list, record deleted
  stored('b1', -DAY - 1), // issued, expired a day ago: deleted
  stored('b2', -DAY + 60_000), // issued, expired just under a day ago: kept
];

describe('planPrune', () => {
  it('keeps on the revocation list exactly the known serials not expired (with a 5-minute allowance)', () => {
    const { stayListed } = planPrune(entries, NOW, DAY);
    expect(['a1', 'a2', 'a3', 'a4', 'ffff'].filter(stayListed)).toEqual(['a1', 'a2']);
  });

  it('deletes records whose certificate expired more than the retention ago, whatever their state', () => {
    expect(planPrune(entries, NOW, DAY).remove.map((e) => e.record.serial)).toEqual(['a4', 'b1']);
    expect(planPrune(entries, NOW, 2 * DAY).remove).toEqual([]);
    expect(planPrune(entries, NOW, 1).remove.map((e) => e.record.serial)).toEqual(['a2', 'a3', 'a4', 'b1', 'b2']);
  });
});

describe('serialsToList', () => {
  it('lists exactly the revoked certificates a prune keeps listed, sorted: what a lost list is rebuilt from', () => {
    const shuffled = [...entries].reverse();
    expect(serialsToList(shuffled, NOW)).toEqual(['a1', 'a2']);
    const { stayListed } = planPrune(entries, NOW, DAY);
    expect(serialsToList(entries, NOW)).toEqual(entries.map((e) => e.record.serial).filter((s) => s.startsWith('a') && stayListed(s)));
    expect(serialsToList([stored('c1', HOUR)], NOW)).toEqual([]); // issued: never listed
  });
});
