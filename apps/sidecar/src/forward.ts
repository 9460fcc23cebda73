import { EventEmitter } from 'node:events';
import { type IncomingHttpHeaders, type IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AttemptFailure } from '@novamesh/dataplane';
import type { Dispatcher } from 'undici';
import { codingsBesidesChunked, hostProblem } from './http1-wire';
import type { LocalReplyCode } from './local-reply';

/** Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus proxy leftovers. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
]);

/** A request as either HTTP version delivers it (node:http, or node:http2's compatibility API). */
export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/**
 * A copy of `headers` without hop-by-hop headers (and without those the Connection header names),
 * without HTTP/2 pseudo-headers (`:authority` becomes `host`), keeping `te: trailers`, which gRPC
 * needs end to end. `Expect: 100-continue` is not passed on either: node:http answered it with
 * `100 Continue` already (and undici refuses to send it).
 */
export function forwardableHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const extra = connectionNamed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || extra?.has(name)) continue;
    if (name === 'expect' && typeof value === 'string' && value.toLowerCase() === '100-continue') continue;
    if (HOP_BY_HOP.has(name)) {
      if (name === 'te' && value === 'trailers') out.te = value;
      continue;
    }
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority' && headers.host === undefined) out.host = value as string;
      continue;
    }
    out[name] = value;
  }
  return out;
}

/**
 * An absolute-form request target (`http://orders.mesh/a?b`, RFC 9112 §3.2.2) split into its
 * authority (without userinfo), which replaces the Host header, and its origin-form path, kept as
 * sent (no dot-segment or percent-encoding normalization: origin-form targets get none either);
 * undefined when `target` is not one.
 */
export function absoluteForm(target: string): { authority: string; path: string } | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)([^#]*)/i.exec(target);
  const authority = m?.[1]?.slice(m[1].lastIndexOf('@') + 1);
  if (!m || !authority) return undefined;
  const rest = m[2] ?? '';
  return { authority, path: rest.startsWith('/') ? rest : `/${rest}` };
}

/** How a forwarded request ended, for metrics, outlier detection and the access log. */
export interface ForwardOutcome {
  /** Status sent downstream (the upstream's, or the local reply's); 0 when the client went away first. */
  status: number;
  /** Set when the sidecar answered itself or cut the response. */
  error?: LocalReplyCode | 'DOWNSTREAM_DISCONNECT';
  reason?: string;
  /** Response body size when the upstream declared it (content-length), else 0. */
  bytes: number;
  /** `retryIf` accepted the response: nothing was sent downstream, its body was dropped. */
  retry?: true;
  /** Response headers of a retried response (for `Retry-After`). */
  headers?: IncomingHttpHeaders;
  /** The HTTP/2 upstream refused the stream (REFUSED_STREAM): the request never reached the app. */
  refused?: true;
  /** The attempt's `timeoutMs` (the time its request timeout had left) ran out: no time for another try. */
  expired?: true;
  /**
   * The upstream answered, with this status, but the answer cannot go to this client as it is
   * (a transfer coding an HTTP/1.0 or HTTP/2 client cannot be sent): the local reply is final — no
   * retry (every endpoint would answer alike) and, for outlier detection, the upstream's status.
   */
  answered?: number;
}

/** Code of the error a {@link ForwardRequest.timeoutMs} expiry fails an attempt with. */
export const TIMEOUT_CODE = 'MESH_TIMEOUT';

/** What kind of failure an undici error is, by its code; `tls` is tagged by the connector. */
export function classifyUpstreamError(err: unknown): { code: LocalReplyCode; reason: string } {
  const e = err as { code?: string; meshStage?: string; message?: string };
  const detail = `${e.code ?? 'error'}: ${e.message ?? String(err)}`;
  if (e.meshStage === 'tls') return { code: 'UPSTREAM_TLS_FAILURE', reason: `TLS with the upstream failed (${detail})` };
  switch (e.code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { code: 'UPSTREAM_CONNECT_FAILURE', reason: `cannot connect to the upstream (${detail})` };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case TIMEOUT_CODE:
      return { code: 'UPSTREAM_TIMEOUT', reason: `the upstream did not answer in time (${detail})` };
    default:
      if (e.meshStage === 'connect') return { code: 'UPSTREAM_CONNECT_FAILURE', reason: `cannot connect to the upstream (${detail})` };
      return { code: 'UPSTREAM_RESET', reason: `the upstream connection failed before a complete response (${detail})` };
  }
}

/**
 * The local reply for a failure of the sidecar's own workload before its response: APP_UNAVAILABLE
 * when it did not accept the connection; a reset (a broken or malformed answer) or a timeout as for
 * any upstream. So a workload that answers badly is not reported as one that is not there.
 */
export function workloadFailure(code: LocalReplyCode): LocalReplyCode {
  return code === 'UPSTREAM_CONNECT_FAILURE' ? 'APP_UNAVAILABLE' : code;
}

/** The retry condition an attempt that failed without a response (with this local reply code) stands for. */
export function failureOfError(error: LocalReplyCode | 'DOWNSTREAM_DISCONNECT' | undefined): AttemptFailure {
  switch (error) {
    case 'UPSTREAM_CONNECT_FAILURE':
    case 'UPSTREAM_TLS_FAILURE':
      return 'connect-failure';
    case 'UPSTREAM_TIMEOUT':
      return 'timeout';
    default:
      return 'reset';
  }
}

export interface ForwardRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  /** The downstream request (streamed), a stream or the bytes of it for one try (retries), or null when it has none. */
  body: DownstreamRequest | Readable | Buffer | null;
  /** Called with the upstream's status and headers before they are sent (route response header changes). */
  onResponseHeaders?: (headers: Record<string, string | string[] | undefined>) => void;
  /** Per try: the upstream must send response headers within this long (UPSTREAM_TIMEOUT). */
  headersTimeout?: number;
  /** The whole attempt, response body included, must end within this long (UPSTREAM_TIMEOUT). */
  timeoutMs?: number;
  /** Asked with the response's status and headers before anything goes downstream: true drops the response for a retry. */
  retryIf?: (status: number, headers: IncomingHttpHeaders) => boolean;
}

