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

/** The bundle this CA trusts: its root, then during a root rotation the previous root too. */
export function bundleOf(ca: LoadedCa, trustDomain: string, now = Date.now()): TrustBundleV1 {
  const pems = [ca.root.certPem, ...(ca.previous ? [ca.previous.rootPem] : [])];
  return {
    trustDomain,
    roots: pems.map((pem) => {
      const info = certificateInfo(pem);
      return { pem, fingerprint256: info.fingerprint256, notAfter: new Date(info.notAfter).toISOString() };
    }),
    updatedAt: new Date(now).toISOString(),
  };
}

/** The fingerprints of a bundle's roots as one comparable key (order does not matter). */
export const rootsKey = (fingerprints: readonly string[]) => [...fingerprints].sort().join(',');

const bundleKey = (b: TrustBundleV1) => `${b.trustDomain}|${rootsKey(b.roots.map((r) => r.fingerprint256))}`;

/**
 * Publishes the CA's public state to MESH_CA: the trust bundle on `mesh.v1.ca.bundle` (only when
 * its roots differ from the retained one) and the revocation list on `mesh.v1.ca.revoked`, which
 * every replica extends (revocations) and shrinks (pruning of expired serials) with a
 * compare-and-set on the subject's last sequence, so concurrent changes on different replicas never
 * drop each other.
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

  /**
   * Publishes the bundle unless the stream already holds one with the same roots (with
   * `bundleOnlyIfNone`: unless it holds any bundle) and makes sure the revocation list exists and
   * holds every one of `revoked` (the serials the certificate records say must be listed): a list
   * lost with its stream is rebuilt, never started over empty.
   */
  async start(trustDomain: string, revoked: readonly string[], opts: { bundleOnlyIfNone?: boolean } = {}): Promise<void> {
    if (opts.bundleOnlyIfNone) await this.publishFirstBundle(trustDomain);
    else await this.publishBundle(trustDomain);
    await this.restoreRevoked(revoked);
    await this.ensureRevocationList();
  }

  /**
   * Publishes this CA's bundle only into a stream that holds none (compare-and-set on "no bundle
   * yet"). For a stream created anew: this replica's roots may be behind a rotation another replica
   * already published there, and the follow brings that one in.
   */
  private async publishFirstBundle(trustDomain: string): Promise<void> {
    const bundle = bundleOf(this.ca, trustDomain);
    if (await this.publishIfNone(subjects.caBundle, bundle))
      this.log.info({ roots: bundle.roots.map((r) => r.fingerprint256) }, 'trust bundle published');
  }

  /** Publishes an empty revocation list unless the stream holds one. */
  private async ensureRevocationList(): Promise<void> {
    const empty: RevocationListV1 = { serials: [], updatedAt: new Date().toISOString() };
    await this.publishIfNone(subjects.caRevoked, empty);
  }

  /**
   * Publishes `value` on `subject` only if the stream holds nothing there (compare-and-set on "no
   * message yet"); false when something is there already (another replica's), which is left as it is.
   */
  private async publishIfNone(subject: string, value: unknown): Promise<boolean> {
    try {
      await publishJson(this.js, subject, value, { expectLastSubjectSequence: 0 });
      return true;
    } catch (e) {
      if (!isCasConflict(e)) throw e;
      return false;
    }
  }

  /** Publishes this CA's bundle (its roots now) unless the stream's last bundle has the same roots. */
  async publishBundle(trustDomain: string): Promise<TrustBundleV1> {
    const bundle = bundleOf(this.ca, trustDomain);
    const last = await this.jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle });
    const retained = last?.json<TrustBundleV1>();
    if (!retained || bundleKey(retained) !== bundleKey(bundle)) {
      // Deduplicated by roots: replicas starting together publish one bundle. A set of roots never
      // comes back (each rotation makes a new root), so the dedupe window cannot swallow a change.
      const id = createHash('sha256').update(bundleKey(bundle)).digest('hex').slice(0, 32);
      await publishJson(this.js, subjects.caBundle, bundle, { msgId: `bundle:${id}` });
      this.log.info({ roots: bundle.roots.map((r) => r.fingerprint256) }, 'trust bundle published');
    }
    return bundle;
  }

  /** Adds `serial` to the published revocation list (no-op when it is already there). */
  async addRevoked(serial: string): Promise<void> {
    const added = await this.updateRevoked((serials) => (serials.includes(serial) ? undefined : [...serials, serial]));
    if (added) this.log.info({ serial, revoked: added.length }, 'revocation list published');
  }

  /** Puts back on the published revocation list every one of `serials` it lacks (a list lost with its stream). Returns those added. */
  async restoreRevoked(serials: readonly string[]): Promise<string[]> {
    let missing: string[] = [];
    await this.updateRevoked((listed) => {
      missing = serials.filter((s) => !listed.includes(s));
      return missing.length ? [...listed, ...missing] : undefined;
    });
    if (missing.length) this.log.warn({ restored: missing.length, serials: missing }, 'revoked serials put back on the revocation list');
    return missing;
  }

  /**
   * Removes from the published revocation list every serial `keep` says no longer needs to be there
   * (its certificate expired: peers refuse it for that anyway). Returns the serials removed.
   */
  async pruneRevoked(keep: (serial: string) => boolean): Promise<string[]> {
    let removed: string[] = [];
    await this.updateRevoked((serials) => {
      removed = serials.filter((s) => !keep(s));
      return removed.length ? serials.filter(keep) : undefined;
    });
    if (removed.length) this.log.info({ removed: removed.length, serials: removed }, 'expired serials pruned from the revocation list');
    return removed;
  }

  /**
   * Read-modify-write of the list with a compare-and-set on the subject's last sequence, retried on
   * a lost race, so concurrent changes on different replicas never drop each other. `change`
   * returns the new serials, or undefined for "nothing to do". Returns the serials published.
   */
  private async updateRevoked(change: (serials: readonly string[]) => string[] | undefined): Promise<string[] | undefined> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const last = await this.jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caRevoked });
      const serials = change(last?.json<RevocationListV1>().serials ?? []);
      if (!serials) return undefined;
      const next: RevocationListV1 = { serials: [...serials].sort(), updatedAt: new Date().toISOString() };
      try {
        await publishJson(this.js, subjects.caRevoked, next, { expectLastSubjectSequence: last?.seq ?? 0 });
        return next.serials;
      } catch (e) {
        if (!isCasConflict(e))
          throw new MeshError(ErrorCode.unavailable, `revocation list not published: ${(e as Error).message}`, {
            cause: e,
            retryable: true,
          });
      }
    }
    throw new MeshError(ErrorCode.conflict, 'the revocation list is changing too fast; try again', { retryable: true });
  }
}
