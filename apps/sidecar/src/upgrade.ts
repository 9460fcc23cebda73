import type { Server as HttpServer, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import type { Http2Server, Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import { classifyUpstreamError, HOP_BY_HOP, hasBody, TIMEOUT_CODE } from './forward';
import { codingsBesidesChunked, hasToken } from './http1-wire';
import { LOCAL_REPLIES, type LocalReplyCode, localReplyBytes, sendLocalReply } from './local-reply';
import { endAndLinger, MAX_HEADER_LINES } from './protocol-listener';

/**
 * Whether a request asks to become a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`): the
 * one upgrade the mesh tunnels. Any other (h2c, custom protocols) is an ordinary request whose
 * Upgrade is ignored, as RFC 9110 §7.8 lets a server do: h2c would carry HTTP/2 requests that the
 * sidecars could then no longer authorize, route or count one by one.
 */
export function isWebSocketUpgrade(headers: IncomingHttpHeaders): boolean {
  const upgrade = headers.upgrade;
  const connection = headers.connection;
  return typeof upgrade === 'string' && typeof connection === 'string' && hasToken(upgrade, 'websocket') && hasToken(connection, 'upgrade');
}

/**
 * Routes a node:http server's upgrade requests: WebSocket upgrades to `tunnel`; every other one
 * goes back to the server as the ordinary request it also is (node:http hands all of them to the
 * `upgrade` listener once there is one): its head again without Upgrade and HTTP2-Settings, the
 * bytes after it (a body) behind it. Either waits until a response still being written on the
 * connection (to a pipelined request before this one) is out: node hands the socket over at once.
 */
export function acceptUpgrades(server: HttpServer, tunnel: (req: IncomingMessage, socket: Socket, head: Buffer) => void): void {
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    afterPendingResponse(socket, () => {
      if (isWebSocketUpgrade(req.headers)) return tunnel(req, socket, head);
      if (req.rawHeaders.length / 2 >= MAX_HEADER_LINES) {
        // Not every line was kept: a head rebuilt from them could lose its framing.
        refuseUpgrade(socket, 'BAD_REQUEST', 'too many header lines', undefined, 431);
        return;
      }
      let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
      const raw = req.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const name = (raw[i] as string).toLowerCase();
        let value = raw[i + 1] as string;
        if (name === 'upgrade' || name === 'http2-settings') continue;
        if (name === 'connection') {
          value = value
            .split(',')
            .map((t) => t.trim())
            .filter((t) => t && !['upgrade', 'http2-settings'].includes(t.toLowerCase()))
            .join(', ');
          if (!value) continue;
        }
        text += `${raw[i]}: ${value}\r\n`;
      }
      // The earlier connection state's keep-alive timer must not cut the request the new one serves.
      socket.setTimeout(0);
      socket.unshift(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), head]));
      server.emit('connection', socket);
    });
  });
}

/** Why a CONNECT request is refused: the sidecar proxies HTTP requests and opens no tunnels. */
export const CONNECT_REFUSED =
  'CONNECT is not supported: the sidecar proxies HTTP requests, it opens no tunnels (call http://<service>.mesh/…: the mesh encrypts between sidecars)';

/**
 * Answers every CONNECT request on `server` with 501 and {@link CONNECT_REFUSED}, where node:http
 * would drop the connection without a word; `log` records each with the status sent.
 */
export function refuseConnects(
  server: HttpServer,
  h2: Http2Server,
  log: (req: IncomingMessage | Http2ServerRequest, status: number) => void,
): void {
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    afterPendingResponse(socket, () => log(req, refuseUpgrade(socket, 'BAD_REQUEST', CONNECT_REFUSED, undefined, 501)));
  });
  // HTTP/2 (h2c, or h2 over mTLS): node's compatibility layer would answer a bare 405 itself.
  h2.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    sendLocalReply(req, res, 'BAD_REQUEST', CONNECT_REFUSED, undefined, 501);
    log(req, 501);
  });
}

/** Runs `then` once the response node:http is still writing on `socket` (if any) is out; destroys the socket when that response fails. */
function afterPendingResponse(socket: Socket, then: () => void): void {
  const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!pending || pending.writableFinished) {
    then();
    return;
  }
  socket.pause();
  let done = false;
  pending.once('finish', () => {
    done = true;
    then();
  });
  pending.once('close', () => {
    if (!done) socket.destroy();
  });
}

