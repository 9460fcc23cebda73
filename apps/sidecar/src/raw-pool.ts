import type { Socket } from 'node:net';

/** What uses an upstream connection while it carries one exchange. */
export interface UpstreamUser {
  onUpstreamData(chunk: Buffer): void;
  /** The upstream ended its side (end of a close-delimited body, or a reset); the socket is gone after this. */
  onUpstreamEnd(): void;
  onUpstreamError(err: Error): void;
  onUpstreamDrain(): void;
}

/** Keep-alive hint threshold: undici's keepAliveTimeoutThreshold (a connection the upstream is about to close is not reused). */
const KEEP_ALIVE_THRESHOLD_MS = 2_000;

/** undici's error for a connection the upstream closed before a complete response. */
export function socketClosedError(): Error {
  return Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
}

/** One keep-alive connection to an endpoint: its listeners are set once and dispatch to the exchange using it. */
export class UpstreamConnection {
  user: UpstreamUser | undefined;
  /** It carried an exchange before (a failure before any response byte may be the upstream closing it while idle). */
  reused = false;
  /** The socket's inactivity timeout: the idle timeout (set again only when it changes). */
  private timeoutMs = 0;
  /** Inactivity seen while busy, in timeouts: the busy timeout is a multiple of the idle one's ticks. */
  private silentMs = 0;

  constructor(
    readonly socket: Socket,
    private readonly pool: RawPool,
  ) {
    this.setTimer(pool.idleMs);
    socket.on('data', (chunk: Buffer) => {
      this.silentMs = 0;
      if (this.user) this.user.onUpstreamData(chunk);
      else {
        // Bytes on an idle connection: nothing can be trusted on it.
        this.pool.forget(this);
        socket.destroy();
      }
    });
    socket.on('end', () => {
      const user = this.user;
      this.user = undefined;
      this.pool.forget(this);
      socket.destroy();
      user?.onUpstreamEnd();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(socketClosedError()));
    socket.on('drain', () => this.user?.onUpstreamDrain());
    socket.on('timeout', () => {
      if (!this.user) {
        this.pool.forget(this);
        socket.destroy();
        return;
      }
      this.silentMs += this.timeoutMs;
      if (this.silentMs < this.pool.busyTimeoutMs) {
        socket.setTimeout(this.timeoutMs); // a fired timeout re-arms only on activity
        return;
      }
      this.fail(Object.assign(new Error(`the upstream stayed silent for ${this.silentMs} ms`), { code: 'UND_ERR_BODY_TIMEOUT' }));
    });
  }

  private fail(err: Error): void {
    this.pool.forget(this);
    const user = this.user;
    this.user = undefined;
    this.socket.destroy();
    user?.onUpstreamError(err);
  }

  private setTimer(ms: number): void {
    if (ms === this.timeoutMs) return;
    this.timeoutMs = ms;
    this.socket.setTimeout(ms);
  }

  /** Starts carrying an exchange: the busy timeout applies (undici's body/headers timeout). */
  take(user: UpstreamUser): void {
    this.user = user;
    this.silentMs = 0;
  }

  /** The exchange is over and left the connection clean: back to the pool. `hintMs` is the upstream's Keep-Alive timeout. */
  release(hintMs: number | undefined): void {
    this.user = undefined;
    this.reused = true;
    const idleMs = hintMs === undefined ? this.pool.idleMs : Math.min(hintMs - KEEP_ALIVE_THRESHOLD_MS, this.pool.maxIdleMs);
    if (idleMs <= 0 || !this.pool.keep(this)) {
      this.socket.destroy();
      return;
    }
    this.setTimer(idleMs);
  }

  /** The exchange failed or was cut: the connection cannot carry another. */
  destroy(): void {
    this.user = undefined;
    this.pool.forget(this);
    this.socket.destroy();
  }
}

/**
 * Keep-alive HTTP/1.1 connections to one endpoint for the outbound fast path, opened with the same
 * connector as the endpoint's undici pool (plain TCP, or mutual TLS verifying the SPIFFE ID, ALPN
 * http/1.1). Idle connections are reused last-in first-out and closed after the idle timeout (or
 * the upstream's shorter Keep-Alive hint, as undici does). Single-threaded use.
 */
export class RawPool {
  private readonly idle: UpstreamConnection[] = [];
  private closed = false;

  constructor(
    /** Opens a socket; `ready` is its connect (or secureConnect) event. Errors carry `meshStage`. */
    private readonly open: () => { socket: Socket; tls: boolean },
    readonly idleMs: number,
    readonly maxIdleMs: number,
    /** Longest silence of the upstream while it carries an exchange (undici's headers/body timeout). */
    readonly busyTimeoutMs: number,
  ) {}

  /** An idle connection, or a new one once connected (`err` on connect or TLS failure). */
  acquire(cb: (err: Error | undefined, conn: UpstreamConnection | undefined) => void): void {
    let conn = this.idle.pop();
    // One the upstream just closed may not have had its 'close' event yet.
    while (conn && (conn.socket.destroyed || !conn.socket.writable)) conn = this.idle.pop();
    if (conn) {
      cb(undefined, conn);
      return;
    }
    if (this.closed) {
      cb(Object.assign(new Error('the endpoint is gone'), { code: 'UND_ERR_DESTROYED' }), undefined);
      return;
    }
    const { socket, tls } = this.open();
    const onError = (err: Error) => {
      socket.off(tls ? 'secureConnect' : 'connect', onReady);
      socket.destroy();
      cb(err, undefined);
    };
    const onReady = () => {
      socket.off('error', onError);
      cb(undefined, new UpstreamConnection(socket, this));
    };
    socket.once('error', onError);
    socket.once(tls ? 'secureConnect' : 'connect', onReady);
  }

  /** @internal */
  keep(conn: UpstreamConnection): boolean {
    if (this.closed) return false;
    this.idle.push(conn);
    return true;
  }

  /** @internal */
  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes the idle connections; connections in use close when their exchange ends. */
  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.socket.destroy();
  }
}
