// A minimal HTTP/1.1 client for the open-loop load generator: one preformatted GET sent over a
// bounded set of keep-alive connections (plain TCP, TCP_NODELAY), at most one request per
// connection at a time; a request finding every connection busy waits in order. Responses are
// framed by Content-Length or chunked transfer encoding (a response framed by neither, or any byte
// the client did not ask for, fails that connection). It exists because a general client's
// per-request objects cost the generator tens of microseconds of CPU per request, on the same
// cores as the proxies it measures.
import { connect } from 'node:net';

const MAX_HEAD = 64 * 1024;
const HEAD = 0;
const LENGTH = 1;
const CHUNK_SIZE = 2;
const CHUNK_DATA = 3;
const TRAILERS = 4;
const CRLF = Buffer.from('\r\n');

export class RawClient {
  /**
   * @param {{ url: string, host?: string, path?: string, connections: number, timeoutMs?: number }} opts
   * `url` is `http://host:port`; `host` the Host header (default: the URL's); `timeoutMs` how long a
   * connection may stay silent while a request is waiting for its answer.
   */
  constructor({ url, host, path = '/', connections, timeoutMs = 30_000 }) {
    const u = new URL(url);
    if (u.protocol !== 'http:') throw new Error(`the raw client speaks plain http only, not ${u.protocol} (${url})`);
    if (!Number.isInteger(connections) || connections < 1) throw new Error(`connections must be a positive integer, not ${connections}`);
    this.port = Number(u.port || 80);
    this.hostname = u.hostname;
    this.request = Buffer.from(`GET ${path} HTTP/1.1\r\nhost: ${host ?? u.host}\r\n\r\n`, 'latin1');
    this.max = connections;
    this.timeoutMs = timeoutMs;
    this.idle = [];
    this.conns = new Set();
    this.waiting = [];
  }

  /** Sends one GET; `done(err, status)` runs when its response is complete (or it failed). */
  get(done) {
    const idle = this.idle.pop();
    if (idle) return idle.send(done);
    if (this.conns.size < this.max) return this.open().send(done);
    this.waiting.push(done);
  }

  open() {
    const c = new Conn(this);
    this.conns.add(c);
    return c;
  }

  /** A connection finished its exchange cleanly: the next waiting request, or idle. */
  release(conn) {
    const next = this.waiting.shift();
    if (next) conn.send(next);
    else this.idle.push(conn);
  }

  /** A connection is gone: a waiting request gets a new one. */
  lost(conn) {
    this.conns.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.waiting.length && this.conns.size < this.max) this.open().send(this.waiting.shift());
  }

  close() {
    for (const c of [...this.conns]) c.fail(new Error('client closed'));
    for (const done of this.waiting.splice(0)) done(new Error('client closed'));
  }
}

class Conn {
  constructor(client) {
    this.client = client;
    this.done = undefined;
    this.dead = false;
    this.buf = undefined;
    const s = connect({ port: client.port, host: client.hostname, noDelay: true });
    this.socket = s;
    s.setTimeout(client.timeoutMs);
    s.on('data', (chunk) => this.onData(chunk));
    s.on('error', (err) => this.fail(err));
    s.on('close', () => this.fail(new Error('the connection closed before the response was complete')));
    s.on('timeout', () => this.fail(new Error(`no answer for ${client.timeoutMs} ms`)));
  }

  send(done) {
    this.done = done;
    this.state = HEAD;
    this.buf = undefined;
    this.socket.write(this.client.request);
  }

  onData(chunk) {
    if (this.done === undefined) return this.fail(new Error('bytes arrived without a request'));
    this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      this.parse();
    } catch (err) {
      this.fail(err);
    }
  }

  parse() {
    for (;;) {
      const buf = this.buf;
      if (buf === undefined || (buf.length === 0 && this.state !== LENGTH)) return;
      if (this.state === HEAD) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > MAX_HEAD) throw new Error(`a response head longer than ${MAX_HEAD} bytes`);
          return;
        }
        this.head(buf.toString('latin1', 0, end));
        this.buf = buf.subarray(end + 4);
      } else if (this.state === LENGTH) {
        const take = Math.min(this.remaining, buf.length);
        this.remaining -= take;
        this.buf = buf.subarray(take);
        if (this.remaining > 0) return;
        return this.complete();
      } else if (this.state === CHUNK_SIZE) {
        const eol = buf.indexOf(CRLF);
        if (eol < 0) return;
        const size = Number.parseInt(buf.toString('latin1', 0, eol).split(';')[0], 16);
        if (!Number.isFinite(size) || size < 0) throw new Error('a malformed chunk size line');
        this.buf = buf.subarray(eol + 2);
        if (size === 0) this.state = TRAILERS;
        else {
          this.state = CHUNK_DATA;
          this.remaining = size + 2; // the data and its CRLF
        }
      } else if (this.state === CHUNK_DATA) {
        const take = Math.min(this.remaining, buf.length);
        this.remaining -= take;
        this.buf = buf.subarray(take);
        if (this.remaining === 0) this.state = CHUNK_SIZE;
      } else {
        // Trailer lines until an empty one.
        const eol = buf.indexOf(CRLF);
        if (eol < 0) return;
        this.buf = buf.subarray(eol + 2);
        if (eol === 0) return this.complete();
      }
    }
  }

  head(text) {
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    if (!m) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify(text.slice(0, 40))}`);
    this.status = Number(m[1]);
    let length;
    let chunked = false;
    this.closeAfter = text.startsWith('HTTP/1.0');
    for (const line of text.split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line
        .slice(colon + 1)
        .trim()
        .toLowerCase();
      if (name === 'content-length') length = Number(value);
      else if (name === 'transfer-encoding') chunked = value.split(',').pop().trim() === 'chunked';
      else if (name === 'connection') this.closeAfter = value.split(',').some((v) => v.trim() === 'close');
    }
    if (chunked) this.state = CHUNK_SIZE;
    else if (this.status === 204 || this.status === 304 || length === 0) {
      this.state = LENGTH;
      this.remaining = 0;
    } else if (Number.isSafeInteger(length) && length > 0) {
      this.state = LENGTH;
      this.remaining = length;
    } else throw new Error(`a ${this.status} response framed by neither Content-Length nor chunked encoding`);
  }

  complete() {
    if (this.buf.length) throw new Error(`${this.buf.length} bytes after the response`);
    const done = this.done;
    this.done = undefined;
    this.buf = undefined;
    if (this.closeAfter) {
      this.dead = true;
      this.socket.end();
      this.client.lost(this);
    } else this.client.release(this);
    done(undefined, this.status);
  }

  fail(err) {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    const done = this.done;
    this.done = undefined;
    this.client.lost(this);
    done?.(err);
  }
}
