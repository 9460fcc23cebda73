import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer, type RequestListener, ServerResponse } from 'node:http';
import type { Http2Server, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { localReplyBytes } from './local-reply';

/** What a connection speaks, from its first bytes. */
export type WireProtocol = 'tls' | 'h2c' | 'http1';

const TLS_HANDSHAKE = 0x16;
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');

/**
 * Tells a TLS ClientHello (first byte 0x16), an HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`,
 * what gRPC clients send in plaintext) and anything else (HTTP/1.x) apart, then puts the bytes back.
 * Waits for more bytes only while they could still be the preface, and no longer than `timeoutMs`
 * from now: a connection still undecided then (it sent nothing, or stopped inside the preface) is
 * destroyed, as Envoy closes one its listener filters have not decided on within listener_filters_timeout.
 * Once decided, the connection's time limits are those of the server it goes to. `onTimeout` is
 * told of each connection closed this way.
 */
export function sniffProtocol(socket: Socket, timeoutMs: number, then: (protocol: WireProtocol) => void, onTimeout?: () => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const stop = () => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('close', stop);
  };
  const timer = setTimeout(() => {
    stop();
    socket.destroy();
    onTimeout?.();
  }, timeoutMs);
  const onReadable = () => {
    const chunk = socket.read() as Buffer | null;
    if (!chunk) return;
    seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
    const n = Math.min(seen.length, H2_PREFACE.length);
    const maybeH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (seen[0] !== TLS_HANDSHAKE && maybeH2 && seen.length < H2_PREFACE.length) return; // need more bytes
    stop();
    socket.unshift(seen);
    const protocol = seen[0] === TLS_HANDSHAKE ? 'tls' : maybeH2 ? 'h2c' : 'http1';
    then(protocol);
    // A TLS socket takes over the connection's handle (and the bytes put back); resuming the raw
    // socket in the same tick would stall its handshake. The others read through the socket.
    if (protocol !== 'tls') process.nextTick(() => socket.resume());
  };
  socket.on('readable', onReadable);
  socket.once('close', stop);
}

/**
 * Header lines node:http keeps (`rawHeaders`, `headers`) on the listeners' servers, raised from
 * node's 2,000 entries: more than a 16 KiB head can hold, so what handlers see (and a head
 * acceptUpgrades rebuilds) is every line received; llhttp applies framing from all of them.
 */
export const MAX_HEADER_LINES = 5_000;

/**
 * The node:http server behind a {@link ProtocolListener}: an idle keep-alive connection closes after
 * `idleTimeoutMs` (SIDECAR_IDLE_TIMEOUT, advertised in `Keep-Alive: timeout=<whole seconds, rounded
 * down>`; node:http waits up to a second longer than it advertises, so a client that trusts the
 * header does not reuse a connection just as it closes), no limit on a whole request (`requestTimeout`
 * 0, so node:http's rule headersTimeout <= requestTimeout does not apply), and a request head must
 * arrive whole within `headersTimeoutMs` (SIDECAR_HEADERS_TIMEOUT) or gets 408 and the connection
 * closes — the fast paths read the same `headersTimeout` and `keepAliveTimeout` from this server.
 */
export function createHttp1Server(headersTimeoutMs: number, idleTimeoutMs: number, handler: RequestListener): HttpServer {
  // Draining: every response whose head is not out yet says `Connection: close` and its connection
  // closes after it, so a client never reuses a connection as it is being closed (as Envoy does
  // while it drains). Decided when the head is written (every response passes writeHead), so it
  // costs a request nothing until then.
  class DrainAwareResponse extends ServerResponse {}
  const writeHead = ServerResponse.prototype.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
  (DrainAwareResponse.prototype as unknown as { writeHead: typeof writeHead }).writeHead = function (this: ServerResponse, ...args) {
    if (draining.has(server)) this.shouldKeepAlive = false;
    return writeHead.apply(this, args);
  };
  const server: HttpServer = createHttpServer(
    {
      keepAliveTimeout: idleTimeoutMs,
      requestTimeout: 0,
      headersTimeout: headersTimeoutMs,
      // node:http looks for expired heads this often (30 s by default): a quarter of the limit keeps a 408 within 1.25 times it.
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.ceil(headersTimeoutMs / 4))),
      ServerResponse: DrainAwareResponse,
      // The listeners refuse a missing, repeated or invalid Host themselves, with a reason (requestHostProblem).
      requireHostHeader: false,
    },
    handler,
  );
  server.maxHeadersCount = MAX_HEADER_LINES;
  server.on('clientError', endAfterParseError);
  // node:http tracks connections (for headersTimeout and closeIdleConnections) from its 'listening'
  // event on; this server never listens itself (connections are handed to it), so it is told here.
  server.emit('listening');
  return server;
}