/** The largest request body kept in memory so that a retry can send it again (Envoy's per-request buffer limit). */
export const MAX_RETRY_BODY_BYTES = 64 * 1024;

/**
 * A downstream request body that tries can send again, the way Envoy buffers one for retries: each
 * try streams it upstream as it arrives (nothing waits for the whole body — a gRPC stream may be
 * endless), while the first `limit` bytes are kept. A body announced (content-length) or found to
 * be larger is never held whole: the first try streams it and it cannot be sent again. A try that
 * starts before the body ended gets what was kept, then the rest as it arrives. Backpressure holds:
 * the downstream is paused while a try's stream is full.
 */
export class RetryableBody {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private overflowed: boolean;
  private listening = false;
  /** Streams of the tries that read the body now (the current one, and the next while it waits for its backoff). */
  private readonly sinks = new Set<PassThrough>();
  /** Sinks whose buffer is full: the downstream stays paused until each drained. */
  private readonly full = new Set<PassThrough>();

  constructor(
    private readonly req: DownstreamRequest,
    private readonly limit: number = MAX_RETRY_BODY_BYTES,
  ) {
    this.overflowed = Number(req.headers['content-length']) > limit;
  }

  /** Whether another try can still get the whole body (at most `limit` bytes so far). */
  get replayable(): boolean {
    return !this.overflowed;
  }

