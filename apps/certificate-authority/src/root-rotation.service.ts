import type { JetStreamClient } from '@nats-io/jetstream';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { followLastValues } from '@novamesh/bus';
import {
  beginRootRotation,
  type CertificateInfo,
  certificateInfo,
  finishRootRotation,
  type LoadedCa,
  type LoadOrCreateCaOptions,
  loadOrCreateCa,
  rootRotationInProgress,
} from '@novamesh/ca';
import {
  type CaCertificateInfoV1,
  type CaInfoResultV1,
  type CaRotateResultV1,
  type CaRotationRootV1,
  ErrorCode,
  MeshError,
  type RootRotationPhase,
  streams,
  subjects,
  type TrustBundleV1,
} from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { serialsToList } from './cert-prune.service';
import { CertRegistryService } from './cert-registry.service';
import { RotationLock } from './rotation-lock';
import { CA_INFO, CA_SETTINGS, type CaSettings, JETSTREAM, LOADED_CA, LOGGER } from './tokens';
import { rootsKey, TrustPublisherService } from './trust-publisher.service';

/** How many old-root certificates a refused `finish` names. */
const MAX_NAMED = 10;
/** Publishing the bundle and list anew after MESH_CA was created again: retried until it works, 1 s then doubling up to 30 s apart. */
const REPUBLISH_RETRY_MS = 1_000;
const REPUBLISH_RETRY_MAX_MS = 30_000;

export function describeCa(info: CertificateInfo): CaCertificateInfoV1 {
  return {
    subject: info.subject,
    serial: info.serial,
    fingerprint256: info.fingerprint256,
    notBefore: new Date(info.notBefore).toISOString(),
    notAfter: new Date(info.notAfter).toISOString(),
  };
}

const rootFingerprints = (ca: LoadedCa) => [ca.root.certPem, ...(ca.previous ? [ca.previous.rootPem] : [])].map(fingerprintOf);
const fingerprintOf = (pem: string) => certificateInfo(pem).fingerprint256;

/**
 * `mesh.v1.ca.rotate` and the replicas' convergence on the CA state.
 *
 * The shared LoadedCa object (LOADED_CA) is the CA every service of this replica signs and verifies
 * with; a rotation replaces its fields in place, synchronously, so a request sees either the old or
 * the new CA, never a mix. Every change of state goes through one queue: begin, finish and reloads
 * never interleave within a replica.
 *
 * Across replicas, `begin` and `finish` are exclusive through {@link RotationLock} (a compare-and-set
 * key in NATS KV held from `begin` to `finish`): of two concurrent `begin`s on two replicas exactly
 * one makes a new root, the other gets MESH_CONFLICT naming the replica that began the rotation.
 *
 * Replica convergence: the replica that handles `begin`/`finish` changes the CA directory, reloads it
 * and publishes the new trust bundle. Every replica follows `mesh.v1.ca.bundle`; when the published
 * roots differ from the ones it holds, it reloads its CA from the (shared) CA directory, and switches
 * only if the directory holds exactly the published roots (otherwise it logs a warning and keeps
 * its CA: its directory is not the shared one).
 */
@Injectable()
export class RootRotationService implements OnModuleDestroy {
  private readonly log: Logger;
  private queue: Promise<unknown> = Promise.resolve();
  private stopFollowing: (() => Promise<void>) | undefined;
  private stopped = false;
  /** Ends the wait between two tries of `publishAnew` (on stop). */
  private wakeRetry: (() => void) | undefined;

