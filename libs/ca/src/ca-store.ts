import { access, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, type Issue, MeshError, MeshValidationError } from '@novamesh/contracts';
import { createIntermediateCa, createRootCa, loadIssuer } from './authority';
import { type CertifiedKey, certificateInfo, isSelfIssued, nameConstraintProblem, parseCertificate } from './certificate';
import { readPrivateKey, writeFileAtomic, writePrivateKey } from './keys';
import { assertTrustDomain } from './spiffe-id';
import { webcrypto } from './x509';

/** File names inside the CA directory. Renaming one strands every existing deployment's CA. */
export const CA_FILES = {
  root: 'root.pem',
  rootKey: 'root-key.pem',
  intermediate: 'intermediate.pem',
  intermediateKey: 'intermediate-key.pem',
} as const;

export interface LoadOrCreateCaOptions {
  dir: string;
  trustDomain: string;
  /** Encrypts the keys this function writes, and decrypts encrypted keys it reads. */
  passphrase?: string;
  /** Epoch ms; default Date.now(). */
  now?: number;
  rootValidityDays?: number;
  intermediateValidityDays?: number;
}

/**
 * Root rotation layout: between {@link beginRootRotation} and {@link finishRootRotation} the CA
 * directory holds the old CA files (same names) under `previous/`; finishing moves them to
 * `retired/<ISO time>/`. Nothing is deleted.
 */
export const CA_ROTATION_DIRS = { previous: 'previous', retired: 'retired' } as const;

