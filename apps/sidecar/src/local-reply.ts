import { STATUS_CODES } from 'node:http';
import type { DownstreamRequest, DownstreamResponse } from './forward';

/**
 * Every response the sidecar makes itself instead of the upstream, with a stable code (the
 * `x-novamesh-error` header, the body's `code`, and the access log's `error`) so that nobody has to
 * guess what an opaque 503 meant. Envoy's response flags in parentheses.
 */
export const LOCAL_REPLIES = {
  /** The host named no service of the mesh this sidecar knows (NR). */
  NO_ROUTE: 404,
  /** The upstream has no healthy, non-ejected endpoint (UH). */
  NO_HEALTHY_UPSTREAM: 503,
  /** Connecting to the chosen endpoint failed (UF). */
  UPSTREAM_CONNECT_FAILURE: 503,
  /** The TLS handshake with the upstream failed or it presented the wrong identity. */
  UPSTREAM_TLS_FAILURE: 503,
  /** The upstream closed the connection before a complete response (UR). */
  UPSTREAM_RESET: 502,
  /** No response from the upstream in time (UT). */
  UPSTREAM_TIMEOUT: 504,
  /** A circuit breaker limit of the upstream (maxRequests, maxPendingRequests) was reached (UO). */
  UPSTREAM_OVERFLOW: 503,
  /** An authorization policy refused the request (RBAC). */
  RBAC_DENIED: 403,
  /** Plaintext request to a service whose mTLS mode is strict. */
  MTLS_REQUIRED: 403,
  /** The sidecar has no configuration yet (NC). */
  NO_SNAPSHOT: 503,
  /** The local workload did not accept the connection. */
  APP_UNAVAILABLE: 503,
  /** The request cannot be proxied (no Host, bad URL). */
  BAD_REQUEST: 400,
  /** A RateLimitPolicy limit refused the request (RL); the policy's `response.status` replaces 429 when set. */
  RATE_LIMITED: 429,
  /** The sidecar already handles SIDECAR_MAX_IN_FLIGHT requests (load shedding, as Envoy's overload manager). */
  OVERLOADED: 503,
  /**
   * A transfer coding besides chunked (`gzip, chunked`) that cannot be passed on: the upstream's
   * answer to a client that cannot be sent one (HTTP/1.0, HTTP/2); with 501 for a request's own,
   * which the node:http path would strip (as Envoy refuses them).
   */
  UNSUPPORTED_TRANSFER_CODING: 502,
  /** A route's fault injection aborted the request (FI); it answers with the fault's `httpStatus`, 503 is only the fallback. */
  FAULT_INJECTED: 503,
} as const;
export type LocalReplyCode = keyof typeof LOCAL_REPLIES;

export const ERROR_HEADER = 'x-novamesh-error';
export const REASON_HEADER = 'x-novamesh-reason';
/** The response header marking a fault a route injected: `abort` or `delay`. */
export const FAULT_HEADER = 'x-novamesh-fault';

/** Header values must be one line of visible ASCII; reasons are cut to a sane length. */
export function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

/**
 * The gRPC status gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md, as Envoy's
 * `httpToGrpcStatus`) gives an HTTP status a gRPC caller cannot see itself.
 */