  /**
   * The body for one more try: the downstream request itself when it is too large to keep (first
   * try only), the kept bytes once the body ended, else a stream of the kept bytes and the rest.
   * Undefined when it cannot be sent again. Pass what it returned to {@link close} when the try ends.
   */
  open(): DownstreamRequest | Readable | Buffer | undefined {
    if (this.overflowed) {
      if (this.listening) return undefined;
      this.listening = true;
      return this.req;
    }
    if (this.ended) return Buffer.concat(this.chunks, this.size);
    const sink = new PassThrough();
    // Whoever reads it handles its failures; a stray one must not take the process down.
    sink.on('error', () => undefined);
    for (const c of this.chunks) sink.write(c);
    this.sinks.add(sink);
    if (!this.listening) {
      this.listening = true;
      this.req.on('data', this.onData);
      this.req.once('end', this.onEnd);
      this.req.once('close', this.onClose);
    }
    return sink;
  }

  /** The try that read `body` is over: stop feeding its stream. */
  close(body: ForwardRequest['body'] | undefined): void {
    if (!(body instanceof PassThrough) || !this.sinks.delete(body)) return;
    this.unblock(body);
    body.destroy();
  }

  private readonly onData = (chunk: Buffer) => {
    if (!this.overflowed) {
      if (this.size + chunk.length > this.limit) {
        this.overflowed = true;
        this.chunks.length = 0;
        this.size = 0;
      } else {
        this.chunks.push(chunk);
        this.size += chunk.length;
      }
    }
    for (const sink of this.sinks) {
      if (sink.destroyed || sink.write(chunk) || this.full.has(sink)) continue;
      this.full.add(sink);
      this.req.pause();
      sink.once('drain', () => this.unblock(sink));
    }
  };

  private readonly onEnd = () => {
    this.ended = true;
    for (const sink of this.sinks) sink.end();
  };

  /**
   * The client went away mid-body: the tries reading it end too (their attempt fails as a downstream
   * disconnect), and what was kept is never sent as the body (node:http2 may still emit 'end' after
   * an aborted stream's 'close').
   */
  private readonly onClose = () => {
    this.req.off('data', this.onData);
    if (this.ended) return;
    this.overflowed = true;
    this.chunks.length = 0;
    for (const sink of this.sinks) sink.destroy();
  };

  private unblock(sink: PassThrough): void {
    if (this.full.delete(sink) && this.full.size === 0) this.req.resume();
  }
}

/** True when the downstream request carries a body that must be streamed upstream (HTTP/2: unless the stream already ended). */
export function hasBody(req: DownstreamRequest): boolean {
  if (req.httpVersionMajor === 2) return !(req as Http2ServerRequest).stream.readableEnded && req.headers['content-length'] !== '0';
  return (
    req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')
  );
}

/**
 * The fields a Connection header names as hop-by-hop besides the fixed ones (RFC 9110 §7.6.1: an
 * intermediary removes them, in requests and responses alike); undefined when it names none (the
 * usual `keep-alive` or `close`). Never the body's framing or the host: dropping Content-Length
 * would let a body be read as another message.
 */
export function connectionNamed(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === 'keep-alive' || text === 'close') return undefined;
  const names = text
    .toLowerCase()
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '' && n !== 'keep-alive' && n !== 'close' && n !== 'content-length' && n !== 'host');
  return names.length ? new Set(names) : undefined;
}

function responseHeaders(headers: IncomingHttpHeaders, req: ForwardRequest): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  const named = connectionNamed(headers.connection);
  for (const name in headers) if (!HOP_BY_HOP.has(name) && !named?.has(name)) out[name] = headers[name];
  req.onResponseHeaders?.(out);
  return out;
}

function requestOptions(req: ForwardRequest, signal: EventEmitter): Dispatcher.RequestOptions {
  return {
    method: req.method as Dispatcher.HttpMethod,
    path: req.path,
    headers: req.headers,
    body: req.body,
    signal,
  };
}

/**
 * What undici takes as a request's abort signal: an EventEmitter that emits `abort` when the
 * downstream response closes before it finished (the client went away). Cheaper per request than
 * an AbortController, whose EventTarget machinery showed in the sidecar's profile.
 */
