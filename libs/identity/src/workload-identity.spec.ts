import { ErrorCode, MeshError } from '@novamesh/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCa, FakeClock, settle, unavailable } from './identity.spec-helper';
import { type IdentityError, WorkloadIdentity } from './workload-identity';

const TOKEN = `nmjt_${'A'.repeat(43)}`;
let identities: WorkloadIdentity[] = [];
afterEach(() => {
  for (const i of identities) i.close();
  identities = [];
});

/** An identity on a fake clock and CA; `random` fixed so that timings are exact (0.5 → renew at 65 %). */
function setup(random = 0.5) {
  const clock = new FakeClock();
  const ca = new FakeCa(clock);
  const identity = new WorkloadIdentity(ca, { service: 'payment', namespace: 'shop', token: TOKEN, clock, random: () => random });
  identities.push(identity);
  const events: string[] = [];
  const errors: IdentityError[] = [];
  identity.on('rotated', (cur, prev) => events.push(`rotated ${prev?.serial ?? '-'}→${cur.serial}`));
  identity.on('expiring', (e) => events.push(`expiring ${e.serial} ${e.remainingMs}ms left`));
  identity.on('expired', (e) => events.push(`expired ${e.serial}`));
  identity.on('error', (e) => {
    errors.push(e);
    events.push(`error retry in ${e.retryInMs}ms`);
  });
  return { clock, ca, identity, events, errors };
}