/** Why a WebSocket upgrade request cannot be tunnelled as it is; undefined when it can. */
export function upgradeProblem(req: IncomingMessage): string | undefined {
  return hasBody(req) ? 'a WebSocket upgrade request must not have a body' : undefined;
}

/**
 * An HTTP/1.1 request asking to switch to WebSocket, as the listener's node:http server hands it
 * over with its socket: what goes to the upstream.
 */
export interface UpgradeForward {
  method: string;
  /** The request target for the upstream (origin form, after any rewrite). */
  path: string;
  /** The request headers for the upstream, hop-by-hop ones already dropped (Connection and Upgrade are set here). */
  headers: Record<string, string | string[]>;
  /** The Upgrade header as the client sent it. */
  protocol: string;
  /** A new connection to the upstream, not a pooled one: after a 101 it carries the other protocol. */
  connect: () => Socket;
  /** How long the upstream may take to answer the upgrade request. */
  timeoutMs: number;
  /** Headers added to the upstream's answer (a rate limit's RateLimit-* headers), 101 or not. */
  responseHeaders?: Record<string, string> | undefined;
  /** A tunnel that carried no byte either way for this long is closed (SIDECAR_TUNNEL_IDLE_TIMEOUT). */
  idleTimeoutMs: number;
}

/** How an upgrade request ended, for metrics, outlier detection and the access log. */
export interface UpgradeOutcome {
  /** 101 when the connection switched protocols; the upstream's status when it declined; 0 when no answer came. */
  status: number;
  /** The connection is now a tunnel (`onClosed` runs when it ends). */
  tunnel?: boolean;
  error?: LocalReplyCode | 'DOWNSTREAM_DISCONNECT';
  reason?: string;
}

/** What the client gets instead of an upgrade: the local reply, then the connection ends (lingering, as after any refusal). */
export function refuseUpgrade(
  client: Socket,
  code: LocalReplyCode,
  reason: string,
  headers?: Record<string, string>,
  status?: number,
): number {
  const s = status ?? LOCAL_REPLIES[code];
  if (!client.destroyed) endAndLinger(client, localReplyBytes(s, code, reason, 'Connection: close\r\n', false, undefined, headers));
  return s;
}

function headLines(statusLine: string, raw: string[], skip: (name: string) => boolean, extra: Record<string, string> | undefined): string {
  let text = `${statusLine}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!skip(name.toLowerCase())) text += `${name}: ${raw[i + 1]}\r\n`;
  }
  if (extra) for (const name in extra) text += `${name}: ${extra[name]}\r\n`;
  return text;
}

const GONE = 'the client went away before the upstream answered the upgrade';

/**
 * Sends an upgrade request over a new upstream connection and relays the answer. A 101 (with
 * Upgrade) goes to the client as the upstream wrote it, and from then on the two connections are
 * one tunnel: bytes flow both ways as they come (backpressure included) until either side ends or
 * fails, which ends the other. Any other answer is relayed whole, with backpressure, with
 * `Connection: close`, and both connections end, as a declined upgrade leaves the client's
 * connection in no known state. No answer (connect failure, TLS failure, timeout, reset, a 101 that
 * switches nothing) resolves with the local reply's code and reason for the caller to send
 * ({@link refuseUpgrade}). Resolves once the tunnel is up, or the declined answer relayed (or cut);
 * `onClosed` runs once a tunnel is over.
 */
export function relayUpgrade(client: Socket, head: Buffer, fwd: UpgradeForward, onClosed?: () => void): Promise<UpgradeOutcome> {
  if (client.destroyed) return Promise.resolve({ status: 0, error: 'DOWNSTREAM_DISCONNECT', reason: GONE });
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: UpgradeOutcome) => {
      if (settled) return;
      settled = true;
      client.off('close', onClientGone);
      resolve(o);
    };
    const upReq = httpRequest({
      method: fwd.method,
      path: fwd.path,
      setHost: false,
      headers: { ...fwd.headers, connection: 'Upgrade', upgrade: fwd.protocol },
      createConnection: () => fwd.connect(),
    });
    let status = 0;
    const onClientGone = () => {
      upReq.destroy();
      done({ status, error: 'DOWNSTREAM_DISCONNECT', reason: status ? 'the client went away during the answer' : GONE });
    };
    client.once('close', onClientGone);
    const ms = fwd.timeoutMs;
    upReq.setTimeout(ms, () => upReq.destroy(Object.assign(new Error(`no answer to the upgrade within ${ms} ms`), { code: TIMEOUT_CODE })));
    upReq.on('upgrade', (res: IncomingMessage, upstream: Socket, upHead: Buffer) => {
      upstream.setTimeout(0);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      const line = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}`;
      client.write(`${headLines(line, res.rawHeaders, () => false, fwd.responseHeaders)}\r\n`, 'latin1');
      if (upHead.length > 0) client.write(upHead);
      if (head.length > 0) upstream.write(head);
      tunnel(client, upstream, fwd.idleTimeoutMs, onClosed);
      done({ status: 101, tunnel: true });
    });
    upReq.on('response', (res: IncomingMessage) => {
      status = res.statusCode ?? 502;
      if (status === 101) {
        // llhttp hands a 101 over as an upgrade only with Upgrade and Connection: upgrade.
        res.socket?.destroy();
        status = 0;
        return done({ status: 0, error: 'UPSTREAM_RESET', reason: 'the upstream answered 101 without switching protocols (no Upgrade)' });
      }
      relayDeclined(
        client,
        res,
        fwd,
        () => done({ status }),
        (reason) => done({ status, error: 'UPSTREAM_RESET', reason }),
      );
    });
    upReq.on('error', (err) => {
      if (settled) return;
      const { code, reason } = classifyUpstreamError(err);
      done({ status: 0, error: code, reason });
    });
    upReq.end();
  });
}

