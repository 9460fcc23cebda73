import { beforeAll, describe, expect, it } from 'vitest';
import { PAYMENT, PAYMENT_ID, type TestCa, testCa } from './ca.spec-helper';
import {
  type CertifiedKey,
  createCsr,
  createIntermediateCa,
  createRootCa,
  type IssuedCertificate,
  signWorkloadCsr,
  verifyChain,
} from './index';

let ca: TestCa;
let other: TestCa;
let leaf: IssuedCertificate;
beforeAll(async () => {
  [ca, other] = await Promise.all([testCa(), testCa()]);
  const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
  leaf = await signWorkloadCsr({ csrPem, issuer: ca.intermediate, chainPems: ca.chainPems, identity: PAYMENT });
});

describe('verifyChain', () => {
  it('accepts leaf + intermediate up to a trusted root and returns the SPIFFE ID', async () => {
    const ok = { ok: true, spiffeId: PAYMENT_ID };
    expect(await verifyChain({ leafPem: leaf.certPem, chainPems: [ca.intermediate.certPem], trustedRootPems: [ca.root.certPem] })).toEqual(
      ok,
    );
    // the bundle a workload presents, with the root also in the chain and another root in the trust bundle
    expect(
      await verifyChain({ leafPem: leaf.chainPem, chainPems: [ca.root.certPem], trustedRootPems: [other.root.certPem + ca.root.certPem] }),
    ).toEqual(ok);
  });

  it('refuses an expired leaf, and one not yet valid', async () => {
    const expired = await verifyChain({
      leafPem: leaf.chainPem,
      chainPems: [],
      trustedRootPems: [ca.root.certPem],
      now: leaf.notAfter + 1000,
    });
    expect(expired).toEqual({
      ok: false,
      reason: `expired: "O=novamesh.local, OU=shop, CN=payment" was valid until ${new Date(leaf.notAfter).toISOString()}`,
    });
    const early = await verifyChain({
      leafPem: leaf.chainPem,
      chainPems: [],
      trustedRootPems: [ca.root.certPem],
      now: leaf.notBefore - 1000,
    });
    expect(early).toMatchObject({ ok: false, reason: expect.stringMatching(/^not yet valid: "O=novamesh.local, OU=shop, CN=payment"/) });
  });

  it("refuses a chain to another CA's root", async () => {
    const verdict = await verifyChain({ leafPem: leaf.chainPem, chainPems: [], trustedRootPems: [other.root.certPem] });
    expect(verdict).toEqual({
      ok: false,
      reason:
        'signature of "O=novamesh.local, CN=Novamesh Intermediate CA" does not verify with any certificate named "O=novamesh.local, CN=Novamesh Root CA"',
    });
  });

  it('refuses a wrong or missing intermediate', async () => {
    const wrong = await verifyChain({ leafPem: leaf.certPem, chainPems: [other.intermediate.certPem], trustedRootPems: [ca.root.certPem] });
    expect(wrong).toEqual({
      ok: false,
      reason:
        'signature of "O=novamesh.local, OU=shop, CN=payment" does not verify with any certificate named "O=novamesh.local, CN=Novamesh Intermediate CA"',
    });
    const missing = await verifyChain({ leafPem: leaf.certPem, chainPems: [], trustedRootPems: [ca.root.certPem] });
    expect(missing).toEqual({
      ok: false,
      reason:
        'untrusted: no trusted root or given intermediate issued "O=novamesh.local, OU=shop, CN=payment" (issuer "O=novamesh.local, CN=Novamesh Intermediate CA")',
    });
  });

  it('refuses a leaf under an intermediate whose root expired', async () => {
    const now = Date.now();
    const verdict = await verifyChain({
      leafPem: leaf.chainPem,
      chainPems: [],
      trustedRootPems: [ca.root.certPem],
      now: now + 3651 * 86_400_000,
    });
    expect(verdict.ok).toBe(false);
  });

  it('refuses a CA certificate as the leaf, a path longer than pathLen allows, and garbage', async () => {
    expect(await verifyChain({ leafPem: ca.intermediate.certPem, chainPems: [], trustedRootPems: [ca.root.certPem] })).toEqual({
      ok: false,
      reason: 'leaf "O=novamesh.local, CN=Novamesh Intermediate CA" is a CA certificate',
    });
    // intermediate (pathLen 0) → sub-CA → leaf: one CA too many below the intermediate.
    const sub: CertifiedKey = await createIntermediateCa({ root: ca.intermediate, trustDomain: 'novamesh.local', commonName: 'Sub CA' });
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const deep = await signWorkloadCsr({ csrPem, issuer: sub, chainPems: [sub.certPem, ...ca.chainPems], identity: PAYMENT });
    expect(await verifyChain({ leafPem: deep.chainPem, chainPems: [], trustedRootPems: [ca.root.certPem] })).toEqual({
      ok: false,
      reason: '"O=novamesh.local, CN=Novamesh Intermediate CA" allows 0 CA certificates below it, the path has 1',
    });
    expect(await verifyChain({ leafPem: 'junk', chainPems: [], trustedRootPems: [ca.root.certPem] })).toEqual({
      ok: false,
      reason: 'leaf: not a PEM certificate',
    });
    expect(await verifyChain({ leafPem: leaf.certPem, chainPems: [], trustedRootPems: [] })).toEqual({
      ok: false,
      reason: 'no trusted roots given',
    });
  });

  it('accepts a leaf issued straight by a root', async () => {
    const root = await createRootCa({ trustDomain: 'novamesh.local' });
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const direct = await signWorkloadCsr({ csrPem, issuer: root, chainPems: [root.certPem], identity: PAYMENT });
    expect(direct.chainPem).toBe(direct.certPem);
    expect(await verifyChain({ leafPem: direct.certPem, chainPems: [], trustedRootPems: [root.certPem] })).toEqual({
      ok: true,
      spiffeId: PAYMENT_ID,
    });
  });
});
