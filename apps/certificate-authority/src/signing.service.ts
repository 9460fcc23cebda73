import { verify, X509Certificate } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { certificateInfo, type LoadedCa, signWorkloadCsr, spiffeId, verifyChain } from '@novamesh/ca';
import { type CaCertRecordV1, type CaSignRequestV1, type CaSignResultV1, MeshError, MeshValidationError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { CertRegistryService } from './cert-registry.service';
import { JoinTokensService, type TokenGrant, tokenId } from './join-tokens.service';
import type { CaMetrics } from './metrics';
import { ProofRefused, type RefusalReason } from './refusal';
import { CA_SETTINGS, type CaSettings, LOADED_CA, LOGGER, METRICS } from './tokens';
import { TrustPublisherService } from './trust-publisher.service';

/**
 * `mesh.v1.ca.sign`: checks the proof of identity, then the CSR, signs, and only then uses the join
 * token (a refused CSR does not burn it; a token consumed by a concurrent request wins and this
 * certificate is thrown away unseen). Renewal proof: a certificate for the same identity that
 * chains to the bundle now, is not revoked, and whose key signed this CSR. Stateless apart from
 * the KV buckets; safe to call concurrently on every replica.
 */
@Injectable()
export class SigningService {
  private readonly log: Logger;

  constructor(
    @Inject(LOADED_CA) private readonly ca: LoadedCa,
    @Inject(CA_SETTINGS) private readonly settings: CaSettings,
    private readonly tokens: JoinTokensService,
    private readonly certs: CertRegistryService,
    private readonly trust: TrustPublisherService,
    @Inject(LOGGER) logger: Logger,
    @Inject(METRICS) private readonly metrics: CaMetrics,
  ) {
    this.log = logger.child({ component: 'signing' });
  }

  async sign(req: CaSignRequestV1): Promise<CaSignResultV1> {
    const identity = { trustDomain: this.settings.trustDomain, namespace: req.identity.namespace, service: req.identity.service };
    const id = spiffeId(identity);
    const proofKind = req.proof.token !== undefined ? 'token' : 'certificate';
    const logFields = { spiffeId: id, proof: proofKind, ...(req.proof.token ? { tokenId: tokenId(req.proof.token) } : {}) };
    const timed = this.metrics.signTimer();
    try {
      const now = Date.now();
      let grant: TokenGrant | undefined;
      let renewedFrom: string | undefined;
      if (req.proof.token !== undefined) grant = await this.tokens.check(req.proof.token, req.identity, now);
      else renewedFrom = await this.checkRenewal(req.csr, req.proof.certificatePem!, req.proof.signature!, id, now);

      // One consistent view of the CA: a root rotation replaces these fields (synchronously) between requests.
      const { intermediate, chainPems, root } = this.ca;
      const issued = await signWorkloadCsr({
        csrPem: req.csr,
        issuer: intermediate,
        chainPems,
        identity,
        lifetimeMs: this.settings.certTtlMs,
        now,
      }).catch((e: unknown) => {
        if (e instanceof MeshValidationError) Object.assign(e, { reason: 'csr_refused' satisfies RefusalReason });
        throw e;
      });
      if (grant) await this.tokens.consume(req.proof.token!, req.identity, grant);

      const record: CaCertRecordV1 = {
        serial: issued.serial,
        spiffeId: issued.spiffeId,
        namespace: identity.namespace,
        service: identity.service,
        notBefore: new Date(issued.notBefore).toISOString(),
        notAfter: new Date(issued.notAfter).toISOString(),
        issuedAt: new Date(now).toISOString(),
        proof: proofKind,
        ...(renewedFrom ? { renewedFrom } : {}),
        rootFingerprint256: this.fingerprint(root.certPem),
        state: 'issued',
      };
      await this.certs.record(record);
      if (renewedFrom) await this.certs.markSuperseded(renewedFrom, issued.serial);
      this.log.info({ ...logFields, serial: issued.serial, notAfter: record.notAfter, renewedFrom }, 'certificate issued');
      this.metrics.certificateIssued(proofKind === 'token' ? 'token' : 'renewal');
      timed('issued');
      return {
        ok: true,
        certificatePem: issued.certPem,
        chainPem: issued.chainPem,
        serial: issued.serial,
        notAfter: record.notAfter,
        spiffeId: issued.spiffeId,
        trustBundlePem: this.trust.trustBundlePem(),
      };
    } catch (e) {
      const reason = (e as { reason?: string }).reason;
      if (reason) {
        this.log.warn({ ...logFields, reason, issues: (e as MeshError).issues }, 'certificate refused');
        this.metrics.refused(reason);
      }
      timed(reason ? 'refused' : 'error');
      throw e;
    }
  }

  private fingerprintMemo: { pem?: string; fingerprint?: string } = {};
  /** SHA-256 fingerprint of the signing root (parsed once per root). */
  private fingerprint(pem: string): string {
    if (this.fingerprintMemo.pem !== pem) this.fingerprintMemo = { pem, fingerprint: certificateInfo(pem).fingerprint256 };
    return this.fingerprintMemo.fingerprint as string;
  }

  /** Returns the serial of the proving certificate, or throws ProofRefused saying why it does not prove the identity. */
  private async checkRenewal(csrPem: string, certificatePem: string, signature: string, expectedId: string, now: number): Promise<string> {
    // During a root rotation a workload renews with a certificate from the previous intermediate.
    const previous = this.ca.previous?.intermediatePem;
    const verdict = await verifyChain({
      leafPem: certificatePem,
      chainPems: previous ? [...this.ca.chainPems, previous] : this.ca.chainPems,
      trustedRootPems: [this.ca.trustBundlePem],
      now,
    });
    if (!verdict.ok) throw new ProofRefused('certificate_invalid', 'proof.certificatePem', verdict.reason);
    if (verdict.spiffeId !== expectedId)
      throw new ProofRefused('identity_mismatch', 'identity', `the certificate is for ${verdict.spiffeId}, not ${expectedId}`);
    const { serial } = certificateInfo(certificatePem);
    let possessed = false;
    try {
      const key = new X509Certificate(certificatePem).publicKey;
      possessed = verify('sha256', Buffer.from(csrPem, 'utf8'), key, Buffer.from(signature, 'base64'));
    } catch {
      possessed = false;
    }
    if (!possessed)
      throw new ProofRefused('possession_not_proven', 'proof.signature', "does not verify with the certificate's public key over csr");
    const record = await this.certs.get(serial);
    if (record?.state === 'revoked')
      throw new ProofRefused('certificate_revoked', 'proof.certificatePem', `certificate ${serial} was revoked at ${record.revokedAt}`);
    return serial;
  }
}
