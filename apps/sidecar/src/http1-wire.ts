import { type IncomingHttpHeaders, METHODS } from 'node:http';

/**
 * HTTP/1.1 message heads and body framing for a proxy that moves bytes itself (the outbound fast
 * path): as strict as llhttp, Node's own parser, with the same limits — anything llhttp refuses is
 * refused here (400, or 431 for a head over 16 KiB), so a request the fast path takes is one
 * node:http would have taken, with the same `headers` object.
 */

/** Node's default `--max-http-header-size`. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A head the parser refuses: the status to answer with and why. */
export interface HeadError {
  error: 400 | 431;
  reason: string;
}

/** How the body of a message is delimited. */
export type BodyFraming = 'none' | 'length' | 'chunked' | 'close';

export interface RequestHead {
  method: string;
  url: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** The headers as node:http's `IncomingMessage.headers` has them (lower-case names, its duplicate rules). */
  headers: IncomingHttpHeaders;
  framing: 'none' | 'length' | 'chunked';
  contentLength: number;
  /** The connection stays open after this exchange (HTTP/1.1 without `close`, HTTP/1.0 with `keep-alive`). */
  keepAlive: boolean;
  /** Bytes of the head in the buffer, leading empty lines and the final CRLF CRLF included. */
  size: number;
}

export interface ResponseHead {
  status: number;
  minor: number;
  /** Header lines in order: lower-case name, value. */
  lines: [string, string][];
  framing: BodyFraming;
  contentLength: number;
  /** The upstream keeps the connection open after this response. */
  keepAlive: boolean;
  /** `Keep-Alive: timeout=N` of the upstream in ms, when it sent one. */
  keepAliveMs: number | undefined;
  /** The Connection header's value (its lines joined), when there was one: the fields it names are hop-by-hop. */
  connection: string | undefined;
  /** Transfer codings of the body besides chunked framing (`gzip` of `gzip, chunked`): they must travel with it. */
  codings: string | undefined;
  size: number;
}

const KNOWN_METHODS = new Set(METHODS);
const CRLFCRLF = Buffer.from('\r\n\r\n');

/** tchar of RFC 9110 §5.6.2. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TOKEN[c] = 1;
for (let c = 65; c <= 90; c++) TOKEN[c] = 1;
for (let c = 97; c <= 122; c++) TOKEN[c] = 1;

/** Header fields node:http keeps the first of (later duplicates are dropped). */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN[c] === 0) return false;
  }
  return true;
}

/** A field value without leading and trailing spaces and tabs; undefined when it holds a control character other than HTAB. */
function fieldValue(line: string, from: number): string | undefined {
  let start = from;
  let end = line.length;
  for (let i = from; i < end; i++) {
    const c = line.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return undefined;
  }
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return line.slice(start, end);
}

