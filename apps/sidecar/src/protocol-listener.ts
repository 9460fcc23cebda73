import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer, type RequestListener } from 'node:http';
import type { Http2Server } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

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
 * Once decided, the connection's time limits are those of the server it goes to.
 */
export function sniffProtocol(socket: Socket, timeoutMs: number, then: (protocol: WireProtocol) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const stop = () => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('close', stop);
  };
  const timer = setTimeout(() => {
    stop();
    socket.destroy();
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

/** keepAliveTimeout of the sidecar's listeners (node:http and the fast paths): idle client connections close after it. */
export const KEEP_ALIVE_MS = 65_000;

/**
 * The node:http server behind a {@link ProtocolListener}: keep-alive for 65 s, no limit on a whole
 * request (`requestTimeout` 0, so node:http's rule headersTimeout <= requestTimeout does not apply),
 * and a request head must arrive whole within `headersTimeoutMs` (SIDECAR_HEADERS_TIMEOUT) or gets
 * 408 and the connection closes — the fast paths read the same `headersTimeout` from this server.
 */
export function createHttp1Server(headersTimeoutMs: number, handler: RequestListener): HttpServer {
  const server = createHttpServer(
    {
      keepAliveTimeout: KEEP_ALIVE_MS,
      requestTimeout: 0,
      headersTimeout: headersTimeoutMs,
      // node:http looks for expired heads this often (30 s by default): a quarter of the limit keeps a 408 within 1.25 times it.
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.ceil(headersTimeoutMs / 4))),
    },
    handler,
  );
  // node:http tracks connections (for headersTimeout and closeIdleConnections) from its 'listening'
  // event on; this server never listens itself (connections are handed to it), so it is told here.
  server.emit('listening');
  return server;
}

/** Takes HTTP/1.1 connections before the node:http server (the outbound fast path), handing some over to it. */
export interface Http1Front {
  accept(socket: Socket): void;
  /** Draining: closes idle connections, the busy ones after their current response. */
  closeIdle(): void;
}

/**
 * One TCP port serving HTTP/1.1 and plaintext HTTP/2 (and, through `onTls`, TLS): connections are
 * sniffed and handed to the right server. Tracks sockets so `close` can drain them.
 */
export class ProtocolListener {
  private readonly server: NetServer;
  readonly sockets = new Set<Socket>();

  constructor(
    private readonly servers: {
      http1: HttpServer;
      h2c: Http2Server;
      onTls?: (socket: Socket) => void;
      http1Front?: Http1Front | undefined;
      /** SIDECAR_LISTENER_FILTERS_TIMEOUT (see {@link sniffProtocol}); 15 s, Envoy's default, when unset. */
      filtersTimeoutMs?: number;
    },
  ) {
    // noDelay as node:http does by default: without it Nagle's algorithm holds small writes back.
    this.server = createNetServer({ pauseOnConnect: true, noDelay: true, keepAlive: true }, (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      sniffProtocol(socket, this.servers.filtersTimeoutMs ?? 15_000, (protocol) => {
        if (protocol === 'tls') {
          if (this.servers.onTls) this.servers.onTls(socket);
          else socket.destroy();
        } else if (protocol === 'http1' && this.servers.http1Front) this.servers.http1Front.accept(socket);
        else (protocol === 'h2c' ? this.servers.h2c : this.servers.http1).emit('connection', socket);
      });
    });
  }

  async listen(port: number, host: string): Promise<number> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    return (this.server.address() as { port: number }).port;
  }

  /** Stops accepting; closes idle HTTP/1.1 connections and HTTP/2 sessions gracefully, then whatever is left after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.server.close();
    this.servers.http1.closeIdleConnections();
    this.servers.http1Front?.closeIdle();
    this.servers.h2c.close();
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      this.servers.http1.closeIdleConnections();
      this.servers.http1Front?.closeIdle();
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sockets) s.destroy();
    this.servers.http1.close(); // stops node:http's connection checks
  }
}