class CloseSignal extends EventEmitter {
  aborted = false;
  /** Stops watching the client's HTTP/1.1 connection (see {@link onClientConnectionClosed}). */
  private readonly unwatch: () => void;
  /** Set when `timeoutMs` ran out: the attempt was aborted by the sidecar, not the client. */
  timedOut = 0;
  /** It was `timeoutMs` (not the headers timeout) that ran out. */
  expired = false;
  private timer: NodeJS.Timeout | undefined;
  private headersTimer: NodeJS.Timeout | undefined;
  private readonly onClose = () => {
    if (this.res.writableFinished) return;
    this.aborted = true;
    this.emit('abort');
  };
  constructor(
    private readonly res: DownstreamResponse,
    timeoutMs: number | undefined,
    /**
     * Until the response headers arrive (the per-try timeout). A native timer on purpose: undici's
     * own headersTimeout runs on its coarse timer wheel (about 1 s resolution), so a 150 ms per-try
     * timeout could fire after a second.
     */
    headersTimeoutMs?: number,
  ) {
    super();
    res.once('close', this.onClose);
    // A pipelined response waits behind the ones before it and gets no 'close' of its own when the
    // connection goes first (node:http): its connection's end counts as the client leaving too.
    this.unwatch = onClientConnectionClosed(res, () => this.connectionClosed());
    if (res instanceof ServerResponse && res.req.socket.destroyed) this.aborted = true;
    if (timeoutMs !== undefined)
      this.timer = setTimeout(() => {
        this.expired = true;
        this.expire(timeoutMs);
      }, timeoutMs);
    if (headersTimeoutMs !== undefined) this.headersTimer = setTimeout(() => this.expire(headersTimeoutMs), headersTimeoutMs);
  }
  private expire(ms: number): void {
    this.timedOut = ms;
    this.emit('abort');
  }
  /** The response headers arrived: the per-try timeout no longer applies. */
  headersArrived(): void {
    if (this.headersTimer) clearTimeout(this.headersTimer);
  }
  /**
   * The client's connection closed: the same as the response closing. A response still queued
   * behind an earlier one (it never had the socket) is closed here, as node:http leaves it open for
   * good: whatever writes into it (undici's stream) ends with it.
   */
  connectionClosed(): void {
    if (!closeQueuedResponse(this.res)) this.onClose(); // else its 'close' ran onClose
  }
  done(): void {
    this.res.off('close', this.onClose);
    this.unwatch();
    if (this.timer) clearTimeout(this.timer);
    if (this.headersTimer) clearTimeout(this.headersTimer);
  }
}

/**
 * Calls `onGone` when the client's HTTP/1.1 connection closes (a response queued behind pipelined
 * ones gets no 'close' of its own); returns what stops watching. Nothing for HTTP/2, whose
 * responses close themselves.
 */
export function onClientConnectionClosed(res: DownstreamResponse, onGone: () => void): () => void {
  if (!(res instanceof ServerResponse)) return () => undefined;
  const socket = res.req.socket;
  const watcher = { connectionClosed: onGone };
  watchConnection(socket, watcher);
  return () => connectionWatchers.get(socket)?.delete(watcher);
}

/**
 * Closes a response still queued behind pipelined ones when its client connection closed: node:http
 * leaves such a response open for good (it never had the socket), so it is destroyed and its
 * `close` emitted here, for whatever waits on it. Returns whether it was such a response.
 */
export function closeQueuedResponse(res: DownstreamResponse): boolean {
  if (!(res instanceof ServerResponse) || res.writableFinished || res.socket || res.destroyed) return false;
  res.destroy();
  res.emit('close');
  return true;
}

/**
 * The client is gone: its response, or (HTTP/1.1) its connection, closed. What waited meanwhile (an
 * injected delay, a place in the breaker's queue) checks this before it goes on.
 */
export function clientGone(res: DownstreamResponse): boolean {
  if (res instanceof ServerResponse) return res.destroyed || res.req.socket.destroyed;
  return res.stream.destroyed;
}

/** What waits on an HTTP/1.1 client connection for a request in progress (a {@link CloseSignal}, a place in the breaker's queue). */
interface ConnectionWatcher {
  connectionClosed(): void;
}

