import { z } from 'zod';
import { ErrorBodyV1 } from './events';
import { duration, serviceName } from './service.schema';

// Payloads of the certificate authority: request/reply commands `mesh.v1.ca.<command>`
// (subjects.ca) and the last-value events `mesh.v1.ca.bundle` / `mesh.v1.ca.revoked`.

/** A Kubernetes-style namespace: the same rules as a service name (a DNS label). */
export const namespaceName = serviceName;

const PEM_CSR = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----[\s\S]+-----END (NEW )?CERTIFICATE REQUEST-----/;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/;
const MAX_PEM = 64 * 1024;

const csrPem = z
  .string({ error: 'must be a PEM certificate request' })
  .max(MAX_PEM, `must be at most ${MAX_PEM} characters`)
  .regex(PEM_CSR, 'must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
const certificatePem = z
  .string({ error: 'must be a PEM certificate' })
  .max(MAX_PEM, `must be at most ${MAX_PEM} characters`)
  .regex(PEM_CERT, 'must be a PEM certificate (-----BEGIN CERTIFICATE-----)');

/** Join tokens: `nmjt_` + 43 base64url characters (32 random bytes). */
export const JOIN_TOKEN_PATTERN = /^nmjt_[A-Za-z0-9_-]{43}$/;
export const joinToken = z.string({ error: 'must be a string' }).regex(JOIN_TOKEN_PATTERN, 'is not a join token (nmjt_…)');

/** Certificate serials as the CA writes them: lower-case hex, no separators. */
export const certificateSerial = z
  .string({ error: 'must be a string' })
  .transform((s) => s.toLowerCase().replace(/:/g, ''))
  .pipe(z.string().regex(/^[0-9a-f]{2,64}$/, 'must be a certificate serial in hex (e.g. 4f1c…)'));

/** Who the workload says it is; the CA turns it into `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`. */
export const WorkloadIdentityV1 = z.strictObject({ namespace: namespaceName, service: serviceName });

/**
 * Proof of identity: a join token an operator created for this identity, or — to renew — a
 * currently valid, not revoked certificate of the same identity plus `signature`, the base64
 * signature with that certificate's private key (SHA-256; ECDSA DER or RSA PKCS#1 v1.5) over the
 * UTF-8 bytes of `csr`. The signature proves possession of the key: a certificate alone is public.
 */
export const CaProofV1 = z
  .strictObject({
    token: joinToken.optional(),
    certificatePem: certificatePem.optional(),
    signature: z
      .string()
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64')
      .max(2048)
      .optional(),
  })
  .superRefine((p, ctx) => {
    const kinds = (p.token !== undefined ? 1 : 0) + (p.certificatePem !== undefined ? 1 : 0);
    if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of token or certificatePem' });
    if (p.certificatePem !== undefined && p.signature === undefined)
      ctx.addIssue({ code: 'custom', path: ['signature'], message: 'is required with certificatePem (signature over csr with its key)' });
    if (p.token !== undefined && p.signature !== undefined)
      ctx.addIssue({ code: 'custom', path: ['signature'], message: 'only goes with certificatePem' });
  });

/** `mesh.v1.ca.sign`: a CSR (PKCS#10, PEM) for `identity`, with proof. */
export const CaSignRequestV1 = z.strictObject({ csr: csrPem, identity: WorkloadIdentityV1, proof: CaProofV1 });

export const CaSignResultV1 = z.object({
  ok: z.literal(true),
  /** The leaf. */
  certificatePem: z.string(),
  /** Leaf then intermediates: what the workload presents in TLS. */
  chainPem: z.string(),
  serial: z.string(),
  /** ISO 8601. */
  notAfter: z.string(),
  spiffeId: z.string(),
  /** The roots to verify peers against (PEM, concatenated). */
  trustBundlePem: z.string(),
});
export const CaSignReplyV1 = z.union([CaSignResultV1, z.object({ ok: z.literal(false), error: ErrorBodyV1 })]);

/** Longest join token lifetime: 7 days (the token bucket keeps entries a little longer). */
export const MAX_JOIN_TOKEN_TTL_MS = 7 * 24 * 3_600_000;
export const MAX_JOIN_TOKEN_USES = 10_000;

/** `mesh.v1.ca.token.create` (operator): a join token for one identity. */
export const CaTokenCreateRequestV1 = z.strictObject({
  service: serviceName,
  namespace: namespaceName.default('default'),
  /** How long the token may be used; default 1 h, at most 7 days. */
  ttl: duration(1_000, MAX_JOIN_TOKEN_TTL_MS).default(3_600_000),
  /** How many certificates it may obtain; default 1. */
  uses: z
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(MAX_JOIN_TOKEN_USES, `must be at most ${MAX_JOIN_TOKEN_USES}`)
    .default(1),
});

export interface CaTokenCreateResultV1 {
  ok: true;
  /** The secret: shown once, stored nowhere (the CA keeps its SHA-256). */
  token: string;
  service: string;
  namespace: string;
  /** ISO 8601. */
  expiresAt: string;
  uses: number;
}

/** `mesh.v1.ca.revoke` (operator): revoke one issued certificate. Idempotent. */
export const CaRevokeRequestV1 = z.strictObject({
  serial: certificateSerial,
  reason: z.string().max(256, 'must be at most 256 characters').optional(),
});

export interface CaRevokeResultV1 {
  ok: true;
  serial: string;
  revokedAt: string;
  /** It was revoked before this request. */
  alreadyRevoked: boolean;
}

export const CERT_STATES = ['issued', 'revoked', 'expired'] as const;
export type CertState = (typeof CERT_STATES)[number];

/** `mesh.v1.ca.certs.list` (operator): issued certificates, optionally of one service or state. */
export const CaCertsListRequestV1 = z.strictObject({
  service: serviceName.optional(),
  namespace: namespaceName.optional(),
  state: z.enum(CERT_STATES).optional(),
});

/** An issued certificate as `mesh_ca_certs` holds it (key = serial). Times ISO 8601. */
export const CaCertRecordV1 = z.object({
  serial: z.string(),
  spiffeId: z.string(),
  namespace: z.string(),
  service: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
  issuedAt: z.string(),
  /** How the workload proved its identity. */
  proof: z.enum(['token', 'certificate']),
  /** Serial of the certificate that proved it, for renewals. */
  renewedFrom: z.string().optional(),
  /**
   * SHA-256 fingerprint (lower-case hex) of the root the certificate chains to. Absent in records
   * written before root rotation existed: those count as chaining to a root being rotated out.
   */
  rootFingerprint256: z.string().optional(),
  /**
   * Serial of the certificate its holder obtained by renewing with this one as proof: the holder
   * presents the successor from then on, so a superseded certificate no longer counts as live.
   */
  supersededBy: z.string().optional(),
  /** Stored state; `expired` is only ever computed when reading. */
  state: z.enum(['issued', 'revoked']),
  revokedAt: z.string().optional(),
  revocationReason: z.string().optional(),
});
export type CaCertRecordV1 = z.output<typeof CaCertRecordV1>;

/** A certificate in `certs.list`, with its state now (`expired` once past notAfter). */
export type CaCertV1 = Omit<CaCertRecordV1, 'state'> & { state: CertState };

/** A join token as `mesh_ca_tokens` holds it (key = SHA-256 hex of the token). Never the token. */
export const CaTokenRecordV1 = z.object({
  service: z.string(),
  namespace: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
  uses: z.number(),
  usesLeft: z.number(),
});
export type CaTokenRecordV1 = z.output<typeof CaTokenRecordV1>;

/** `mesh.v1.ca.bundle`: the roots workloads and sidecars accept. During a root rotation it holds two. */
export const TrustBundleV1 = z.object({
  trustDomain: z.string(),
  roots: z.array(
    z.object({
      pem: z.string(),
      /** SHA-256 of the DER certificate, lower-case hex. */
      fingerprint256: z.string(),
      notAfter: z.string(),
    }),
  ),
  updatedAt: z.string(),
});
export type TrustBundleV1 = z.output<typeof TrustBundleV1>;

/** `mesh.v1.ca.revoked`: serials of revoked certificates that have not expired yet. */
export const RevocationListV1 = z.object({ serials: z.array(z.string()), updatedAt: z.string() });
export type RevocationListV1 = z.output<typeof RevocationListV1>;

/** One CA certificate as `mesh.v1.ca.info` describes it. Times ISO 8601. */
export const CaCertificateInfoV1 = z.object({
  subject: z.string(),
  serial: z.string(),
  /** SHA-256 of the DER certificate, lower-case hex. */
  fingerprint256: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
});
export type CaCertificateInfoV1 = z.output<typeof CaCertificateInfoV1>;

/** `mesh.v1.ca.info` takes an empty object (or no body). */
export const CaInfoRequestV1 = z.strictObject({});

/**
 * Reply to `mesh.v1.ca.info`: the trust domain, the root and the intermediate signing CA of the
 * replica that answered, and the lifetime of the workload certificates it issues. Never a key.
 */
export const CaInfoResultV1 = z.object({
  ok: z.literal(true),
  trustDomain: z.string(),
  root: CaCertificateInfoV1,
  intermediate: CaCertificateInfoV1,
  /** Lifetime of issued workload certificates, ms. */
  certTtlMs: z.number(),
  /** The replica that answered (CA_INSTANCE). */
  instance: z.string(),
});
export type CaInfoResultV1 = z.output<typeof CaInfoResultV1>;
export const CaInfoReplyV1 = z.union([CaInfoResultV1, z.object({ ok: z.literal(false), error: ErrorBodyV1 })]);

export const ROOT_ROTATION_PHASES = ['begin', 'status', 'finish'] as const;
export type RootRotationPhase = (typeof ROOT_ROTATION_PHASES)[number];

/**
 * `mesh.v1.ca.rotate` (operator): root rotation.
 * - `begin`: a new root (10 y) and intermediate are created in the CA directory (the old ones are
 *   kept under `previous/`), the trust bundle then holds both roots, and every replica signs with
 *   the new intermediate. MESH_CONFLICT when a rotation is already in progress (also when another
 *   replica began one at the same moment: a compare-and-set lock lets exactly one `begin` win).
 * - `status`: live certificates (not expired, not revoked, not superseded by a renewal) per root.
 * - `finish`: MESH_CONFLICT while a live certificate chains to the old root; otherwise the bundle
 *   holds only the new root and the old one is retired (moved to `retired/<time>/`).
 */
export const CaRotateRequestV1 = z.strictObject({
  phase: z.enum(ROOT_ROTATION_PHASES, { error: 'must be one of begin, status, finish' }),
});
export type CaRotateRequestV1 = z.output<typeof CaRotateRequestV1>;

/** One root in a rotation reply. */
export const CaRotationRootV1 = z.object({
  /** `current`: signs new certificates; `previous`: still trusted, being rotated out. */
  role: z.enum(['current', 'previous']),
  subject: z.string(),
  fingerprint256: z.string(),
  notAfter: z.string(),
  /** Live certificates chaining to this root (records without a root count toward `previous`). */
  liveCertificates: z.number(),
});
export type CaRotationRootV1 = z.output<typeof CaRotationRootV1>;

/** Reply to every phase of `mesh.v1.ca.rotate`: the state after the phase ran. */
export const CaRotateResultV1 = z.object({
  ok: z.literal(true),
  phase: z.enum(ROOT_ROTATION_PHASES),
  /** Whether two roots are trusted now (between begin and finish). */
  rotating: z.boolean(),
  roots: z.array(CaRotationRootV1),
  /** The replica that answered (CA_INSTANCE). */
  instance: z.string(),
  /** While rotating: the replica that began the rotation (absent for a rotation begun before this was recorded). */
  startedBy: z.string().optional(),
  /** While rotating: when the rotation began (ISO 8601). */
  startedAt: z.string().optional(),
});
export type CaRotateResultV1 = z.output<typeof CaRotateResultV1>;
export const CaRotateReplyV1 = z.union([CaRotateResultV1, z.object({ ok: z.literal(false), error: ErrorBodyV1 })]);

export type CaSignRequestV1 = z.output<typeof CaSignRequestV1>;
export type CaSignRequestInputV1 = z.input<typeof CaSignRequestV1>;
export type CaSignResultV1 = z.output<typeof CaSignResultV1>;
export type CaTokenCreateRequestV1 = z.output<typeof CaTokenCreateRequestV1>;
export type CaTokenCreateRequestInputV1 = z.input<typeof CaTokenCreateRequestV1>;
export type CaRevokeRequestV1 = z.output<typeof CaRevokeRequestV1>;
export type CaCertsListRequestV1 = z.output<typeof CaCertsListRequestV1>;
