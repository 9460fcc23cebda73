import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { type Issue, MeshValidationError } from '@novamesh/contracts';
import { certificateBlocks, parseCertificates, spiffeIdOf } from './pem';
import type { IdentityChange, IdentitySnapshot, IdentitySource } from './workload-identity';

export interface OwnCertificatePaths {
  /** The leaf first, optionally followed by intermediates (PEM). */
  certPath: string;
  /** Its private key (PEM: PKCS#8, PKCS#1 or SEC1; encrypted only with `passphrase`). */
  keyPath: string;
  /** The CA certificate(s) the chain must verify to, also used to verify peers (PEM). */
  caPath: string;
  passphrase?: string;
}

/** Bring-your-own certificates after their checks. `spiffeId` is empty when the certificate has no SPIFFE URI SAN. */
export interface OwnCertificates extends IdentitySnapshot {
  readonly notBefore: Date;
}

const MAX_CHAIN = 10;

/**
 * Loads the seed's bring-your-own files (`enableMutualTLS(service, certPath, keyPath, caPath)`) and
 * checks them as a sidecar would need them: the key matches the certificate, the chain verifies to
 * the CA file, and nothing in it is expired or not yet valid. Throws a MeshValidationError whose
 * issues name the file (`path`) and the problem, every problem found at once.
 */
export async function loadOwnCertificates(opts: OwnCertificatePaths & { now?: number }): Promise<OwnCertificates> {
  const now = opts.now ?? Date.now();
  const issues: Issue[] = [];
  const read = async (path: string): Promise<string | undefined> => {
    try {
      return await readFile(path, 'utf8');
    } catch (e) {
      issues.push({ path, message: `cannot be read: ${(e as Error).message}` });
      return undefined;
    }
  };
  const [certText, keyText, caText] = await Promise.all([read(opts.certPath), read(opts.keyPath), read(opts.caPath)]);
  const certs = certText === undefined ? undefined : parseFile(opts.certPath, certText, issues);
  const cas = caText === undefined ? undefined : parseFile(opts.caPath, caText, issues);
  let key: KeyObject | undefined;
  if (keyText !== undefined) {
    try {
      key = createPrivateKey({ key: keyText, format: 'pem', ...(opts.passphrase ? { passphrase: opts.passphrase } : {}) });
    } catch (e) {
      const msg = (e as Error).message;
      issues.push({
        path: opts.keyPath,
        message: /passphrase|decrypt|bad decrypt/i.test(msg)
          ? `is encrypted and cannot be decrypted${opts.passphrase ? ' with the given passphrase' : ': give its passphrase'}`
          : `is not a PEM private key: ${msg}`,
      });
    }
  }
  const leaf = certs?.[0];
  if (leaf && key && !leaf.checkPrivateKey(key))
    issues.push({ path: opts.keyPath, message: `does not match the certificate in ${opts.certPath} (${subjectOf(leaf)})` });
  if (certs) checkDates(opts.certPath, certs, now, issues);
  if (cas) checkDates(opts.caPath, cas, now, issues);
  if (certs && cas && leaf) {
    const problem = chainProblem(certs, cas);
    if (problem) issues.push({ path: opts.caPath, message: problem });
  }
  if (issues.length || !leaf || !key || !certs || !cas) throw new MeshValidationError('bring-your-own certificates refused', issues);
  return Object.freeze({
    certPem: `${leaf.toString().trim()}\n`,
    chainPem: `${certs.map((c) => c.toString().trim()).join('\n')}\n`,
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    trustBundlePem: `${cas.map((c) => c.toString().trim()).join('\n')}\n`,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    spiffeId: spiffeIdOf(leaf) ?? '',
    serial: leaf.serialNumber.toLowerCase(),
  });
}

function parseFile(path: string, text: string, issues: Issue[]): X509Certificate[] | undefined {
  const blocks = certificateBlocks(text);
  if (!blocks.length) {
    issues.push({ path, message: 'contains no PEM certificate (-----BEGIN CERTIFICATE-----)' });
    return undefined;
  }
  const out: X509Certificate[] = [];
  blocks.forEach((block, i) => {
    try {
      out.push(...parseCertificates(block));
    } catch (e) {
      issues.push({ path, message: `certificate ${i + 1} does not parse: ${(e as Error).message}` });
    }
  });
  return out.length === blocks.length ? out : undefined;
}

function subjectOf(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ', ');
}