describe('WorkloadIdentity', () => {
  it('obtains its first certificate with the join token and exposes it whole', async () => {
    const { ca, identity } = setup();
    const cur = await identity.start();
    expect(ca.requests).toEqual([{ service: 'payment', namespace: 'shop', token: TOKEN }]);
    expect(cur).toEqual({
      certPem: 'cert-1',
      chainPem: 'chain-1',
      keyPem: 'key-1',
      trustBundlePem: 'bundle-1',
      notAfter: expect.any(Date),
      spiffeId: 'spiffe://novamesh.local/ns/shop/svc/payment',
      serial: '0a1',
    });
    expect(Object.isFrozen(cur)).toBe(true);
  });

  it('resumes a saved certificate without asking the CA, and renews it on schedule; refuses to resume a stale or foreign one', async () => {
    const { clock, ca, identity } = setup();
    const saved = {
      certificatePem: 'saved-cert',
      chainPem: 'saved-chain',
      keyPem: 'saved-key',
      serial: '0ff',
      notAfter: new Date(clock.now() + 50_000).toISOString(),
      spiffeId: 'spiffe://novamesh.local/ns/shop/svc/payment',
      trustBundlePem: 'saved-bundle',
    };
    expect((await identity.start({ resume: saved })).serial).toBe('0ff');
    expect(ca.requests).toEqual([]);
    await clock.advance(50_000);
    expect(ca.requests[0]).toEqual({ service: 'payment', namespace: 'shop', certificatePem: 'saved-cert', keyPem: 'saved-key' });

    for (const stale of [{ notAfter: new Date(0).toISOString() }, { spiffeId: 'spiffe://novamesh.local/ns/shop/svc/orders' }]) {
      const other = setup();
      expect((await other.identity.start({ resume: { ...saved, ...stale } })).serial).toBe('0a1');
      expect(other.ca.requests).toEqual([{ service: 'payment', namespace: 'shop', token: TOKEN }]);
    }
  });

  it('renews with its current certificate and key at the jittered point of the lifetime, not before', async () => {
    for (const [random, at] of [
      [0, 50_000],
      [0.5, 65_000],
      [0.999, 79_970],
    ] as const) {
      const { clock, ca, identity, events } = setup(random);
      await identity.start();
      await clock.advance(at - 1);
      expect(ca.requests).toHaveLength(1);
      await clock.advance(1);
      expect(ca.requests[1]).toEqual({ service: 'payment', namespace: 'shop', certificatePem: 'cert-1', keyPem: 'key-1' });
      expect(identity.current().serial).toBe('0a2');
      expect(events).toEqual(['rotated -→0a1', 'rotated 0a1→0a2']);
    }
  });

  it('keeps renewing every certificate: the next renewal counts from the new certificate', async () => {
    const { clock, ca, identity } = setup();
    await identity.start();
    await clock.advance(65_000);
    await clock.advance(65_000);
    await clock.advance(65_000);
    expect(ca.proofs()).toEqual(['token', 'certificate', 'certificate', 'certificate']);
    expect(identity.current().serial).toBe('0a4');
  });

  it('keeps its certificate while the CA is down, retrying with capped exponential backoff, then renews when it is back', async () => {
    const { clock, ca, identity, events, errors } = setup();
    ca.lifetimeMs = 3_600_000; // 1 h: room for the backoff to reach its 60 s cap
    await identity.start();
    const first = identity.current();
    ca.failWith = unavailable();
    await clock.advance(0.65 * 3_600_000);
    const retries: number[] = [];
    for (let i = 0; i < 9; i++) {
      const before = clock.now();
      await clock.tick();
      retries.push(clock.now() - before);
    }
    // random 0.5 → 75 % of 1, 2, 4 … s, capped at 60 s.
    expect(retries).toEqual([750, 1_500, 3_000, 6_000, 12_000, 24_000, 45_000, 45_000, 45_000]);
    expect(identity.current()).toBe(first);
    expect(errors).toHaveLength(10);
    expect(errors[0]).toMatchObject({ phase: 'renew', code: ErrorCode.unavailable, retryable: true, retryInMs: 750 });
    expect(errors[0]?.message).toMatch(/^renewing identity shop\/payment \(serial 0a1\) with its certificate failed: nobody answers/);
    ca.failWith = undefined;
    await clock.tick();
    expect(identity.current().serial).toBe('0a2');
    expect(events.at(-1)).toBe('rotated 0a1→0a2');
    // Success resets the backoff: the next certificate renews on schedule again.
    expect(clock.next()).toBe(clock.now() + 0.65 * 3_600_000);
  });

  it('warns at 90 % of the lifetime, and once expired renews with the join token instead', async () => {
    const { clock, ca, identity, events } = setup();
    await identity.start();
    ca.failWith = unavailable();
    await clock.advance(89_999);
    expect(events.filter((e) => e.startsWith('expiring'))).toEqual([]);
    await clock.advance(1);
    expect(events.filter((e) => e.startsWith('expiring'))).toEqual(['expiring 0a1 10000ms left']);
    await clock.advance(10_000);
    expect(events).toContain('expired 0a1');
    // No retry was scheduled past expiry: the last attempt with the certificate came at most at notAfter.
    const attempts = ca.proofs();
    expect(attempts.filter((p) => p === 'certificate').length).toBeGreaterThan(3);
    ca.failWith = undefined;
    await clock.advance(60_000);
    expect(ca.proofs().at(-1)).toBe('token');
    expect(identity.current().serial).toBe('0a2');
  });

  it('retries the first certificate while the CA is unavailable, but rejects a refused token at once', async () => {
    const { clock, ca, identity, errors } = setup();
    ca.failWith = unavailable();
    const started = identity.start();
    await clock.tick();
    await clock.tick();
    expect(errors.map((e) => [e.phase, e.retryInMs])).toEqual([
      ['issue', 750],
      ['issue', 1_500],
      ['issue', 3_000],
    ]);
    ca.failWith = undefined;
    await clock.tick();
    expect((await started).serial).toBe('0a1');

    const refused = setup();
    refused.ca.failWith = new MeshError(ErrorCode.forbidden, 'proof refused', {
      issues: [{ path: 'proof.token', message: 'has already been used' }],
    });
    await expect(refused.identity.start()).rejects.toMatchObject({ code: ErrorCode.forbidden });
    expect(refused.ca.requests).toHaveLength(1);
  });

  it('does not crash a process that does not listen for errors', async () => {
    const clock = new FakeClock();
    const ca = new FakeCa(clock);
    const identity = new WorkloadIdentity(ca, { service: 'payment', token: TOKEN, clock });
    identities.push(identity);
    await identity.start();
    ca.failWith = unavailable();
    await clock.advance(90_000);
    expect(identity.current().serial).toBe('0a1');
  });

  it('follows the trust bundle and the revocation list, and re-bootstraps with the token when its own serial is revoked', async () => {
    const { ca, identity, events } = setup();
    await identity.start();
    const bundles: string[] = [];
    identity.on('bundle', (pem) => bundles.push(pem));
    ca.bundles.push({
      trustDomain: 'novamesh.local',
      roots: [{ pem: 'root-2', fingerprint256: 'x', notAfter: '2040-01-01T00:00:00Z' }],
      updatedAt: '',
    });
    await settle();
    expect(bundles).toEqual(['root-2\n']);
    expect(identity.current().trustBundlePem).toBe('root-2\n');
    ca.revocations.push({ serials: ['0b:07', 'A1'], updatedAt: '' });
    await settle();
    // Node prints serials upper case; OpenSSL may keep or drop a leading zero byte.
    expect(identity.isRevoked('B07')).toBe(true);
    expect(identity.isRevoked('0B:07')).toBe(true);
    expect(identity.isRevoked('b7')).toBe(false);
    // Its own certificate (0a1) is revoked: it can no longer prove itself with it.
    expect(ca.proofs()).toEqual(['token', 'token']);
    expect(events.at(-1)).toBe('rotated 0a1→0a2');
    // The next certificate keeps the bundle the watcher delivered.
    expect(identity.current().trustBundlePem).toBe('root-2\n');
  });

  it('renews with the join token when the CA refuses its certificate as proof for good (signed under a root it no longer has)', async () => {
    const { clock, ca, identity, events } = setup();
    await identity.start();
    ca.refuseCertificatesWith = new MeshError(ErrorCode.forbidden, 'the certificate does not verify with any certificate of this CA');
    await identity.rotate();
    expect(ca.proofs()).toEqual(['token', 'certificate', 'token']);
    expect(events.at(-1)).toBe('rotated 0a1→0a2');
    // The new certificate is accepted as proof again at the next renewal.
    ca.refuseCertificatesWith = undefined;
    await clock.advance(65_000);
    expect(ca.proofs()).toEqual(['token', 'certificate', 'token', 'certificate']);
  });

  it('rotate() renews now; concurrent calls share one request', async () => {
    const { ca, identity } = setup();
    await identity.start();
    const [a, b] = await Promise.all([identity.rotate(), identity.rotate()]);
    expect(a).toBe(b);
    expect(ca.requests).toHaveLength(2);
    expect(a.serial).toBe('0a2');
  });

  it('close() stops every timer and watcher: nothing happens afterwards', async () => {
    const { clock, ca, identity } = setup();
    await identity.start();
    identity.close();
    expect(clock.pending()).toBe(0);
    await clock.advance(1_000_000);
    expect(ca.requests).toHaveLength(1);
    expect(() => identity.rotate()).toThrow(/closed/);
  });
});
