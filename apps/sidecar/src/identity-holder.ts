import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertificateClient } from '@novamesh/identity';
import {
  type IdentityChange,
  type IdentitySnapshot,
  type IdentitySource,
  type OwnCertificatePaths,
  type OwnCertificatesWatcher,
  WorkloadIdentity,
  watchOwnCertificates,
} from '@novamesh/identity';
import type { Logger } from '@novamesh/observability';
import type { WorkloadCertificate } from '@novamesh/sdk';
import { DiskWriter } from './disk-writer';

const FILE = 'identity.json';

/**
 * The credentials this sidecar's TLS uses, as one {@link IdentitySource} whatever provides them: a
 * mesh-issued certificate (renewed by a {@link WorkloadIdentity}, saved to disk so a restart works
 * while the CA is down), or bring-your-own files named by the service's MutualTLSPolicy (watched and
 * reloaded). Listeners hear `certificate` when the active source switches, so TLS contexts are rebuilt.
 * Revocations are the union of the identity's feed and the snapshot's list.
 */
export class IdentityHolder implements IdentitySource {
  private mesh: WorkloadIdentity | undefined;
  private own: { key: string; watcher: OwnCertificatesWatcher } | undefined;
  private readonly listeners = new Set<(change: IdentityChange) => void>();
  private readonly disk: DiskWriter;
  private unsubscribeActive: (() => void) | undefined;
  private revokedBySnapshot: ReadonlySet<string> = new Set();

  constructor(private readonly opts: { service: string; namespace: string; dataDir: string; logger: Logger; newRootRenewMaxMs?: number }) {
    this.disk = new DiskWriter(opts.dataDir);
  }

  /** True once a certificate is available. */
  get ready(): boolean {
    return this.active() !== undefined;
  }

  /** Why the CA refused the join token (for good: a new token is needed), once it has. */
  get refusal(): string | undefined {
    return this.refused;
  }

  private refused: string | undefined;

  /** Where the certificate comes from, for /config_dump. */
  get kind(): 'mesh' | 'files' | 'none' {
    return this.own ? 'files' : this.mesh && this.meshReady ? 'mesh' : 'none';
  }

  private meshReady = false;

  private active(): IdentitySource | undefined {
    if (this.own) return this.own.watcher;
    return this.meshReady ? this.mesh : undefined;
  }

  current(): IdentitySnapshot {
    const a = this.active();
    if (!a) throw new Error('this sidecar has no certificate yet');
    return a.current();
  }

  isRevoked(serial: string): boolean {
    const s = serial.toLowerCase().replace(/:/g, '');
    return this.revokedBySnapshot.has(s) || (this.mesh?.isRevoked(s) ?? false);
  }

  subscribe(listener: (change: IdentityChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setRevoked(serials: readonly string[]): void {
    const next = new Set(serials.map((s) => s.toLowerCase()));
    if (next.size === this.revokedBySnapshot.size && [...next].every((s) => this.revokedBySnapshot.has(s))) return;
    this.revokedBySnapshot = next;
    this.emit('revocations');
  }

  /**
   * Obtains (or resumes from disk) the mesh certificate with `token` in the background; resolves when
   * the first one is in use. Rejects only when the CA refuses the token (retried errors are logged).
   */
  async startMesh(client: CertificateClient, token: string): Promise<void> {
    const max = this.opts.newRootRenewMaxMs;
    const identity = new WorkloadIdentity(client, {
      service: this.opts.service,
      namespace: this.opts.namespace,
      token,
      // The minimum lets a new trust bundle reach every peer before anyone presents a new-root chain.
      ...(max ? { policy: { newRootRenewWithinMs: [Math.min(5_000, max / 2), max] as const } } : {}),
    });
    this.mesh = identity;
    identity.on('error', (err) => this.opts.logger.warn({ err: err.message, phase: err.phase, retryInMs: err.retryInMs }, 'identity'));
    identity.on('rotated', (cur, prev) => {
      this.opts.logger.info({ serial: cur.serial, notAfter: cur.notAfter, previous: prev?.serial }, 'certificate in use');
      void this.save(cur);
    });
    const resume = await this.load();
    try {
      await identity.start(resume ? { resume } : {});
    } catch (err) {
      this.refused = (err as Error).message;
      throw err;
    }
    this.meshReady = true;
    if (!this.own) this.follow(identity);
  }

  /** Switches to bring-your-own files, or back to the mesh certificate with `undefined`. Throws (keeping the current source) when the files fail their checks. */
  async useFiles(paths: OwnCertificatePaths | undefined): Promise<void> {
    const key = paths ? `${paths.certPath}\0${paths.keyPath}\0${paths.caPath}` : undefined;
    if (key === this.own?.key) return;
    if (!paths) {
      this.own?.watcher.close();
      this.own = undefined;
      if (this.mesh && this.meshReady) this.follow(this.mesh);
      return;
    }
    const watcher = await watchOwnCertificates(paths, (change) => {
      if (!change.ok) this.opts.logger.warn({ err: change.error.message }, 'bring-your-own certificates not reloaded');
    });
    this.own?.watcher.close();
    this.own = { key: key as string, watcher };
    this.follow(watcher);
  }

  close(): void {
    this.unsubscribeActive?.();
    this.mesh?.close();
    this.own?.watcher.close();
  }

  private follow(source: IdentitySource): void {
    this.unsubscribeActive?.();
    this.unsubscribeActive = source.subscribe((change) => this.emit(change));
    this.emit('certificate');
  }

  private emit(change: IdentityChange): void {
    for (const l of this.listeners) l(change);
  }

  private async load(): Promise<WorkloadCertificate | undefined> {
    try {
      return JSON.parse(await readFile(join(this.opts.dataDir, FILE), 'utf8')) as WorkloadCertificate;
    } catch {
      return undefined;
    }
  }

  /** Key and certificate, mode 0600, whole and in order ({@link DiskWriter}): what a restart resumes from (static stability). */
  private async save(cur: IdentitySnapshot): Promise<void> {
    const saved: WorkloadCertificate = {
      certificatePem: cur.certPem,
      chainPem: cur.chainPem,
      keyPem: cur.keyPem,
      serial: cur.serial,
      notAfter: cur.notAfter.toISOString(),
      spiffeId: cur.spiffeId,
      trustBundlePem: cur.trustBundlePem,
    };
    try {
      await this.disk.write(FILE, JSON.stringify(saved));
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'cannot save the certificate for restarts');
    }
  }
}