export function grpcStatusOfHttp(http: number): number {
  switch (http) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/**
 * gRPC status of a local reply, as gRPC's HTTP-to-status mapping (and Envoy) do it, except that a
 * rate-limited request (429, or the policy's own status) is RESOURCE_EXHAUSTED, not UNAVAILABLE (Envoy's
 * `rate_limited_as_resource_exhausted`): clients must not treat it as an outage and retry at once.
 */
export function grpcStatusOf(http: number, code?: LocalReplyCode): number {
  if (code === 'RATE_LIMITED' || http === 429) return 8; // RESOURCE_EXHAUSTED
  return grpcStatusOfHttp(http);
}

/** Whether the request is a gRPC call (content-type application/grpc, +proto, +json…). */
export function isGrpc(req: DownstreamRequest): boolean {
  const contentType = req.headers['content-type'];
  return typeof contentType === 'string' && contentType.startsWith('application/grpc');
}

/**
 * `grpc-message` as the gRPC protocol wants it: UTF-8 bytes outside printable ASCII, and `%`,
 * percent-encoded; everything else as is. (encodeURIComponent would also encode `/`, `:`, `,`…,
 * which clients decode with decodeURI and so show escaped.)
 */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8'))
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/**
 * Ends `res` with a trailers-only gRPC response: HTTP 200 and one HEADERS frame carrying
 * `grpc-status` and `grpc-message` (percent-encoded) that ends the stream — on HTTP/2 anything else
 * leaves clients without a status.
 */
export function sendGrpcStatus(
  req: DownstreamRequest,
  res: DownstreamResponse,
  grpcStatus: number,
  message: string,
  headers: Record<string, string>,
): void {
  const all = {
    'content-type': req.headers['content-type'] as string,
    'grpc-status': String(grpcStatus),
    'grpc-message': encodeGrpcMessage(message),
    ...headers,
  };
  if ('stream' in res) res.stream.respond({ ':status': 200, ...all }, { endStream: true });
  else {
    res.writeHead(200, all);
    res.end();
  }
}

/**
 * Ends `res` with the sidecar's own answer: status of `code`, the code and reason as headers and a
 * JSON body. A gRPC caller (content-type application/grpc…) gets a trailers-only gRPC response
 * instead (HTTP 200, `grpc-status` mapped from the HTTP status, `grpc-message` = the reason), so
 * its client library reports the real cause rather than a protocol error. `status` replaces the
 * code's status (a RateLimitPolicy's `response.status`).
 */
export function sendLocalReply(
  req: DownstreamRequest,
  res: DownstreamResponse,
  code: LocalReplyCode,
  reason: string,
  extraHeaders?: Record<string, string>,
  status: number = LOCAL_REPLIES[code],
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (isGrpc(req)) {
    sendGrpcStatus(req, res, grpcStatusOf(status, code), reason, {
      [ERROR_HEADER]: code,
      [REASON_HEADER]: headerSafe(reason),
      ...extraHeaders,
    });
    return;
  }
  const body = JSON.stringify({ code, message: reason });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [ERROR_HEADER]: code,
    [REASON_HEADER]: headerSafe(reason),
    ...extraHeaders,
  });
  res.end(body);
}

// ---- local replies as raw HTTP/1.1 bytes (the fast path, and node:http's parse errors) ----

let dateCache = '';
let dateSecond = 0;
/** The Date header value, as node:http caches it (once a second). */
export function utcDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateCache = new Date(now).toUTCString();
  }
  return dateCache;
}

/** Writes one header field (values that are lists become several lines, as node:http does). */
export function headerLines(name: string, value: string | string[] | number | undefined): string {
  if (value === undefined) return '';
  if (Array.isArray(value)) {
    let out = '';
    for (const v of value) out += `${name}: ${v}\r\n`;
    return out;
  }
  return `${name}: ${value}\r\n`;
}

/** The bytes of a local reply, as sendLocalReply makes node:http write it; `connection`: the Connection lines (keep-alive or close). */
export function localReplyBytes(
  status: number,
  code: LocalReplyCode,
  reason: string,
  connection: string,
  head: boolean,
  fault?: 'delay' | undefined,
  extraHeaders?: Record<string, string> | undefined,
): Buffer {
  let lines = `${ERROR_HEADER}: ${code}\r\n${REASON_HEADER}: ${headerSafe(reason)}\r\n${fault ? `${FAULT_HEADER}: ${fault}\r\n` : ''}`;
  if (extraHeaders) for (const name in extraHeaders) lines += headerLines(name, extraHeaders[name]);
  return jsonReplyBytes(status, JSON.stringify({ code, message: reason }), lines, connection, head);
}

/** A JSON response as node:http writes `writeHead(status, {content-type, content-length, ...lines})` and `end(body)`. */
export function jsonReplyBytes(status: number, body: string, lines: string, connection: string, head: boolean): Buffer {
  const bodyBytes = Buffer.byteLength(body);
  const text =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\ncontent-type: application/json\r\ncontent-length: ${bodyBytes}\r\n` +
    `${lines}Date: ${utcDate()}\r\n${connection}\r\n`;
  if (head) return Buffer.from(text, 'latin1');
  const out = Buffer.allocUnsafe(Buffer.byteLength(text, 'latin1') + bodyBytes);
  const n = out.write(text, 'latin1');
  out.write(body, n, 'utf8');
  return out;
}
