import { ProxySnapshotV1 } from '@novamesh/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canaryRuleFixture, effectivePolicyFixture, endpointSetFixture, rateLimitFixture, trafficPolicyFixture } from './fixtures';
import { MeshView } from './mesh.view';
import { hashMatchesAsSent, hashSnapshot, keptAsIs, snapshotMessageJson } from './snapshot.hash';

/** Messages exactly as proxy-config publishes them, for a small mesh with routes, rate limits, authorization and trust. */
function sentMessages(): { text: string; hash: string }[] {
  const view = new MeshView();
  view.applyEndpoints(endpointSetFixture('web', { upstreams: ['cart', 'shared'] }));
  view.applyEndpoints(endpointSetFixture('cart', { count: 3, upstreams: ['shared'] }));
  view.applyEndpoints(endpointSetFixture('shared'));
  view.applyPolicy(
    effectivePolicyFixture('cart', {
      traffic: trafficPolicyFixture('cart'),
      routes: [canaryRuleFixture('cart')],
      rateLimits: [rateLimitFixture('cart')],
    }),
  );
  view.applyBundle({ trustDomain: 'novamesh.local', roots: [{ pem: 'PEM-ü', fingerprint256: 'f0', notAfter: 'n' }], updatedAt: 'u' });
  return view.services().map((service) => {
    const compiled = view.compile(service);
    if (!compiled) throw new Error(`no snapshot for ${service}`);
    const meta = { version: 12, hash: compiled.hash, createdAt: '2026-11-28T00:00:00.000Z' };
    return { text: snapshotMessageJson(compiled.canonical, meta), hash: compiled.hash };
  });
}

const messages = sentMessages();
const utf8 = new TextEncoder();

describe('hashMatchesAsSent: the hash check over a received snapshot’s bytes', () => {
  it('agrees with hashSnapshot of the parsed snapshot for every message proxy-config sends, as text or bytes', () => {
    expect(messages.length).toBe(3);
    for (const { text, hash } of messages) {
      expect(hashSnapshot(ProxySnapshotV1.parse(JSON.parse(text)))).toBe(hash);
      expect(hashMatchesAsSent(text, hash)).toBe(true);
      // The schema keeps exactly what proxy-config sends (no member dropped, no default added), so
      // a sidecar may rely on the bytes' hash for what it applies.
      const json: unknown = JSON.parse(text);
      expect(keptAsIs(json, ProxySnapshotV1.parse(json))).toBe(true);
      // A view into a larger buffer, as a NATS client hands a message's payload over.
      const bytes = utf8.encode(text);
      const inside = new Uint8Array(bytes.length + 20);
      inside.set(bytes, 7);
      expect(hashMatchesAsSent(inside.subarray(7, 7 + bytes.length), hash)).toBe(true);
    }
  });

  it('refuses any change to a byte of the content, or a hash other than the declared one', () => {
    const { text, hash } = messages[0] as { text: string; hash: string };
    const contentEnd = text.lastIndexOf(',"version":');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: contentEnd - 1 }), fc.integer({ min: 1, max: 94 }), (at, shift) => {
        const code = text.charCodeAt(at);
        const changed = `${text.slice(0, at)}${String.fromCharCode(32 + ((code - 32 + shift) % 95))}${text.slice(at + 1)}`;
        expect(hashMatchesAsSent(changed, hash)).toBe(false);
      }),
      { numRuns: 300 },
    );
    expect(hashMatchesAsSent(text, (messages[1] as { hash: string }).hash)).toBe(false);
    expect(hashMatchesAsSent(text, hash.toUpperCase())).toBe(false);
  });

  it('leaves every other layout to hashSnapshot: false even though the content is the same', () => {
    const { text, hash } = messages[0] as { text: string; hash: string };
    const parsed = JSON.parse(text) as Record<string, unknown>;
    const { version, createdAt, ...content } = parsed;
    const others = [
      JSON.stringify(parsed, null, 2), // pretty-printed
      JSON.stringify({ version, hash, createdAt, ...content }), // members outside the hash first
      text.replace(',"createdAt"', ',"extra":1,"createdAt"'), // another member appended
      text.replace(/,"version":12,/, ',"version":"12",'), // version as a string
      `${text} `, // trailing whitespace
      `${text.slice(0, -1)},"createdAt":"later"}`, // a member repeated after the suffix
      text.replace('{"inbound":', '{ "inbound":'),
    ];
    for (const other of others) {
      expect(hashMatchesAsSent(other, hash)).toBe(false);
      // Each is still the same snapshot: the slow path (what a sidecar falls back to) accepts it
      // where the JSON is the same content, so nothing a publisher may send is lost.
      const reparsed = ProxySnapshotV1.safeParse(JSON.parse(other));
      if (reparsed.success && reparsed.data.hash === hash) expect(hashSnapshot(reparsed.data)).toBe(hash);
    }
    expect(hashMatchesAsSent('', hash)).toBe(false);
    expect(hashMatchesAsSent('{"inbound":', hash)).toBe(false);
  });
});

describe('keptAsIs', () => {
  it('is true only when nothing was dropped, added or changed at any level', () => {
    const input = { a: 1, b: [{ c: 'x', d: null }, 2], e: { f: true } };
    expect(keptAsIs(input, structuredClone(input))).toBe(true);
    expect(keptAsIs(input, { ...input, e: {} })).toBe(false); // a member dropped
    expect(keptAsIs(input, { ...input, g: 'default' })).toBe(false); // a member added
    expect(keptAsIs(input, { ...input, b: [{ c: 'x', d: null }] })).toBe(false); // an item dropped
    expect(keptAsIs(input, { ...input, a: '1' })).toBe(false); // a value changed
    expect(keptAsIs({ a: undefined }, {})).toBe(false);
    expect(keptAsIs([], {})).toBe(false);
  });
});
