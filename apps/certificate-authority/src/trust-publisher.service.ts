import { createHash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { Inject, Injectable } from '@nestjs/common';
import { publishJson } from '@novamesh/bus';
import { certificateInfo, type LoadedCa } from '@novamesh/ca';
import { ErrorCode, MeshError, type RevocationListV1, streams, subjects, type TrustBundleV1 } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { isCasConflict } from './refusal';
import { JETSTREAM, JETSTREAM_MANAGER, LOADED_CA, LOGGER } from './tokens';

const MAX_CAS_ATTEMPTS = 20;

/** The bundle this CA trusts: today its one root (root rotation will put two here for a while). */
export function bundleOf(ca: LoadedCa, trustDomain: string, now = Date.now()): TrustBundleV1 {
  const info = certificateInfo(ca.root.certPem);
  return {
    trustDomain,
    roots: [{ pem: ca.root.certPem, fingerprint256: info.fingerprint256, notAfter: new Date(info.notAfter).toISOString() }],
    updatedAt: new Date(now).toISOString(),
  };
}

const bundleKey = (b: TrustBundleV1) =>
  `${b.trustDomain}|${b.roots
    .map((r) => r.fingerprint256)
    .sort()
    .join(',')}`;

/**
 * Publishes the CA's public state to MESH_CA: the trust bundle on `mesh.v1.ca.bundle` (only when
 * its roots differ from the retained one) and the revocation list on `mesh.v1.ca.revoked`, which
 * every replica extends with a compare-and-set on the subject's last sequence, so concurrent
 * revocations on different replicas never drop each other.
 */
@Injectable()
export class TrustPublisherService {
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(JETSTREAM_MANAGER) private readonly jsm: JetStreamManager,
    @Inject(LOADED_CA) private readonly ca: LoadedCa,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'trust-publisher' });
  }

  /** The PEM roots a workload should trust, concatenated. */
  trustBundlePem(): string {
    return this.ca.trustBundlePem;
  }

  /** Publishes the bundle unless the stream already holds one with the same roots; makes sure a revocation list exists. */
  async start(trustDomain: string): Promise<void> {
    const bundle = bundleOf(this.ca, trustDomain);
    const last = await this.jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle });
    const retained = last?.json<TrustBundleV1>();
    if (!retained || bundleKey(retained) !== bundleKey(bundle)) {
      const id = createHash('sha256').update(bundleKey(bundle)).digest('hex').slice(0, 32);
      await publishJson(this.js, subjects.caBundle, bundle, { msgId: `bundle:${id}` });
      this.log.info({ roots: bundle.roots.map((r) => r.fingerprint256) }, 'trust bundle published');
    }
    const revoked = await this.jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caRevoked });
    if (!revoked) {
      const empty: RevocationListV1 = { serials: [], updatedAt: new Date().toISOString() };
      await publishJson(this.js, subjects.caRevoked, empty, { expectLastSubjectSequence: 0 }).catch((e) => {
        if (!isCasConflict(e)) throw e; // another replica published it first
      });
    }
  }

  /** Adds `serial` to the published revocation list (no-op when it is already there). */
  async addRevoked(serial: string): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const last = await this.jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caRevoked });
      const list = last?.json<RevocationListV1>() ?? { serials: [], updatedAt: '' };
      if (list.serials.includes(serial)) return;
      const next: RevocationListV1 = { serials: [...list.serials, serial].sort(), updatedAt: new Date().toISOString() };
      try {
        await publishJson(this.js, subjects.caRevoked, next, { expectLastSubjectSequence: last?.seq ?? 0 });
        this.log.info({ serial, revoked: next.serials.length }, 'revocation list published');
        return;
      } catch (e) {
        if (!isCasConflict(e))
          throw new MeshError(ErrorCode.unavailable, `revocation list not published: ${(e as Error).message}`, {
            cause: e,
            retryable: true,
          });
      }
    }
    throw new MeshError(ErrorCode.conflict, 'the revocation list is changing too fast; revoke again', { retryable: true });
  }
}