/** node:http servers whose listener is draining (see {@link createHttp1Server}). */
const draining = new WeakSet<HttpServer>();

/**
 * Once a connection's last bytes are out, how long the client has to close it before it is cut
 * (Envoy's delayed_close_timeout); what it sends meanwhile is read and dropped.
 */
const CLOSE_LINGER_MS = 1_000;

/**
 * Ends a client connection after `reply` (or what was written already): the socket flows with no
 * reader left (the caller has detached its own), so what the client still sends is dropped and its
 * FIN is seen; once the last bytes are out, a client that has not closed within CLOSE_LINGER_MS is
 * cut. A refused client thus reads its reply instead of a reset, and holds neither memory nor, for
 * long, the socket.
 */
export function endAndLinger(socket: Socket, reply?: string | Buffer): void {
  socket.resume();
  const linger = () => {
    if (socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
    socket.once('close', () => clearTimeout(timer));
  };
  if (reply === undefined) socket.end(linger);
  else socket.end(reply, linger);
}

/** The statuses node:http answers a request it cannot parse with (400 for every other parse error). */
const PARSE_ERROR_STATUS: Record<string, number> = { HPE_HEADER_OVERFLOW: 431, HPE_CHUNK_EXTENSIONS_OVERFLOW: 413 };
const BAD_REQUEST_REPLY = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';

/**
 * A request node:http's parser refused, answered as every other local reply: its status, the
 * BAD_REQUEST code and the parser's reason (`x-novamesh-error`, `x-novamesh-reason`, JSON body).
 */
function parseErrorReply(err: NodeJS.ErrnoException & { reason?: string }): Buffer {
  const status = PARSE_ERROR_STATUS[err.code ?? ''] ?? 400;
  return localReplyBytes(status, 'BAD_REQUEST', `malformed request: ${err.reason ?? err.code}`, 'Connection: close\r\n', false);
}
/** What a request head still incomplete after the headers timeout gets, as node:http writes it (then the connection closes). */
export const REQUEST_TIMEOUT_REPLY = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

/**
 * node:http's clientError handling, except after a parse error: the reply is a local reply that
 * says why ({@link parseErrorReply}, node:http's status). node:http would write a bare 400/431 and
 * destroy the socket at once, and when the client is still sending, the unread bytes make the
 * kernel answer with a reset that can reach the client before the reply does (it never learns
 * why). Here the reply goes out through endAndLinger (node:http has detached its parser), as the
 * fast path ends its connections.
 * Other errors (the headers timeout's 408, a socket error) keep node:http's behaviour.
 */
function endAfterParseError(err: NodeJS.ErrnoException, socket: Socket): void {
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  const code = err.code ?? '';
  // Bytes after a request that closes its connection (HTTP/1.0 without keep-alive, Connection:
  // close): that request is answered and what follows dropped (RFC 9112 §9.6); the connection
  // closes after the answer. A 400 here would take the answer's place.
  if (code === 'HPE_CLOSED_CONNECTION' && inFlight && !inFlight.headersSent) return;
  if (!socket.writable || inFlight?.headersSent) {
    socket.destroy(err);
    return;
  }
  if (!code.startsWith('HPE_')) {
    socket.write(code === 'ERR_HTTP_REQUEST_TIMEOUT' ? REQUEST_TIMEOUT_REPLY : BAD_REQUEST_REPLY);
    socket.destroy(err);
    return;
  }
  endAndLinger(socket, parseErrorReply(err));
}

/**
 * Closes each HTTP/2 session of `server` once it has had no open stream for `idleMs`, as Envoy closes
 * a downstream connection after its idle_timeout: gracefully, with `session.close()` (GOAWAY, then the
 * connection closes). Open streams are counted rather than traffic watched (what the server's
 * `timeout` does): a stream keeps its session however long it stays quiet (a gRPC stream may wait
 * minutes for its next message). Live sessions are kept in `sessions` for the drain.
 */
function closeIdleSessions(server: Http2Server, idleMs: number, sessions: Set<ServerHttp2Session>): void {
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => session.close(), idleMs);
    };
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++;
      clearTimeout(timer);
      stream.once('close', () => {
        // A closing session (GOAWAY sent, or destroyed) ends by itself once its streams are done.
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once('close', () => {
      clearTimeout(timer);
      sessions.delete(session);
    });
    arm();
  });
}

