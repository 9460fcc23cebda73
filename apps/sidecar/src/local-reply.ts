import type { ServerResponse } from 'node:http';

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
} as const;
export type LocalReplyCode = keyof typeof LOCAL_REPLIES;

export const ERROR_HEADER = 'x-novamesh-error';
export const REASON_HEADER = 'x-novamesh-reason';

/** Header values must be one line of visible ASCII; reasons are cut to a sane length. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

/** Ends `res` with the sidecar's own answer: status of `code`, the code and reason as headers and a JSON body. */
export function sendLocalReply(res: ServerResponse, code: LocalReplyCode, reason: string, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ code, message: reason });
  res.writeHead(LOCAL_REPLIES[code], {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [ERROR_HEADER]: code,
    [REASON_HEADER]: headerSafe(reason),
    ...extraHeaders,
  });
  res.end(body);
}
