import { describe, expect, it } from 'vitest';
import { ownerOf } from './rendezvous';

describe('ownerOf (rendezvous hashing)', () => {
  const keys = Array.from({ length: 3000 }, (_, i) => `payment/endpoint-${i}`);

  it('spreads keys evenly and agrees regardless of member order', () => {
    const members = ['d1', 'd2', 'd3'];
    const counts = new Map<string, number>();
    for (const k of keys) {
      const o = ownerOf(k, members) as string;
      expect(ownerOf(k, [...members].reverse())).toBe(o);
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const m of members) expect(counts.get(m)).toBeGreaterThan(800);
  });

  it('moves only the departed member’s keys', () => {
    let moved = 0;
    for (const k of keys) {
      const before = ownerOf(k, ['d1', 'd2', 'd3']);
      const after = ownerOf(k, ['d1', 'd2']);
      if (before !== 'd3') expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(800);
  });

  it('splits keys that differ only in their last character', () => {
    const few = Array.from({ length: 8 }, (_, i) => `endpoint/shared/hc${i}`);
    const owners = new Set(few.map((k) => ownerOf(k, ['d1', 'd2'])));
    expect(owners).toEqual(new Set(['d1', 'd2']));
  });

  it('has no owner without members', () => {
    expect(ownerOf('x', [])).toBeUndefined();
  });
});
