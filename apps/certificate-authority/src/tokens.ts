/** Injection tokens for infrastructure that main.ts builds before Nest starts (not join tokens). */
export const JETSTREAM = Symbol('JETSTREAM');
export const JETSTREAM_MANAGER = Symbol('JETSTREAM_MANAGER');
export const TOKENS_KV = Symbol('TOKENS_KV');
export const CERTS_KV = Symbol('CERTS_KV');
export const LOADED_CA = Symbol('LOADED_CA');
export const CA_SETTINGS = Symbol('CA_SETTINGS');
export const LOGGER = Symbol('LOGGER');
export const METRICS = Symbol('METRICS');
/** The `mesh.v1.ca.info` reply (without `ok`), computed once at start. */
export const CA_INFO = Symbol('CA_INFO');

/** What the signing path, root rotation and pruning need from config. */
export interface CaSettings {
  trustDomain: string;
  certTtlMs: number;
  /** The CA directory, shared by the replicas (root rotation writes it, the others reload it). */
  caDir: string;
  /** Decrypts/encrypts the CA keys. A secret: never logged, never put in an error or a reply. */
  passphrase?: string;
  /** CA_INSTANCE, named in replies. */
  instance: string;
  /** CA_PRUNE_INTERVAL and CA_EXPIRED_CERT_RETENTION (ms). */
  prune: { intervalMs: number; retentionMs: number };
  /** CA_STREAM_RECHECK (ms). */
  streamRecheckMs: number;
  /** NATS_REPLICAS: a MESH_CA found missing is created again (by the CA, its publisher) with this many. */
  replicas: number;
}