function checkDates(path: string, certs: X509Certificate[], now: number, issues: Issue[]): void {
  certs.forEach((c, i) => {
    const which = certs.length > 1 ? `certificate ${i + 1} (${subjectOf(c)})` : `the certificate (${subjectOf(c)})`;
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    if (to <= now) issues.push({ path, message: `${which} expired at ${new Date(to).toISOString()}` });
    else if (from > now) issues.push({ path, message: `${which} is not valid before ${new Date(from).toISOString()}` });
  });
}

/** Walks from the leaf through the file's intermediates to a certificate of the CA file; a reason when it cannot. */
function chainProblem(certs: X509Certificate[], cas: X509Certificate[]): string | undefined {
  const issued = (child: X509Certificate, parent: X509Certificate) => child.checkIssued(parent) && child.verify(parent.publicKey);
  let cur = certs[0] as X509Certificate;
  const intermediates = certs.slice(1);
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (cas.some((ca) => ca.fingerprint256 === cur.fingerprint256 || issued(cur, ca))) return undefined;
    const next = intermediates.find((c) => c !== cur && issued(cur, c));
    if (!next)
      return `does not contain the issuer of ${subjectOf(cur)} (issued by ${subjectOf({ subject: cur.issuer } as X509Certificate)}): the chain does not verify to this CA`;
    cur = next;
  }
  return `the chain is longer than ${MAX_CHAIN} certificates`;
}

export type OwnCertificatesChange = { ok: true; certificates: OwnCertificates } | { ok: false; error: MeshValidationError };

/**
 * Bring-your-own files as an {@link IdentitySource}: loaded and checked once (throws like
 * {@link loadOwnCertificates}), then reloaded when the files change. The directories are watched, not
 * the files, so editors' atomic renames and Kubernetes secret symlink swaps are seen; events are
 * debounced. A reload that fails its checks keeps the previous certificates and reports why.
 */
export class OwnCertificatesWatcher implements IdentitySource {
  private snapshot: OwnCertificates;
  private readonly listeners = new Set<(change: IdentityChange) => void>();
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly paths: OwnCertificatePaths,
    initial: OwnCertificates,
    private readonly onChange: ((change: OwnCertificatesChange) => void) | undefined,
    private readonly debounceMs: number,
  ) {
    this.snapshot = initial;
  }

  static async start(
    paths: OwnCertificatePaths,
    onChange?: (change: OwnCertificatesChange) => void,
    opts: { debounceMs?: number } = {},
  ): Promise<OwnCertificatesWatcher> {
    const w = new OwnCertificatesWatcher(paths, await loadOwnCertificates(paths), onChange, opts.debounceMs ?? 200);
    const files = [paths.certPath, paths.keyPath, paths.caPath].map((p) => resolve(p));
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      const watcher = watch(dir, { persistent: false }, () => w.changed());
      watcher.on('error', (e) =>
        w.onChange?.({
          ok: false,
          error: new MeshValidationError('watching certificate files failed', [{ path: dir, message: e.message }]),
        }),
      );
      w.watchers.push(watcher);
    }
    return w;
  }

  current(): OwnCertificates {
    return this.snapshot;
  }

  isRevoked(): boolean {
    return false;
  }

  subscribe(listener: (change: IdentityChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reloads now (also what a file change triggers after the debounce). */
  async reload(): Promise<OwnCertificatesChange> {
    let change: OwnCertificatesChange;
    try {
      const next = await loadOwnCertificates(this.paths);
      if (this.closed) return { ok: true, certificates: this.snapshot };
      const same =
        next.chainPem === this.snapshot.chainPem &&
        next.keyPem === this.snapshot.keyPem &&
        next.trustBundlePem === this.snapshot.trustBundlePem;
      change = { ok: true, certificates: next };
      if (same) return change;
      const bundleOnly = next.chainPem === this.snapshot.chainPem && next.keyPem === this.snapshot.keyPem;
      this.snapshot = next;
      for (const l of this.listeners) l(bundleOnly ? 'bundle' : 'certificate');
    } catch (e) {
      change = {
        ok: false,
        error:
          e instanceof MeshValidationError
            ? e
            : new MeshValidationError('reloading certificates failed', [{ path: this.paths.certPath, message: String(e) }]),
      };
    }
    this.onChange?.(change);
    return change;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.listeners.clear();
  }

  private changed(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.reload(), this.debounceMs);
    this.timer.unref();
  }
}

/** Starts an {@link OwnCertificatesWatcher}; `onChange` hears every reload, accepted or refused. */
export function watchOwnCertificates(
  paths: OwnCertificatePaths,
  onChange?: (change: OwnCertificatesChange) => void,
  opts: { debounceMs?: number } = {},
): Promise<OwnCertificatesWatcher> {
  return OwnCertificatesWatcher.start(paths, onChange, opts);
}