  constructor(
    @Inject(LOADED_CA) private readonly ca: LoadedCa,
    @Inject(CA_SETTINGS) private readonly settings: CaSettings,
    @Inject(CA_INFO) private readonly info: Omit<CaInfoResultV1, 'ok'>,
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    private readonly trust: TrustPublisherService,
    private readonly certs: CertRegistryService,
    private readonly lock: RotationLock,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'root-rotation' });
  }

  handle(phase: RootRotationPhase): Promise<CaRotateResultV1> {
    switch (phase) {
      case 'begin':
        return this.serialized(() => this.begin());
      case 'finish':
        return this.serialized(() => this.finish());
      default:
        return this.status('status');
    }
  }

  /** Follows the trust bundle so this replica switches when another one rotated the root. */
  async follow(): Promise<void> {
    const { stop } = await followLastValues({
      js: this.js,
      stream: streams.ca,
      filterSubject: subjects.caBundle,
      onMessage: (m) => {
        const bundle = m.json<TrustBundleV1>();
        void this.serialized(() => this.converge(bundle)).catch((e: unknown) =>
          this.log.error({ err: (e as Error).message }, 'CA state not reloaded after a trust bundle change'),
        );
      },
      logger: this.log,
      loadTimeoutMs: 5_000,
      recheckMs: this.settings.streamRecheckMs,
      provision: { replicas: this.settings.replicas },
      // MESH_CA was deleted and created again: it holds neither the bundle nor the revocation list.
      onReset: () => void this.publishAnew(),
    });
    this.stopFollowing = stop;
  }

  /**
   * Publishes the bundle and the revocation list again after MESH_CA was created again: the list
   * is rebuilt from the certificate records (every revoked certificate not yet expired), so no
   * revocation is lost with the stream. Safe on every replica at once: compare-and-set on both (the
   * bundle goes only into a stream without one, the list only adds what it lacks). Retried until
   * it works or the CA stops; a stop cuts the wait between tries short.
   */
  private async publishAnew(): Promise<void> {
    let waitMs = REPUBLISH_RETRY_MS;
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        await this.serialized(async () => {
          const revoked = serialsToList(await this.certs.entries(), Date.now());
          // The bundle only if the new stream has none: a rotation another replica published there
          // meanwhile must not be undone by this replica's older roots.
          await this.trust.start(this.settings.trustDomain, revoked, { bundleOnlyIfNone: true });
        });
        this.log.warn({ stream: streams.ca }, 'trust bundle and revocation list published again to a stream created anew');
        return;
      } catch (e) {
        if (this.stopped) return;
        this.log.error(
          { err: (e as Error).message, attempt, retryInMs: waitMs },
          'trust bundle and revocation list not published again yet',
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.wakeRetry = undefined;
            resolve();
          }, waitMs);
          this.wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        waitMs = Math.min(waitMs * 2, REPUBLISH_RETRY_MAX_MS);
      }
    }
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    this.wakeRetry?.();
    await this.stopFollowing?.();
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private dirOptions(): LoadOrCreateCaOptions {
    return {
      dir: this.settings.caDir,
      trustDomain: this.settings.trustDomain,
      ...(this.settings.passphrase ? { passphrase: this.settings.passphrase } : {}),
    };
  }

  /** Replaces the shared CA state in place (one synchronous step) and the `info` reply. */
  private apply(next: LoadedCa): void {
    const target = this.ca as Partial<LoadedCa>;
    delete target.previous;
    Object.assign(target, next);
    this.info.root = describeCa(certificateInfo(next.root.certPem));
    this.info.intermediate = describeCa(certificateInfo(next.intermediate.certPem));
  }

  private async begin(): Promise<CaRotateResultV1> {
    const held = await this.lock
      .acquire(this.settings.instance, () => rootRotationInProgress(this.settings.caDir))
      .catch((e: unknown) => {
        this.log.warn({ err: (e as Error).message }, 'root rotation not begun');
        throw e;
      });
    let next: LoadedCa;
    try {
      next = await beginRootRotation(this.dirOptions());
    } catch (e) {
      // Nothing changed on disk (or a rotation without a lock is in progress: the directory still refuses).
      await this.lock.release(held);
      throw e;
    }
    this.apply(next);
    const bundle = await this.trust.publishBundle(this.settings.trustDomain);
    this.log.info(
      {
        newRoot: fingerprintOf(next.root.certPem),
        oldRoot: next.previous && fingerprintOf(next.previous.rootPem),
        roots: bundle.roots.length,
      },
      'root rotation begun: signing with the new intermediate, both roots trusted',
    );
    return this.status('begin');
  }

  private async finish(): Promise<CaRotateResultV1> {
    const before = await this.status('finish');
    const old = before.roots.find((r) => r.role === 'previous');
    if (!old) throw new MeshError(ErrorCode.conflict, 'no root rotation is in progress: run `meshctl ca rotate begin` first');
    if (old.liveCertificates > 0) {
      const newFp = fingerprintOf(this.ca.root.certPem);
      const stale = (await this.certs.live()).filter((r) => r.rootFingerprint256 !== newFp);
      throw new MeshError(
        ErrorCode.conflict,
        `${old.liveCertificates} live certificate(s) still chain to the old root ${old.fingerprint256.slice(0, 16)}…: ` +
          'finishing now would make their peers refuse them. Wait until the workloads have re-issued under the new root ' +
          '(they do so on their own when the trust bundle changes; see `meshctl ca rotate status`), or revoke those certificates',
        {
          issues: stale
            .slice(0, MAX_NAMED)
            .map((r) => ({ path: `certificates.${r.serial}`, message: `${r.spiffeId} chains to the old root (not after ${r.notAfter})` })),
        },
      );
    }
    const held = await this.lock.claimFinish(this.settings.instance);
    let next: LoadedCa;
    try {
      next = await finishRootRotation(this.dirOptions());
    } catch (e) {
      await this.lock.unclaimFinish(held);
      throw e;
    }
    this.apply(next);
    await this.lock.release(held);
    await this.trust.publishBundle(this.settings.trustDomain);
    this.log.info({ root: fingerprintOf(next.root.certPem), retiredRoot: old.fingerprint256 }, 'root rotation finished: old root retired');
    return this.status('finish');
  }

  /** Roots with their live certificates; records without a root fingerprint count toward the previous root. */
  private async status(phase: RootRotationPhase): Promise<CaRotateResultV1> {
    const { root, previous } = this.ca;
    const currentFp = fingerprintOf(root.certPem);
    const [live, lock] = await Promise.all([this.certs.live(), previous ? this.lock.read().catch(() => undefined) : undefined]);
    const onCurrent = live.filter((r) => r.rootFingerprint256 === currentFp).length;
    const entry = (role: CaRotationRootV1['role'], pem: string, count: number): CaRotationRootV1 => {
      const info = certificateInfo(pem);
      return {
        role,
        subject: info.subject,
        fingerprint256: info.fingerprint256,
        notAfter: new Date(info.notAfter).toISOString(),
        liveCertificates: count,
      };
    };
    const roots = previous
      ? [entry('current', root.certPem, onCurrent), entry('previous', previous.rootPem, live.length - onCurrent)]
      : [entry('current', root.certPem, live.length)];
    return {
      ok: true,
      phase,
      rotating: previous !== undefined,
      roots,
      instance: this.settings.instance,
      ...(lock ? { startedBy: lock.record.instance, startedAt: lock.record.startedAt } : {}),
    };
  }

  /** Reloads the CA directory when a replica published roots other than the ones this replica holds. */
  private async converge(bundle: TrustBundleV1): Promise<void> {
    const published = rootsKey(bundle.roots.map((r) => r.fingerprint256));
    if (published === rootsKey(rootFingerprints(this.ca))) return;
    const next = await loadOrCreateCa(this.dirOptions());
    const loaded = rootsKey(rootFingerprints(next));
    if (loaded !== published) {
      // An older bundle delivered late, or a directory that is not shared with the other replicas.
      if (loaded !== rootsKey(rootFingerprints(this.ca))) this.apply(next);
      this.log.warn({ published, loaded }, 'the published trust bundle differs from the CA directory; serving what the directory holds');
      return;
    }
    this.apply(next);
    this.log.info({ roots: bundle.roots.map((r) => r.fingerprint256) }, 'CA state reloaded: another replica changed the roots');
  }
}
