/**
 * @novamesh/identity — the workload side of mesh identity: a {@link WorkloadIdentity} that obtains,
 * renews and follows its certificate through the SDK, mutual-TLS servers and clients that hot-swap
 * credentials on rotation and refuse revoked peers, and bring-your-own certificate files. Node's
 * `node:tls`/`node:crypto` only; no logging (events and callbacks instead).
 */
export { type Clock, systemClock, type TimerHandle } from './clock';
export {
  type AttachIdentityOptions,
  attachIdentity,
  connectMtls,
  createMtlsServer,
  type MtlsClientOptions,
  type MtlsPeer,
  type MtlsServerOptions,
  mtlsAgent,
  mtlsConnectOptions,
  type PeerRefusal,
  tlsContextFor,
} from './mtls';
export {
  loadOwnCertificates,
  type OwnCertificatePaths,
  type OwnCertificates,
  type OwnCertificatesChange,
  OwnCertificatesWatcher,
  watchOwnCertificates,
} from './own-certificates';
export { normalizeSerial } from './pem';
export { backoffDelay, DEFAULT_RENEWAL_POLICY, expiringTime, type RenewalPolicy, renewalTime } from './renewal-schedule';
export {
  type CertificateClient,
  type IdentityChange,
  IdentityError,
  type IdentityEvents,
  type IdentitySnapshot,
  type IdentitySource,
  WorkloadIdentity,
  type WorkloadIdentityOptions,
} from './workload-identity';
