import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { classifyUpstreamError, HOP_BY_HOP, TIMEOUT_CODE } from './forward';
import { LOCAL_REPLIES, type LocalReplyCode, localReplyBytes } from './local-reply';

/**
 * An HTTP/1.1 request asking to switch protocols (`Connection: Upgrade`, `Upgrade: websocket`), as
 * the listener's node:http server hands it over with its socket: what goes to the upstream.
 */
export interface UpgradeForward {
  method: string;
  /** The request target for the upstream (origin form, after any rewrite). */
  path: string;
  /** The request headers for the upstream, hop-by-hop ones already dropped (Connection and Upgrade are set here). */
  headers: Record<string, string | string[]>;
  /** The Upgrade header as the client sent it (`websocket`, or a list). */
  protocol: string;
  /** HTTP2-Settings of an `Upgrade: h2c` request, which must travel with it (it is hop-by-hop). */
  http2Settings?: string | undefined;
  /** A new connection to the upstream, not a pooled one: after a 101 it carries the other protocol. */
  connect: () => Socket;
  /** How long the upstream may take to answer the upgrade request; none when undefined. */
  timeoutMs?: number | undefined;
  /** Headers added to the upstream's answer (a rate limit's RateLimit-* headers), 101 or not. */
  responseHeaders?: Record<string, string> | undefined;
}

/** How an upgrade request ended, for metrics, outlier detection and the access log. */
export interface UpgradeOutcome {
  /** 101 when the connection switched protocols; the upstream's status when it declined; 0 when no answer came. */
  status: number;
  error?: LocalReplyCode | 'DOWNSTREAM_DISCONNECT';
  reason?: string;
}

/** What the client gets when the upgrade request gets no answer: the local reply, then the connection closes. */
export function refuseUpgrade(
  client: Socket,
  code: LocalReplyCode,
  reason: string,
  headers?: Record<string, string>,
  status?: number,
): number {
  const s = status ?? LOCAL_REPLIES[code];
  if (!client.destroyed) client.end(localReplyBytes(s, code, reason, 'Connection: close\r\n', false, undefined, headers));
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

/**
 * Sends an upgrade request over a new upstream connection and relays the answer. A 101 goes to the
 * client as the upstream wrote it, and from then on the two connections are one tunnel: bytes flow
 * both ways as they come (backpressure included) until either side ends or fails, which ends the
 * other. Any other answer is relayed whole with `Connection: close` and both connections end, as a
 * declined upgrade leaves the client's connection in no known state. No answer (connect failure,
 * TLS failure, timeout, reset) resolves with the local reply's code and reason for the caller to
 * send ({@link refuseUpgrade}). Resolves when the answer's head is known; `onClosed` runs once a
 * tunnel is over.
 */
export function relayUpgrade(
  client: Socket,
  head: Buffer,
  fwd: UpgradeForward,
  onClosed?: (bytes: { fromClient: number; toClient: number }) => void,
): Promise<UpgradeOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: UpgradeOutcome) => {
      if (settled) return;
      settled = true;
      client.off('close', onClientGone);
      resolve(o);
    };
    const headers: Record<string, string | string[]> = { ...fwd.headers, connection: 'Upgrade', upgrade: fwd.protocol };
    if (fwd.http2Settings !== undefined) {
      headers.connection = 'Upgrade, HTTP2-Settings';
      headers['http2-settings'] = fwd.http2Settings;
    }
    const upReq = httpRequest({
      method: fwd.method,
      path: fwd.path,
      setHost: false,
      headers,
      createConnection: () => fwd.connect(),
    });
    const onClientGone = () => {
      upReq.destroy();
      done({ status: 0, error: 'DOWNSTREAM_DISCONNECT', reason: 'the client went away before the upstream answered the upgrade' });
    };
    client.once('close', onClientGone);
    if (fwd.timeoutMs !== undefined) {
      const ms = fwd.timeoutMs;
      upReq.setTimeout(ms, () =>
        upReq.destroy(Object.assign(new Error(`no answer to the upgrade within ${ms} ms`), { code: TIMEOUT_CODE })),
      );
    }
    upReq.on('upgrade', (res: IncomingMessage, upstream: Socket, upHead: Buffer) => {
      upstream.setTimeout(0);
      if (client.destroyed) {
        upstream.destroy();
        return done({ status: 0, error: 'DOWNSTREAM_DISCONNECT', reason: 'the client went away before the upstream answered the upgrade' });
      }
      client.setTimeout(0);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      client.write(
        `${headLines(`HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}`, res.rawHeaders, () => false, fwd.responseHeaders)}\r\n`,
        'latin1',
      );
      if (upHead.length > 0) client.write(upHead);
      if (head.length > 0) upstream.write(head);
      tunnel(client, upstream, onClosed);
      done({ status: 101 });
    });
    upReq.on('response', (res: IncomingMessage) => {
      // Declined: the answer as it came, framed for a connection that closes after it.
      const status = res.statusCode ?? 502;
      const bodiless = fwd.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
      const length = res.headers['content-length'];
      const chunked = !bodiless && length === undefined;
      const text = headLines(
        `HTTP/1.1 ${status} ${res.statusMessage ?? ''}`,
        res.rawHeaders,
        (name) => HOP_BY_HOP.has(name) || (chunked && name === 'content-length'),
        fwd.responseHeaders,
      );
      client.write(`${text}${chunked ? 'transfer-encoding: chunked\r\n' : ''}connection: close\r\n\r\n`, 'latin1');
      res.on('data', (chunk: Buffer) => {
        if (!chunked) client.write(chunk);
        else if (chunk.length > 0)
          client.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
      });
      res.on('end', () => {
        if (chunked) client.end('0\r\n\r\n');
        else client.end();
        res.socket?.destroy();
      });
      res.on('close', () => {
        if (res.complete) return;
        client.destroy();
        done({ status, error: 'UPSTREAM_RESET', reason: 'the upstream closed the connection before the end of its answer to the upgrade' });
      });
      done({ status });
    });
    upReq.on('error', (err) => {
      if (settled) return;
      const { code, reason } = classifyUpstreamError(err);
      done({ status: 0, error: code, reason });
    });
    upReq.end();
  });
}

/** Joins two connections: each one's bytes go to the other; either ending or failing ends both. */
function tunnel(client: Socket, upstream: Socket, onClosed?: (bytes: { fromClient: number; toClient: number }) => void): void {
  client.pipe(upstream);
  upstream.pipe(client);
  let open = 2;
  const closed = () => {
    if (--open > 0) return;
    onClosed?.({ fromClient: client.bytesRead, toClient: client.bytesWritten });
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