/** The CA a process signs with. The root key is absent when the operator plugged in an intermediate only. */
export interface LoadedCa {
  root: { certPem: string; keyPem?: string };
  intermediate: CertifiedKey;
  /** Issuer first, then root: the `chainPems` that {@link signWorkloadCsr} wants. */
  chainPems: string[];
  /** The trust bundle workloads verify peers against (the root, then the previous root during a rotation; PEM). */
  trustBundlePem: string;
  /**
   * During a root rotation: the old root and its intermediate (public certificates only; their keys
   * stay on disk). Still trusted, no longer used to sign.
   */
  previous?: { rootPem: string; intermediatePem?: string };
  /** True when this call created (and wrote) the root, the intermediate or both. */
  created: boolean;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Loads the CA from `dir`, or creates what is missing and writes it (certificates 0644, keys 0600,
 * encrypted when a passphrase is given, each file written atomically). Three layouts are accepted:
 * - `intermediate.pem` + `intermediate-key.pem` + `root.pem` (+ optional `root-key.pem`): used as they are
 *   (plug-in intermediate); an expired intermediate is replaced when the root key is there;
 * - `root.pem` + `root-key.pem` only (plug-in root): an intermediate is created under it;
 * - an empty or missing directory: a new root (10 y) and intermediate (1 y) are created.
 * Anything else (a key without its certificate, a mismatched key, an intermediate the root did not
 * sign) is refused with MeshValidationError naming the files. Idempotent across restarts: a second
 * call returns the same root and intermediate. One process owns `dir`; concurrent calls on the same
 * directory from two processes are not safe. During a root rotation (`previous/root.pem` present and
 * different from `root.pem`) the old root is added to the trust bundle and returned as `previous`.
 */
export async function loadOrCreateCa(opts: LoadOrCreateCaOptions): Promise<LoadedCa> {
  return withPrevious(await loadOrCreateCurrent(opts), opts.dir);
}

async function loadOrCreateCurrent(opts: LoadOrCreateCaOptions): Promise<LoadedCa> {
  assertTrustDomain(opts.trustDomain);
  const now = opts.now ?? Date.now();
  const path = (name: keyof typeof CA_FILES) => join(opts.dir, CA_FILES[name]);
  const keyOpts = opts.passphrase === undefined ? {} : { passphrase: opts.passphrase };
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const has = Object.fromEntries(
    await Promise.all((Object.keys(CA_FILES) as (keyof typeof CA_FILES)[]).map(async (k) => [k, await exists(path(k))] as const)),
  ) as Record<keyof typeof CA_FILES, boolean>;

  const missing = (need: (keyof typeof CA_FILES)[], because: string): Issue[] =>
    need.filter((k) => !has[k]).map((k) => ({ path: path(k), message: `is missing (${because})` }));
  const refuse = (issues: Issue[]) => {
    if (issues.length) throw new MeshValidationError(`unusable CA directory ${opts.dir}`, issues);
  };

  const writeIntermediate = async (root: CertifiedKey): Promise<CertifiedKey> => {
    const intermediate = await createIntermediateCa({
      root,
      trustDomain: opts.trustDomain,
      now,
      validityDays: opts.intermediateValidityDays,
    });
    await writePrivateKey(path('intermediateKey'), intermediate.keyPem, keyOpts);
    await writeFileAtomic(path('intermediate'), intermediate.certPem, 0o644);
    return intermediate;
  };
  const result = (root: LoadedCa['root'], intermediate: CertifiedKey, created: boolean): LoadedCa => ({
    root,
    intermediate,
    chainPems: [intermediate.certPem, root.certPem],
    trustBundlePem: root.certPem,
    created,
  });

  if (has.intermediate || has.intermediateKey) {
    refuse(missing(['intermediate', 'intermediateKey', 'root'], 'a plug-in intermediate needs its certificate, its key and the root'));
    const rootPem = await readFile(path('root'), 'utf8');
    const rootKey = has.rootKey ? await readPrivateKey(path('rootKey'), keyOpts) : undefined;
    const root = { certPem: rootPem, ...(rootKey === undefined ? {} : { keyPem: rootKey }) };
    const intermediate = {
      certPem: await readFile(path('intermediate'), 'utf8'),
      keyPem: await readPrivateKey(path('intermediateKey'), keyOpts),
    };
    await checkPair(root, intermediate, opts.trustDomain, (k) => path(k));
    const cert = parseCertificate(intermediate.certPem, path('intermediate'));
    if (now <= cert.notAfter.getTime()) return result(root, intermediate, false);
    if (rootKey === undefined) {
      throw new MeshError(
        ErrorCode.unavailable,
        `${path('intermediate')} expired at ${cert.notAfter.toISOString()} and there is no root key to renew it`,
      );
    }
    return result(root, await writeIntermediate({ certPem: rootPem, keyPem: rootKey }), true);
  }

  if (has.root || has.rootKey) {
    refuse(missing(['root', 'rootKey'], 'a plug-in root needs its key to create the intermediate'));
    const root = { certPem: await readFile(path('root'), 'utf8'), keyPem: await readPrivateKey(path('rootKey'), keyOpts) };
    const rootCert = parseCertificate(root.certPem, path('root'));
    if (!isSelfIssued(rootCert)) refuse([{ path: path('root'), message: `"${rootCert.subject}" is not a self-signed root` }]);
    return result(root, await writeIntermediate(root), true);
  }

  const root = await createRootCa({ trustDomain: opts.trustDomain, now, validityDays: opts.rootValidityDays });
  await writePrivateKey(path('rootKey'), root.keyPem, keyOpts);
  await writeFileAtomic(path('root'), root.certPem, 0o644);
  return result(root, await writeIntermediate(root), true);
}

/** Checks a loaded CA: keys match their certificates, the root signed the intermediate, both may sign, the trust domain is admitted. */
async function checkPair(
  root: LoadedCa['root'],
  intermediate: CertifiedKey,
  trustDomain: string,
  path: (k: keyof typeof CA_FILES) => string,
): Promise<void> {
  const issues: Issue[] = [];
  // Validity is not judged here: the caller renews an expired intermediate.
  const load = async (ca: CertifiedKey, cert: keyof typeof CA_FILES, key: keyof typeof CA_FILES) => {
    try {
      return (await loadIssuer(ca, cert, undefined)).cert;
    } catch (err) {
      if (!(err instanceof MeshValidationError)) throw err;
      issues.push(...err.issues.map((i) => ({ path: path(i.path.endsWith('keyPem') ? key : cert), message: i.message })));
      return undefined;
    }
  };
  const rootCert = parseCertificate(root.certPem, path('root'));
  if (root.keyPem !== undefined) await load({ certPem: root.certPem, keyPem: root.keyPem }, 'root', 'rootKey');
  const cert = await load(intermediate, 'intermediate', 'intermediateKey');
  if (cert) {
    const signed =
      cert.issuer === rootCert.subject &&
      (await cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true }, webcrypto).catch(() => false));
    if (!signed) issues.push({ path: path('intermediate'), message: `was not issued by ${path('root')} ("${rootCert.subject}")` });
    const nc = nameConstraintProblem(cert, [{ type: 'url', value: `spiffe://${trustDomain}/ns/x/svc/x` }]);
    if (nc) issues.push({ path: path('intermediate'), message: `does not admit trust domain ${trustDomain}: ${nc}` });
  }
  if (issues.length) throw new MeshValidationError('unusable CA directory', issues);
}

