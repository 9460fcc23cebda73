import type { HashKey } from '@novamesh/contracts';

/**
 * What the per-request decisions read of a request. Built once per request by the sidecar (no
 * copies of node:http's objects needed); every function here only reads it.
 */
export interface RequestView {
  method: string;
  /** The path without the query string. */
  path: string;
  /** The raw query string, without the leading '?' ('' when there is none). */
  query: string;
  /** Lower-case header names, as node:http gives them. */
  headers: Record<string, string | string[] | undefined>;
  sourceIp?: string;
  /** The caller's SPIFFE ID when it presented a client certificate (mTLS); absent for plaintext. */
  principal?: string;
  /** The local port the request arrived on (inbound side). */
  port?: number;
}

/** A header's value; repeated headers are joined by ', ' as RFC 9110 §5.3 allows. `name` must be lower-case. */
export function headerValue(headers: RequestView['headers'], name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' || v === undefined ? v : v.join(', ');
}

/** Percent-decodes a query component ('+' is a space, as in forms); a malformed escape leaves the text as it is. */
function decodeComponent(s: string): string {
  if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
  const spaced = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/** Calls `visit` with each decoded parameter of a raw query string, in order, until it returns true. */
function scanQuery(query: string, visit: (name: string, value: string) => boolean): void {
  let i = 0;
  const n = query.length;
  while (i < n) {
    let end = query.indexOf('&', i);
    if (end < 0) end = n;
    if (end > i) {
      const eq = query.indexOf('=', i);
      const hasValue = eq >= 0 && eq < end;
      const name = decodeComponent(query.slice(i, hasValue ? eq : end));
      if (visit(name, hasValue ? decodeComponent(query.slice(eq + 1, end)) : '')) return;
    }
    i = end + 1;
  }
}

/** The decoded parameters of a raw query string; the first value of a repeated parameter wins. */
export function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  scanQuery(query, (name, value) => {
    if (!params.has(name)) params.set(name, value);
    return false;
  });
  return params;
}

/** The first decoded value of one query parameter ('' when it has no '='), without parsing the rest. */
export function queryParam(query: string, name: string): string | undefined {
  let found: string | undefined;
  scanQuery(query, (n, v) => {
    if (n !== name) return false;
    found = v;
    return true;
  });
  return found;
}

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), without surrounding quotes. */
export function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (!cookieHeader) return undefined;
  const n = cookieHeader.length;
  let i = 0;
  while (i < n) {
    while (i < n && (cookieHeader.charCodeAt(i) === 32 || cookieHeader.charCodeAt(i) === 9)) i++;
    let end = cookieHeader.indexOf(';', i);
    if (end < 0) end = n;
    if (cookieHeader.charCodeAt(i + name.length) === 61 /* = */ && cookieHeader.startsWith(name, i) && i + name.length < end) {
      const raw = cookieHeader.slice(i + name.length + 1, end).trim();
      return raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
    }
    i = end + 1;
  }
  return undefined;
}

/** Reads the text consistent hashing hashes from a request; undefined when the request lacks it. */
export type HashKeyReader = (req: RequestView) => string | undefined;

/**
 * Compiles a hash key (a header, a cookie, a query parameter or the source IP) into a reader,
 * once per snapshot. Requests without the key get undefined (balancers then pick at random).
 */
export function compileHashKey(hashKey: HashKey): HashKeyReader {
  if (hashKey.header !== undefined) {
    const name = hashKey.header.toLowerCase();
    return (req) => headerValue(req.headers, name);
  }
  if (hashKey.cookie !== undefined) {
    const name = hashKey.cookie;
    return (req) => cookieValue(headerValue(req.headers, 'cookie'), name);
  }
  if (hashKey.queryParameter !== undefined) {
    const name = hashKey.queryParameter;
    return (req) => (req.query ? queryParam(req.query, name) : undefined);
  }
  if (hashKey.sourceIp) return (req) => req.sourceIp;
  return () => undefined;
}

/** One-off form of {@link compileHashKey}; per-request code should compile the key once instead. */
export function hashKeyValue(hashKey: HashKey, req: RequestView): string | undefined {
  return compileHashKey(hashKey)(req);
}