/** The watchers of the requests in progress on each HTTP/1.1 client connection: one 'close' listener per connection, however many requests are pipelined on it. */
const connectionWatchers = new WeakMap<Socket, Set<ConnectionWatcher>>();

function watchConnection(socket: Socket, signal: ConnectionWatcher): void {
  let watchers = connectionWatchers.get(socket);
  if (!watchers) {
    const set = new Set<ConnectionWatcher>();
    watchers = set;
    connectionWatchers.set(socket, set);
    socket.once('close', () => {
      for (const s of [...set]) s.connectionClosed();
      set.clear();
    });
  }
  watchers.add(signal);
}

function abortOnClose(res: DownstreamResponse, req: ForwardRequest): CloseSignal {
  return new CloseSignal(res, req.timeoutMs, req.headersTimeout);
}

/** The error an attempt fails with when its `timeoutMs` ran out. */
export function timeoutError(ms: number): Error {
  return Object.assign(new Error(`no complete response within ${Math.round(ms)} ms`), { code: TIMEOUT_CODE });
}

/** `outcome`, marked {@link ForwardOutcome.expired} when `expired`. */
export function expiredIf(expired: boolean, outcome: ForwardOutcome): ForwardOutcome {
  if (expired) outcome.expired = true;
  return outcome;
}

/**
 * Why an HTTP/1.x request's Host is refused (RFC 9112 §3.2: 400): more than one Host line (node:http
 * keeps the first), none in an HTTP/1.1 request, or a value that is not host[:port]; undefined when
 * it is fine (HTTP/2 requests carry :authority instead).
 */
export function requestHostProblem(req: DownstreamRequest): string | undefined {
  if (req.httpVersionMajor !== 1) return undefined;
  const raw = req.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (value !== undefined) return 'more than one Host header';
    value = raw[i + 1] as string;
  }
  if (value === undefined) return req.httpVersionMinor === 1 ? 'an HTTP/1.1 request must have a Host header' : undefined;
  return hostProblem(value);
}

/**
 * Why a request's body cannot be sent on as it came: a transfer coding besides chunked, which undici
 * would drop (the upstream would read the coded bytes as the content); undefined when it can.
 */
export function requestCodingProblem(req: DownstreamRequest): string | undefined {
  const codings = codingsBesidesChunked(req.headers['transfer-encoding']);
  return codings === undefined ? undefined : `the request's transfer coding ${codings} is not supported (only chunked)`;
}

/**
 * The outcome for an answer whose transfer `codings` besides chunked (`gzip`, of `gzip, chunked`) the client
 * cannot be sent (HTTP/1.0, HTTP/2: neither has them), so would read as content; undefined when the
 * answer has none, or the client speaks HTTP/1.1.
 */
function codingRefusal(
  codings: string | undefined,
  status: number,
  req: ForwardRequest,
  res: DownstreamResponse,
): ForwardOutcome | undefined {
  if (codings === undefined) return undefined;
  const version = res.req.httpVersion;
  // Nothing coded to pass on: an HTTP/1.1 client takes codings, and an answer without a body has none.
  if (version === '1.1' || req.method === 'HEAD' || status < 200 || status === 204 || status === 304) return undefined;
  return {
    status: 0,
    error: 'UNSUPPORTED_TRANSFER_CODING',
    reason: `the upstream answered ${req.method} with transfer coding ${codings}, which an HTTP/${version} client cannot be sent`,
    bytes: 0,
    answered: status,
  };
}

/** A sink for the body of a response dropped for a retry (keeps the connection reusable). */
function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() });
}

function failed(err: unknown, status: number, res: DownstreamResponse, signal: CloseSignal): ForwardOutcome {
  if (signal.aborted) return { status, error: 'DOWNSTREAM_DISCONNECT', reason: 'the client went away', bytes: 0 };
  const { code, reason } = classifyUpstreamError(signal.timedOut ? timeoutError(signal.timedOut) : err);
  if (status !== 0 || res.headersSent) {
    res.destroy();
    return expiredIf(signal.expired, { status, error: code, reason, bytes: 0 });
  }
  return expiredIf(signal.expired, { status: 0, error: code, reason, bytes: 0 });
}