/** Adds one field to a node:http-shaped headers object. */
export function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  const dest = headers as Record<string, string | string[] | undefined>;
  const prev = dest[name];
  if (prev === undefined) {
    dest[name] = name === 'set-cookie' ? [value] : value;
    return;
  }
  if (name === 'set-cookie') (prev as string[]).push(value);
  else if (SINGLE.has(name)) return;
  else dest[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`;
}

/** RFC 9110 §7.2 / RFC 3986 §3.2.2: `host [ ":" port ]`, host an IP literal or a reg-name (IPv4 included). */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/** Why a Host header value is not one (RFC 9112 §3.2 asks for 400); undefined when it is. */
export function hostProblem(value: string): string | undefined {
  return HOST.test(value) ? undefined : `invalid Host "${value.slice(0, 64)}": it must be host[:port]`;
}

/** Whether a comma-separated header value (Connection) names `token` (case-insensitive). */
export function hasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (v === token) return true;
  for (const part of v.split(',')) if (part.trim() === token) return true;
  return false;
}

/**
 * The transfer codings of a Transfer-Encoding field (one value, or the lines of a repeated field)
 * other than `chunked` and `identity`: `gzip, chunked` → `gzip`; `chunked, chunked` → none. A proxy
 * that frames the body anew must send these on (`gzip, chunked`), or the client reads the coded
 * bytes as the content.
 */
export function codingsBesidesChunked(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const list = (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c.length > 0 && c.toLowerCase() !== 'identity' && c.toLowerCase() !== 'chunked');
  return list.length > 0 ? list.join(', ') : undefined;
}

/** The last transfer coding of a Transfer-Encoding value. */
function lastCoding(value: string): string {
  const comma = value.lastIndexOf(',');
  return (comma < 0 ? value : value.slice(comma + 1)).trim().toLowerCase();
}

function parseLength(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
  }
  return Number(value);
}

/**
 * Where the head starting at `start` ends (index after CRLF CRLF), -1 while more bytes are needed,
 * or the refusal: a bare LF or CR (llhttp refuses both), a head over {@link MAX_HEAD_BYTES}.
 */
function headEnd(buf: Buffer, start: number, what: 'request' | 'response' = 'request'): number | HeadError {
  const end = buf.indexOf(CRLFCRLF, start);
  const scanTo = end < 0 ? buf.length : end;
  if (scanTo - start > MAX_HEAD_BYTES) return { error: 431, reason: `the ${what} head is larger than 16 KiB` };
  // A bare LF or CR anywhere in the head (the CRLF CRLF search would never end on `\n\n`).
  let i = buf.indexOf(10, start);
  while (i >= 0 && i < scanTo) {
    if (i === start || buf[i - 1] !== 13) return { error: 400, reason: 'bare LF in the head' };
    i = buf.indexOf(10, i + 1);
  }
  i = buf.indexOf(13, start);
  while (i >= 0 && i < scanTo) {
    if (i + 1 < buf.length && buf[i + 1] !== 10) return { error: 400, reason: 'bare CR in the head' };
    // A line starting with a space or tab: obsolete line folding (refused at once, the head may never end otherwise).
    if (i + 2 < buf.length && (buf[i + 2] === 0x20 || buf[i + 2] === 0x09))
      return { error: 400, reason: 'obsolete line folding in a header' };
    i = buf.indexOf(13, i + 1);
  }
  return end < 0 ? -1 : end + 4;
}

/** Skips the empty lines llhttp tolerates before a request line. */
function skipEmptyLines(buf: Buffer, start: number): number {
  let i = start;
  while (i + 1 < buf.length && buf[i] === 13 && buf[i + 1] === 10) i += 2;
  return i;
}

function versionOf(v: string): number {
  if (v === 'HTTP/1.1') return 1;
  if (v === 'HTTP/1.0') return 0;
  return -1;
}

/** Checks the request target: visible ASCII only, as llhttp's URL parser in Node. */
function validTarget(url: string): boolean {
  if (url.length === 0) return false;
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

interface Fields {
  contentLength: number;
  transferEncoding: string | undefined;
}

/** Parses header lines (after the start line) into `onField`; returns an error reason or the framing fields. */
function parseFields(text: string, from: number, onField: (lower: string, value: string) => void): Fields | string {
  let contentLength = -1;
  let transferEncoding: string | undefined;
  let pos = from;
  while (pos < text.length) {
    let eol = text.indexOf('\r\n', pos);
    if (eol < 0) eol = text.length;
    const first = text.charCodeAt(pos);
    if (first === 0x20 || first === 0x09) return 'obsolete line folding in a header';
    const colon = text.indexOf(':', pos);
    if (colon < 0 || colon >= eol) return 'a header line without a colon';
    const name = text.slice(pos, colon);
    if (!isToken(name)) return `invalid header name "${name.slice(0, 64)}"`;
    const value = fieldValue(text.slice(colon + 1, eol), 0);
    if (value === undefined) return `invalid character in the value of header "${name}"`;
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      if (contentLength >= 0) return 'more than one Content-Length';
      contentLength = parseLength(value);
      if (contentLength < 0) return `invalid Content-Length "${value.slice(0, 32)}"`;
    } else if (lower === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    }
    onField(lower, value);
    pos = eol + 2;
  }
  return { contentLength, transferEncoding };
}

/**
 * The request head at `start` of `buf`: undefined while incomplete, a {@link HeadError} when llhttp
 * would refuse it (malformed start line or header, unknown method, obs-fold, bare LF/CR, both
 * Content-Length and Transfer-Encoding, more than one Content-Length, a Transfer-Encoding whose last
 * coding is not chunked, a head over 16 KiB).
 */
export function parseRequestHead(buf: Buffer, start = 0): RequestHead | HeadError | undefined {
  const from = skipEmptyLines(buf, start);
  const end = headEnd(buf, from);
  if (typeof end !== 'number') return end;
  if (end < 0) return undefined;
  const text = buf.toString('latin1', from, end - 4);
  const eol = text.indexOf('\r\n');
  const line = eol < 0 ? text : text.slice(0, eol);
  // method SP+ target SP+ version (llhttp takes several spaces between the parts, as here)
  const sp1 = line.indexOf(' ');
  let urlStart = sp1 + 1;
  while (line.charCodeAt(urlStart) === 0x20) urlStart++;
  const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', urlStart);
  if (sp1 <= 0 || sp2 < 0) return { error: 400, reason: 'malformed request line' };
  let versionStart = sp2 + 1;
  while (line.charCodeAt(versionStart) === 0x20) versionStart++;
  const method = line.slice(0, sp1);
  if (!KNOWN_METHODS.has(method)) return { error: 400, reason: `unknown method "${method.slice(0, 32)}"` };
  const url = line.slice(urlStart, sp2);
  if (!validTarget(url)) return { error: 400, reason: 'invalid request target' };
  const minor = versionOf(line.slice(versionStart));
  if (minor < 0) return { error: 400, reason: 'unsupported HTTP version' };
  const headers: IncomingHttpHeaders = {};
  let connection: string | undefined;
  let hosts = 0;
  const fields = parseFields(text, eol < 0 ? text.length : eol + 2, (name, value) => {
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (name === 'host') hosts++;
    addHeader(headers, name, value);
  });
  if (typeof fields === 'string') return { error: 400, reason: fields };
  // RFC 9112 §3.2 (node:http would keep the first and drop the others).
  if (hosts > 1) return { error: 400, reason: 'more than one Host header' };
  let framing: RequestHead['framing'] = 'none';
  if (fields.transferEncoding !== undefined) {
    if (fields.contentLength >= 0) return { error: 400, reason: 'both Content-Length and Transfer-Encoding' };
    if (lastCoding(fields.transferEncoding) !== 'chunked') return { error: 400, reason: 'Transfer-Encoding does not end with chunked' };
    framing = 'chunked';
  } else if (fields.contentLength > 0) framing = 'length';
  const keepAlive = minor === 1 ? !hasToken(connection, 'close') : hasToken(connection, 'keep-alive');
  return { method, url, minor, headers, framing, contentLength: Math.max(0, fields.contentLength), keepAlive, size: end - start };
}

/** Parses `Keep-Alive: timeout=5, max=100` → 5000. */
function keepAliveTimeout(value: string): number | undefined {
  const m = /(?:^|[,\s])timeout\s*=\s*(\d+)/i.exec(value);
  return m ? Number(m[1]) * 1000 : undefined;
}

/**
 * The response head at `start` of `buf` (undefined while incomplete, a string saying what is wrong
 * when it is malformed) and how its body is delimited: none for HEAD requests, 1xx, 204 and 304;
 * chunked; Content-Length; else until the upstream closes.
 */
export function parseResponseHead(buf: Buffer, start: number, requestMethod: string): ResponseHead | string | undefined {
  const end = headEnd(buf, start, 'response');
  if (typeof end !== 'number') return end.error === 431 ? end.reason : `${end.reason} of the response`;
  if (end < 0) return undefined;
  const text = buf.toString('latin1', start, end - 4);
  const eol = text.indexOf('\r\n');
  const line = eol < 0 ? text : text.slice(0, eol);
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (line.length < 12 || !line.startsWith('HTTP/1.') || line.charCodeAt(8) !== 0x20) return 'malformed status line';
  const minor = line.charCodeAt(7) - 48;
  const status = Number(line.slice(9, 12));
  if ((minor !== 0 && minor !== 1) || !/^[1-9]\d\d$/.test(line.slice(9, 12)) || (line.length > 12 && line.charCodeAt(12) !== 0x20))
    return 'malformed status line';
  const lines: [string, string][] = [];
  let connection: string | undefined;
  let keepAliveMs: number | undefined;
  const fields = parseFields(text, eol < 0 ? text.length : eol + 2, (name, value) => {
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (name === 'keep-alive') keepAliveMs = keepAliveTimeout(value);
    lines.push([name, value]);
  });
  if (typeof fields === 'string') return `${fields} of the response`;
  let framing: BodyFraming;
  if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304) framing = 'none';
  else if (fields.transferEncoding !== undefined) {
    if (fields.contentLength >= 0) return 'both Content-Length and Transfer-Encoding in the response';
    framing = lastCoding(fields.transferEncoding) === 'chunked' ? 'chunked' : 'close';
  } else if (fields.contentLength >= 0) framing = fields.contentLength > 0 ? 'length' : 'none';
  else framing = 'close';
  const keepAlive = framing !== 'close' && (minor === 1 ? !hasToken(connection, 'close') : hasToken(connection, 'keep-alive'));
  const codings = framing === 'chunked' || framing === 'close' ? codingsBesidesChunked(fields.transferEncoding) : undefined;
  return {
    status,
    minor,
    lines,
    framing,
    contentLength: Math.max(0, fields.contentLength),
    keepAlive,
    keepAliveMs,
    connection,
    codings,
    size: end - start,
  };
}

enum Chunk {
  SizeStart,
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Finds where a chunked body ends without changing it (its bytes are forwarded as they are):
 * chunk sizes, extensions, data, the last chunk and trailers, as strict as llhttp.
 */
export class ChunkedScanner {
  private state = Chunk.SizeStart;
  private size = 0;
  private digits = 0;
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === Chunk.Done;
  }

  /** Scans `buf[from, to)`: the index just after the body's end, or -1 when it goes on; throws on malformed framing. */
  feed(buf: Buffer, from: number, to: number = buf.length): number {
    let i = from;
    while (i < to) {
      const c = buf[i] as number;
      switch (this.state) {
        case Chunk.SizeStart:
        case Chunk.Size: {
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > 13) throw new Error('chunk size too large');
            this.size = this.size * 16 + v;
            this.state = Chunk.Size;
          } else if (this.state === Chunk.SizeStart) throw new Error('invalid chunk size');
          else if (c === 0x3b /* ; */) this.state = Chunk.Ext;
          else if (c === 13) this.state = Chunk.SizeLf;
          else throw new Error('invalid chunk size');
          i++;
          break;
        }
        case Chunk.Ext:
          if (c === 13) this.state = Chunk.SizeLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw new Error('invalid chunk extension');
          i++;
          break;
        case Chunk.SizeLf:
          if (c !== 10) throw new Error('chunk size line without LF');
          this.state = this.size === 0 ? Chunk.TrailerStart : Chunk.Data;
          i++;
          break;
        case Chunk.Data: {
          const n = Math.min(this.size, to - i);
          this.size -= n;
          i += n;
          if (this.size === 0) this.state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (c !== 13) throw new Error('chunk data longer than its size');
          this.state = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (c !== 10) throw new Error('chunk data without CRLF');
          this.state = Chunk.SizeStart;
          this.size = 0;
          this.digits = 0;
          i++;
          break;
        case Chunk.TrailerStart:
          if (c === 13) this.state = Chunk.EndLf;
          else if (c === 0x20 || c === 0x09 || c === 10 || c === 0x3a) throw new Error('invalid trailer');
          else this.state = Chunk.Trailer;
          i++;
          break;
        case Chunk.Trailer:
          if (++this.trailerBytes > MAX_HEAD_BYTES) throw new Error('trailers larger than 16 KiB');
          if (c === 13) this.state = Chunk.TrailerLf;
          else if (c === 10 || (c < 0x20 && c !== 0x09) || c === 0x7f) throw new Error('invalid character in a trailer');
          i++;
          break;
        case Chunk.TrailerLf:
          if (c !== 10) throw new Error('trailer line without LF');
          this.state = Chunk.TrailerStart;
          i++;
          break;
        case Chunk.EndLf:
          if (c !== 10) throw new Error('chunked body without final CRLF');
          this.state = Chunk.Done;
          return i + 1;
        case Chunk.Done:
          return i;
      }
    }
    return -1;
  }
}
