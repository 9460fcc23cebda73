import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as connectH2,
  constants,
  type Http2ServerResponse,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  classifyUpstreamError,
  closeQueuedResponse,
  type DownstreamResponse,
  expiredIf,
  type ForwardOutcome,
  type ForwardRequest,
  onClientConnectionClosed,
  TIMEOUT_CODE,
  timeoutError,
} from './forward';

const {
  HTTP2_HEADER_STATUS,
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_AUTHORITY,
  NGHTTP2_FLAG_END_STREAM,
  NGHTTP2_REFUSED_STREAM,
} = constants;

/** Headers HTTP/2 forbids (connection-specific) or that the session sets itself. */
const NOT_IN_H2 = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

function responseHeaders(headers: IncomingHttpHeaders, req: ForwardRequest): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const name in headers) if (name.charCodeAt(0) !== 58 /* : */ && !NOT_IN_H2.has(name)) out[name] = headers[name];
  req.onResponseHeaders?.(out);
  return out;
}

/**
 * One HTTP/2 connection (session) to one endpoint, multiplexing every request to it — what gRPC
 * needs end to end, trailers included, which undici's HTTP/2 support does not deliver. The session
 * is opened on first use through `connect` (mutual TLS with ALPN h2, or TCP for h2c) and replaced
 * after it closes, errs or receives GOAWAY. Single-threaded use.
 */
export class H2Endpoint {
  private session: ClientHttp2Session | undefined;
  private lastError: Error | undefined;

  constructor(
    private readonly origin: string,
    private readonly connect: () => Socket | Duplex,
  ) {}

  /** Streams one request and its response (headers, body, trailers) to `res`; resolves with the outcome, never rejects. */
  forward(req: ForwardRequest, res: DownstreamResponse): Promise<ForwardOutcome> {
    return new Promise((resolve) => {
      let status = 0;
      let stream: ClientHttp2Stream;
      const host = req.headers.host;
      const headers: OutgoingHttpHeaders = {
        [HTTP2_HEADER_METHOD]: req.method,
        [HTTP2_HEADER_PATH]: req.path,
        ...(typeof host === 'string' ? { [HTTP2_HEADER_AUTHORITY]: host } : {}),
      };
      for (const name in req.headers) if (!NOT_IN_H2.has(name)) headers[name] = req.headers[name];
      let timer: NodeJS.Timeout | undefined;
      let headersTimer: NodeJS.Timeout | undefined;
      /** `timeoutMs` ran out (the time left of the request timeout). */
      let expired = false;
      /** Stops watching the client's HTTP/1.1 connection. */
      let unwatch: () => void = () => undefined;
      /** The outcome is decided: the timers and the connection watch stop. */
      const settle = () => {
        settled = true;
        unwatch();
        clearTimeout(timer);
        clearTimeout(headersTimer);
      };
      const fail = (err: unknown, refused?: boolean) => {
        if (settled) return;
        settle();
        if (res.writableEnded || res.destroyed)
          return resolve({ status, error: 'DOWNSTREAM_DISCONNECT', reason: 'the client went away', bytes: 0 });
        const cause = (err as { code?: string }).code === TIMEOUT_CODE ? err : (this.lastError ?? err);
        const { code, reason } = classifyUpstreamError(cause);
        if (status !== 0 || res.headersSent) res.destroy();
        resolve(expiredIf(expired, { status, error: code, reason, bytes: 0, ...(refused ? { refused: true as const } : {}) }));
      };
      let settled = false;
      try {
        stream = this.sessionNow().request(headers, { endStream: req.body === null });
      } catch (err) {
        fail(err);
        return;
      }
      res.once('close', () => {
        if (!settled) stream.close(constants.NGHTTP2_CANCEL);
      });
      // An HTTP/1.1 request pipelined behind others gets no 'close' of its own when its client
      // connection closes first: that connection's end closes it (and so cancels the stream).
      unwatch = onClientConnectionClosed(res, () => closeQueuedResponse(res));
      const expire = (ms: number) => () => {
        fail(timeoutError(ms));
        stream.close(constants.NGHTTP2_CANCEL);
      };
      if (req.timeoutMs !== undefined) {
        const ms = req.timeoutMs;
        timer = setTimeout(() => {
          expired = true;
          expire(ms)();
        }, ms);
      }
      if (req.headersTimeout !== undefined) headersTimer = setTimeout(expire(req.headersTimeout), req.headersTimeout);
      stream.once('response', (h, flags) => {
        clearTimeout(headersTimer);
        if (req.retryIf?.(Number(h[HTTP2_HEADER_STATUS]), h)) {
          settle();
          stream.close(constants.NGHTTP2_CANCEL);
          return resolve({ status: Number(h[HTTP2_HEADER_STATUS]), bytes: 0, retry: true, headers: h });
        }
        status = Number(h[HTTP2_HEADER_STATUS]);
        const out = responseHeaders(h, req);
        // A trailers-only response (gRPC errors): headers that end the stream must stay that way downstream.
        if (flags & NGHTTP2_FLAG_END_STREAM && 'stream' in res)
          (res as Http2ServerResponse).stream.respond({ ':status': status, ...out }, { endStream: true });
        else (res as Http2ServerResponse).writeHead(status, out as OutgoingHttpHeaders);
      });
      let trailers: IncomingHttpHeaders | undefined;
      stream.once('trailers', (t) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => {
        if (settled) return;
        if (!(res as Http2ServerResponse).write(chunk)) {
          stream.pause();
          res.once('drain', () => stream.resume());
        }
      });
      stream.once('end', () => {
        if (settled) return;
        settle();
        if (!res.writableEnded) {
          if (trailers) res.addTrailers(responseHeaders(trailers, { ...req, onResponseHeaders: undefined }) as Record<string, string>);
          res.end();
        }
        resolve({ status, bytes: 0 });
      });
      stream.once('error', fail);
      stream.once('close', () => {
        if (!settled && stream.rstCode !== constants.NGHTTP2_NO_ERROR)
          fail(new Error(`stream reset (code ${stream.rstCode})`), stream.rstCode === NGHTTP2_REFUSED_STREAM);
      });
      if (Buffer.isBuffer(req.body)) stream.end(req.body);
      else if (req.body) req.body.pipe(stream);
    });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private sessionNow(): ClientHttp2Session {
    const s = this.session;
    if (s && !s.closed && !s.destroyed) return s;
    this.lastError = undefined;
    const session = connectH2(this.origin, {
      createConnection: () => {
        const socket = this.connect();
        socket.once('error', (err: Error) => {
          this.lastError = err;
        });
        return socket;
      },
    });
    session.on('error', (err) => {
      this.lastError ??= err;
    });
    const drop = () => {
      if (this.session === session) this.session = undefined;
    };
    session.once('close', drop);
    session.once('goaway', drop);
    this.session = session;
    return session;
  }
}