/**
 * The same as {@link forward}, for HTTP/2 and gRPC: the response body is piped and the upstream's
 * trailers (gRPC's `grpc-status`, `grpc-message`) are passed on after it. Slower than `forward`
 * (a stream in between), so HTTP/1.1 traffic does not take this path.
 */
export async function forwardWithTrailers(dispatcher: Dispatcher, req: ForwardRequest, res: DownstreamResponse): Promise<ForwardOutcome> {
  const signal = abortOnClose(res, req);
  let status = 0;
  try {
    const r = await dispatcher.request(requestOptions(req, signal));
    signal.headersArrived();
    if (req.retryIf?.(r.statusCode, r.headers)) {
      // The retry is decided (and its slot taken): a failure while dropping this body must not undo it.
      await r.body.dump().catch(() => undefined);
      return { status: r.statusCode, bytes: 0, retry: true, headers: r.headers };
    }
    const refusal = codingRefusal(codingsBesidesChunked(r.headers['transfer-encoding']), r.statusCode, req, res);
    if (refusal) {
      await r.body.dump().catch(() => undefined); // reads at most 128 KiB, then closes
      return refusal;
    }
    status = r.statusCode;
    (res as ServerResponse).writeHead(status, responseHeaders(r.headers, req));
    await pipeline(r.body, res, { end: false });
    const trailers = Object.entries(r.trailers).filter(([, v]) => v !== undefined);
    if (trailers.length) res.addTrailers(Object.fromEntries(trailers));
    res.end();
    return { status, bytes: Number(r.headers['content-length']) || 0 };
  } catch (err) {
    return failed(err, status, res, signal);
  } finally {
    signal.done();
  }
}

/**
 * Streams one request to `dispatcher` and its response to `res`, never buffering either. Resolves
 * (never rejects) with the outcome; on an upstream failure before response headers it resolves with
 * the local reply code and reason *without* writing anything, so the caller decides (reply, retry
 * elsewhere). A failure after the headers went out destroys `res`, the only honest signal left.
 */
export function forward(dispatcher: Dispatcher, req: ForwardRequest, res: ServerResponse): Promise<ForwardOutcome> {
  return new Promise((resolve) => {
    const signal = abortOnClose(res, req);
    let bytes = 0;
    let status = 0;
    /** Decided on the response head: a retry, or a refusal of its transfer codings. */
    let early: ForwardOutcome | undefined;
    dispatcher.stream(
      requestOptions(req, signal),
      ({ statusCode, headers }) => {
        signal.headersArrived();
        if (req.retryIf?.(statusCode, headers)) {
          early = { status: statusCode, bytes: 0, retry: true, headers };
          return discard();
        }
        const codings = codingsBesidesChunked(headers['transfer-encoding']);
        early = codingRefusal(codings, statusCode, req, res);
        if (early) {
          // Not read to its end (it may be long, or endless): the upstream request is cut.
          queueMicrotask(() => signal.emit('abort'));
          return discard();
        }
        status = statusCode;
        const out = responseHeaders(headers, req);
        // Transfer codings other than chunked (`gzip, chunked`) stay with the body undici passes on
        // still coded; node:http frames it as chunked again under this header (HTTP/1.1 clients).
        if (codings !== undefined) out['transfer-encoding'] = `${codings}, chunked`;
        res.writeHead(statusCode, out);
        const length = Number(headers['content-length']);
        if (Number.isFinite(length)) bytes = length;
        return res;
      },
      (err) => {
        signal.done();
        resolve(early ?? (err ? failed(err, status, res, signal) : { status, bytes }));
      },
    );
  });
}

/** `/a/b?x=1` → path `/a/b`, query `x=1`. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}