/** Takes HTTP/1.1 connections before the node:http server (the outbound fast path), handing some over to it. */
export interface Http1Front {
  accept(socket: Socket): void;
  /** Draining: closes idle connections, the busy ones after their current response. */
  closeIdle(): void;
}

/** SIDECAR_LISTENER_FILTERS_TIMEOUT's default: 15 s, Envoy's listener filter timeout. */
export const DEFAULT_FILTERS_TIMEOUT_MS = 15_000;

/**
 * One TCP port serving HTTP/1.1 and plaintext HTTP/2 (and, through `onTls`, TLS): connections are
 * sniffed and handed to the right server. Tracks sockets so `close` can drain them.
 */
export class ProtocolListener {
  private readonly server: NetServer;
  readonly sockets = new Set<Socket>();
  /** The h2c server's HTTP/2 sessions (also those over TLS the inbound side hands it), for the drain. */
  private readonly sessions = new Set<ServerHttp2Session>();

  constructor(
    private readonly servers: {
      http1: HttpServer;
      h2c: Http2Server;
      onTls?: (socket: Socket) => void;
      http1Front?: Http1Front | undefined;
      /** SIDECAR_LISTENER_FILTERS_TIMEOUT (see {@link sniffProtocol}); 15 s, Envoy's default, when unset. */
      filtersTimeoutMs?: number;
      /** Told of each connection closed by that timeout (for the metric). */
      onFiltersTimeout?: () => void;
      /** SIDECAR_IDLE_TIMEOUT: an HTTP/2 session without an open stream for this long gets GOAWAY (see {@link closeIdleSessions}). */
      idleTimeoutMs: number;
    },
  ) {
    closeIdleSessions(this.servers.h2c, this.servers.idleTimeoutMs, this.sessions);
    // noDelay as node:http does by default: without it Nagle's algorithm holds small writes back.
    this.server = createNetServer({ pauseOnConnect: true, noDelay: true, keepAlive: true }, (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      sniffProtocol(
        socket,
        this.servers.filtersTimeoutMs ?? DEFAULT_FILTERS_TIMEOUT_MS,
        (protocol) => {
          if (protocol === 'tls') {
            if (this.servers.onTls) this.servers.onTls(socket);
            else socket.destroy();
          } else if (protocol === 'http1' && this.servers.http1Front) this.servers.http1Front.accept(socket);
          else (protocol === 'h2c' ? this.servers.h2c : this.servers.http1).emit('connection', socket);
        },
        this.servers.onFiltersTimeout,
      );
    });
  }

  async listen(port: number, host: string): Promise<number> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    return (this.server.address() as { port: number }).port;
  }

  /**
   * Stops accepting; closes idle HTTP/1.1 connections and HTTP/2 sessions gracefully (GOAWAY: their
   * open streams finish), then whatever is left after `graceMs`. Repeated while waiting, for
   * connections that were still being sniffed or in their TLS handshake when the drain began.
   */
  async close(graceMs: number): Promise<void> {
    this.server.close();
    draining.add(this.servers.http1);
    const deadline = Date.now() + graceMs;
    for (;;) {
      this.servers.http1.closeIdleConnections();
      this.servers.http1Front?.closeIdle();
      for (const session of this.sessions) session.close();
      if (this.sockets.size === 0 || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sockets) s.destroy();
    this.servers.http1.close(); // stops node:http's connection checks
  }
}
