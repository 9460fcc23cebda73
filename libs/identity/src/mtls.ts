import type { RequestOptions } from 'node:https';
import { Agent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import {
  type ConnectionOptions,
  checkServerIdentity,
  connect,
  createSecureContext,
  createServer,
  type PeerCertificate,
  type SecureContext,
  type Server,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import type { IdentitySnapshot, IdentitySource } from './workload-identity';

/** A verified peer as the handler sees it. */
export interface MtlsPeer {
  spiffeId: string | undefined;
  /** Lower-case hex as Node reports it (compare with `normalizeSerial`). */
  serial: string;
}

/** Why a peer that passed chain verification was still turned away. */
export interface PeerRefusal {
  peer: MtlsPeer;
  reason: string;
  remoteAddress: string | undefined;
}

/**
 * The TLS credentials of one snapshot: the chain (leaf + intermediates) with its key, and the trust
 * bundle as the only CA. Mesh traffic is TLS 1.3 only (both ends are ours, as in Linkerd).
 */
export function tlsContextFor(source: IdentitySource | IdentitySnapshot): { key: string; cert: string; ca: string; minVersion: 'TLSv1.3' } {
  const s = 'current' in source ? source.current() : source;
  return { key: s.keyPem, cert: s.chainPem, ca: s.trustBundlePem, minVersion: 'TLSv1.3' };
}

function peerOf(cert: PeerCertificate | undefined): MtlsPeer | undefined {
  if (!cert?.serialNumber) return undefined;
  const uri = (cert.subjectaltname ?? '').split(/,\s*/).find((p) => p.startsWith('URI:spiffe://'));
  return { spiffeId: uri?.slice(4), serial: cert.serialNumber.toLowerCase() };
}

export interface AttachIdentityOptions {
  /**
   * Extra admission after chain verification and the revocation check, e.g. an allow-list of SPIFFE
   * IDs: return a reason to refuse, undefined to accept.
   */
  authorize?: (peer: MtlsPeer) => string | undefined;
  /** Called for every refused peer (a library does not log; the caller may). */
  onRefused?: (refusal: PeerRefusal) => void;
}

/**
 * Binds a node:tls (or node:https) server to an identity:
 * - on every rotation or trust-bundle change, `server.setSecureContext()` swaps key, chain and CA for
 *   new handshakes; established connections keep the context they were made with and are not touched;
 * - revocation: Node has no per-certificate verify hook on the server side and the CA publishes a
 *   serial list, not a signed CRL (which `crl` would need), so the check runs in `secureConnection`,
 *   right after the handshake and before any application data is read: a peer whose leaf serial is
 *   revoked is destroyed and reported through `onRefused`. When the list changes, connections already
 *   open to a now-revoked peer are closed the same way.
 * Returns `accepted(socket)`, true when the socket passed (and was not destroyed), and `detach()`.
 */
export function attachIdentity(
  server: Server,
  source: IdentitySource,
  opts: AttachIdentityOptions = {},
): { accepted: (socket: TLSSocket) => MtlsPeer | undefined; detach: () => void } {
  const open = new Map<TLSSocket, MtlsPeer>();
  const refuse = (socket: TLSSocket, peer: MtlsPeer, reason: string) => {
    socket.destroy();
    opts.onRefused?.({ peer, reason, remoteAddress: socket.remoteAddress });
  };
  const admit = (socket: TLSSocket): MtlsPeer | undefined => {
    const peer = peerOf(socket.getPeerCertificate());
    if (!peer) {
      refuse(socket, { spiffeId: undefined, serial: '' }, 'no client certificate');
      return undefined;
    }
    const reason = source.isRevoked(peer.serial) ? `certificate ${peer.serial} is revoked` : opts.authorize?.(peer);
    if (reason) {
      refuse(socket, peer, reason);
      return undefined;
    }
    open.set(socket, peer);
    socket.once('close', () => open.delete(socket));
    return peer;
  };
  const results = new WeakMap<TLSSocket, MtlsPeer | undefined>();
  const onSecure = (socket: TLSSocket) => results.set(socket, admit(socket));
  server.prependListener('secureConnection', onSecure);
  const unsubscribe = source.subscribe((change) => {
    if (change === 'revocations') {
      for (const [socket, peer] of open) if (source.isRevoked(peer.serial)) refuse(socket, peer, `certificate ${peer.serial} was revoked`);
      return;
    }
    server.setSecureContext(tlsContextFor(source));
  });
  return {
    accepted: (socket) => (results.has(socket) ? results.get(socket) : admit(socket)),
    detach: () => {
      unsubscribe();
      server.off('secureConnection', onSecure);
    },
  };
}

export interface MtlsServerOptions extends AttachIdentityOptions {
  /** Further node:tls server options (the credentials, requestCert and rejectUnauthorized are fixed). */
  tls?: Omit<TlsOptions, 'key' | 'cert' | 'ca' | 'requestCert' | 'rejectUnauthorized'>;
}

/**
 * A mutual-TLS server on `source`: clients must present a certificate that chains to the trust
 * bundle (`requestCert`, `rejectUnauthorized`), is not revoked and passes `authorize`; only then is
 * `handler` called. Credentials are hot-swapped as described in {@link attachIdentity}. Closing
 * the server detaches it from the identity.
 */
export function createMtlsServer(
  source: IdentitySource,
  handler: (socket: TLSSocket, peer: MtlsPeer) => void,
  opts: MtlsServerOptions = {},
): Server {
  const server = createServer({ ...opts.tls, ...tlsContextFor(source), requestCert: true, rejectUnauthorized: true });
  const { accepted, detach } = attachIdentity(server, source, opts);
  server.on('secureConnection', (socket: TLSSocket) => {
    const peer = accepted(socket);
    if (peer) handler(socket, peer);
  });
  server.once('close', detach);
  return server;
}

export interface MtlsClientOptions {
  /** Accept only a server with this SPIFFE ID (instead of checking the host name against its DNS SANs). */
  serverSpiffeId?: string;
}

/** Server checks shared by {@link mtlsConnectOptions} and {@link mtlsAgent}: revocation, then identity. */
function checkServer(source: IdentitySource, opts: MtlsClientOptions, fallback: ConnectionOptions['checkServerIdentity']) {
  return (host: string, cert: PeerCertificate): Error | undefined => {
    const peer = peerOf(cert);
    if (peer && source.isRevoked(peer.serial)) return new Error(`server certificate ${peer.serial} is revoked`);
    if (opts.serverSpiffeId !== undefined)
      return peer?.spiffeId === opts.serverSpiffeId
        ? undefined
        : new Error(`server is ${peer?.spiffeId ?? 'without a SPIFFE ID'}, expected ${opts.serverSpiffeId}`);
    return fallback?.(host, cert);
  };
}

/** One SecureContext per snapshot: building one parses keys and certificates, so it is cached until rotation. */
function contextCache(source: IdentitySource): () => SecureContext {
  let made: { snapshot: IdentitySnapshot; ctx: SecureContext } | undefined;
  return () => {
    const snapshot = source.current();
    if (made?.snapshot !== snapshot) made = { snapshot, ctx: createSecureContext(tlsContextFor(snapshot)) };
    return made.ctx;
  };
}

/**
 * Options for `tls.connect` presenting the identity's current certificate and verifying the server
 * against the trust bundle (and its revocation list). Call it per connection: it reads `current()`.
 */
export function mtlsConnectOptions(source: IdentitySource, opts: MtlsClientOptions & ConnectionOptions = {}): ConnectionOptions {
  const { serverSpiffeId, ...rest } = opts;
  return {
    ...rest,
    ...tlsContextFor(source),
    rejectUnauthorized: true,
    checkServerIdentity: checkServer(source, { serverSpiffeId }, rest.checkServerIdentity ?? checkServerIdentity),
  };
}

/** Opens a mutual-TLS connection with the identity's current certificate. */
export function connectMtls(source: IdentitySource, opts: MtlsClientOptions & ConnectionOptions, onSecure?: () => void): TLSSocket {
  return connect(mtlsConnectOptions(source, opts), onSecure);
}

/**
 * An https Agent for node:https requests that presents the identity's current certificate on every
 * new connection (pooled keep-alive connections keep the one they were opened with) and verifies
 * servers against the current trust bundle and revocation list. TLS session caching is off, so a
 * new connection never resumes a session made with a rotated-out certificate.
 */
export function mtlsAgent(source: IdentitySource, opts: MtlsClientOptions & Omit<AgentOptions, 'key' | 'cert' | 'ca'> = {}): Agent {
  const { serverSpiffeId, ...agentOpts } = opts;
  const context = contextCache(source);
  const check = checkServer(source, { serverSpiffeId }, agentOpts.checkServerIdentity ?? checkServerIdentity);
  class MtlsAgent extends Agent {
    override createConnection(options: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void) {
      return super.createConnection(
        { ...options, secureContext: context(), rejectUnauthorized: true, checkServerIdentity: check } as RequestOptions,
        callback,
      );
    }
  }
  return new MtlsAgent({ ...agentOpts, maxCachedSessions: 0, rejectUnauthorized: true });
}