/** Adds the rotation's previous root (if any) to a loaded CA. */
async function withPrevious(ca: LoadedCa, dir: string): Promise<LoadedCa> {
  const prevDir = join(dir, CA_ROTATION_DIRS.previous);
  const rootPath = join(prevDir, CA_FILES.root);
  if (!(await exists(rootPath))) return ca;
  const rootPem = await readFile(rootPath, 'utf8');
  // A begin that stopped half-way (old files copied, new ones not written yet) leaves the same root twice.
  if (certificateInfo(rootPem).fingerprint256 === certificateInfo(ca.root.certPem).fingerprint256) return ca;
  const intermediatePath = join(prevDir, CA_FILES.intermediate);
  const intermediatePem = (await exists(intermediatePath)) ? await readFile(intermediatePath, 'utf8') : undefined;
  return {
    ...ca,
    trustBundlePem: `${ca.root.certPem.trim()}\n${rootPem.trim()}\n`,
    previous: { rootPem, ...(intermediatePem === undefined ? {} : { intermediatePem }) },
  };
}

/** Whether `dir` is between {@link beginRootRotation} and {@link finishRootRotation}. */
export async function rootRotationInProgress(dir: string): Promise<boolean> {
  return exists(join(dir, CA_ROTATION_DIRS.previous, CA_FILES.root));
}

/**
 * Starts a root rotation in `dir`: moves the current CA files to `previous/` (renamed, so keys keep
 * mode 0600 and their encryption), creates a new root (10 y by default) and an intermediate under it
 * with the same key handling as {@link loadOrCreateCa}, and returns the CA loaded with both roots in
 * its trust bundle. MESH_CONFLICT when a rotation is already in progress. Not safe concurrently on
 * the same directory (the CA service serializes its calls).
 */
export async function beginRootRotation(opts: LoadOrCreateCaOptions): Promise<LoadedCa> {
  assertTrustDomain(opts.trustDomain);
  await loadOrCreateCa(opts); // the current CA must be usable before it is rotated out
  if (await rootRotationInProgress(opts.dir)) {
    throw new MeshError(ErrorCode.conflict, `a root rotation is already in progress in ${opts.dir}: finish it first`);
  }
  const prevDir = join(opts.dir, CA_ROTATION_DIRS.previous);
  await mkdir(prevDir, { recursive: true, mode: 0o700 });
  // The root last: a crash in between leaves a directory loadOrCreateCa still reads (a plug-in root, or a fresh CA).
  for (const name of ['intermediate', 'intermediateKey', 'rootKey', 'root'] as const) {
    const from = join(opts.dir, CA_FILES[name]);
    if (await exists(from)) await rename(from, join(prevDir, CA_FILES[name]));
  }
  const ca = await loadOrCreateCa({ ...opts, rootValidityDays: opts.rootValidityDays ?? 3650 });
  if (!ca.previous) throw new MeshError(ErrorCode.internal, `root rotation in ${opts.dir} did not produce a new root`);
  return ca;
}

/**
 * Ends a root rotation: moves `previous/` to `retired/<ISO time>/` (kept, never deleted) and returns
 * the CA with only the new root. The caller decides whether it is safe (no live certificate chains to
 * the old root). MESH_CONFLICT when no rotation is in progress.
 */
export async function finishRootRotation(opts: LoadOrCreateCaOptions): Promise<LoadedCa> {
  if (!(await rootRotationInProgress(opts.dir))) {
    throw new MeshError(ErrorCode.conflict, `no root rotation is in progress in ${opts.dir}`);
  }
  const retired = join(opts.dir, CA_ROTATION_DIRS.retired);
  await mkdir(retired, { recursive: true, mode: 0o700 });
  const stamp = new Date(opts.now ?? Date.now()).toISOString().replace(/[:.]/g, '-');
  await rename(join(opts.dir, CA_ROTATION_DIRS.previous), join(retired, stamp));
  return loadOrCreateCa(opts);
}