/** A declined upgrade's answer as it came, framed for a connection that closes after it; `cut` when it breaks off. */
function relayDeclined(
  client: Socket,
  res: IncomingMessage,
  fwd: UpgradeForward,
  finished: () => void,
  cut: (reason: string) => void,
): void {
  const status = res.statusCode ?? 502;
  const bodiless = fwd.method === 'HEAD' || status === 204 || status === 304 || status < 200;
  const chunked = !bodiless && res.headers['content-length'] === undefined;
  const text = headLines(
    `HTTP/1.1 ${status} ${res.statusMessage ?? ''}`,
    res.rawHeaders,
    (name) => HOP_BY_HOP.has(name) || (chunked && name === 'content-length'),
    fwd.responseHeaders,
  );
  const codings = chunked ? codingsBesidesChunked(res.headers['transfer-encoding']) : undefined;
  const framing = chunked ? `transfer-encoding: ${codings ? `${codings}, ` : ''}chunked\r\n` : '';
  client.write(`${text}${framing}connection: close\r\n\r\n`, 'latin1');
  res.on('data', (chunk: Buffer) => {
    if (chunk.length === 0) return;
    const ok = chunked ? client.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, CRLF])) : client.write(chunk);
    if (!ok) {
      res.pause();
      client.once('drain', () => res.resume());
    }
  });
  res.on('end', () => {
    endAndLinger(client, chunked ? LAST_CHUNK : undefined);
    res.socket?.destroy();
    finished();
  });
  res.on('close', () => {
    if (res.complete) return;
    client.destroy();
    cut('the upstream closed the connection before the end of its answer to the upgrade');
  });
}

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/**
 * Joins two connections: each one's bytes go to the other; either ending or failing ends both, and
 * so does `idleMs` without a byte either way (every byte is read from the client's connection or
 * written to it, so its inactivity timer sees both directions).
 */
function tunnel(client: Socket, upstream: Socket, idleMs: number, onClosed?: () => void): void {
  client.setTimeout(idleMs);
  client.once('timeout', () => client.destroy());
  client.pipe(upstream);
  upstream.pipe(client);
  let open = 2;
  const closed = () => {
    if (--open === 0) onClosed?.();
  };
  // A failure on one side cuts the other (pipe() ends it only on a clean end).
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.once('close', () => {
    upstream.destroy();
    closed();
  });
  upstream.once('close', () => {
    client.destroy();
    closed();
  });
}
