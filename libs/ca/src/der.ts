/**
 * A minimal DER reader and writer for the signing hot path. @peculiar/x509 (asn1js underneath) builds
 * an object tree for every element and costs milliseconds per certificate; this reads elements in
 * place (offsets into the caller's buffer, nothing copied) and writes them with Buffer.concat.
 * Only the low tag-number form (tags 0–30) and definite lengths up to 2^32−1 are supported, which is
 * everything X.509 and PKCS#10 use. Malformed input throws {@link DerError}.
 */

export class DerError extends Error {
  override name = 'DerError';
}

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** The tag of `[n]` in a context-specific class: primitive (implicit over a primitive type) or constructed. */
export const contextTag = (n: number, constructed: boolean): number => (constructed ? 0xa0 : 0x80) | n;

// --- reading -----------------------------------------------------------------------------------

/** One element of a DER buffer, as offsets: identifier at `start`, content `[contentStart, end)`. */
export interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** The element starting at `offset`, which must end by `limit`. */
export function readTlv(buf: Uint8Array, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated element at ${offset}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`high tag number at ${offset} is not supported`);
  let pos = offset + 1;
  let length = buf[pos++]!;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) throw new DerError(`indefinite length at ${offset} is not DER`);
    if (n > 4) throw new DerError(`length of ${n} bytes at ${offset} is too long`);
    if (pos + n > limit) throw new DerError(`truncated length at ${offset}`);
    if (buf[pos] === 0) throw new DerError(`length at ${offset} is not minimally encoded`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos++]!;
    if (length < 0x80) throw new DerError(`length at ${offset} is not minimally encoded`);
  }
  const end = pos + length;
  if (end > limit) throw new DerError(`element at ${offset} runs past its container (${end} > ${limit})`);
  return { tag, start: offset, contentStart: pos, end };
}

/** The single element that is the whole of `buf` (trailing bytes are an error), optionally of `tag`. */
export function readTop(buf: Uint8Array, tag?: number): Tlv {
  const tlv = readTlv(buf, 0, buf.length);
  if (tlv.end !== buf.length) throw new DerError(`${buf.length - tlv.end} bytes after the element`);
  if (tag !== undefined) expectTag(tlv, tag);
  return tlv;
}

/** The elements that exactly fill the content of the constructed element `parent`. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  if (!(parent.tag & 0x20)) throw new DerError(`element at ${parent.start} is primitive, not constructed`);
  const out: Tlv[] = [];
  for (let pos = parent.contentStart; pos < parent.end; ) {
    const child = readTlv(buf, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

export function expectTag(tlv: Tlv | undefined, tag: number): Tlv {
  if (!tlv) throw new DerError(`missing element (expected tag 0x${tag.toString(16)})`);
  if (tlv.tag !== tag) throw new DerError(`tag 0x${tlv.tag.toString(16)} at ${tlv.start}, expected 0x${tag.toString(16)}`);
  return tlv;
}

/** The element's content bytes (a view, not a copy). */
export function contentOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.contentStart, tlv.end);
}

/** The element's whole encoding, identifier and length included (a view, not a copy). */
export function rawOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/** The dotted form of an OBJECT IDENTIFIER element. */
export function readOid(buf: Uint8Array, tlv: Tlv): string {
  expectTag(tlv, TAG.oid);
  if (tlv.end === tlv.contentStart) throw new DerError(`empty OBJECT IDENTIFIER at ${tlv.start}`);
  const arcs: number[] = [];
  let value = 0;
  for (let i = tlv.contentStart; i < tlv.end; i++) {
    const b = buf[i]!;
    if (value === 0 && b === 0x80) throw new DerError(`OBJECT IDENTIFIER at ${tlv.start} is not minimally encoded`);
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new DerError(`OBJECT IDENTIFIER arc at ${tlv.start} is too large`);
    if (!(b & 0x80)) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  if (buf[tlv.end - 1]! & 0x80) throw new DerError(`OBJECT IDENTIFIER at ${tlv.start} is truncated`);
  return arcs.join('.');
}

/** The content of a BIT STRING with no unused bits (keys and signatures). */
export function readBitStringBytes(buf: Buffer, tlv: Tlv): Buffer {
  expectTag(tlv, TAG.bitString);
  if (tlv.end === tlv.contentStart || buf[tlv.contentStart] !== 0) throw new DerError(`BIT STRING at ${tlv.start} is not whole bytes`);
  return buf.subarray(tlv.contentStart + 1, tlv.end);
}

/** A UTCTime (years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as epoch ms. */
export function readTime(buf: Buffer, tlv: Tlv): number {
  const text = buf.toString('latin1', tlv.contentStart, tlv.end);
  const utc = tlv.tag === TAG.utcTime;
  const m = (utc ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/ : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/).exec(text);
  if (!m || (!utc && tlv.tag !== TAG.generalizedTime)) throw new DerError(`not a DER time at ${tlv.start}: ${JSON.stringify(text)}`);
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const year = !utc ? y : y < 50 ? 2000 + y : 1900 + y;
  const date = new Date(Date.UTC(2000, 0, 1, h, mi, s));
  date.setUTCFullYear(year, mo - 1, d); // Date.UTC would read years 0–99 as 1900–1999
  return date.getTime();
}

// --- writing -----------------------------------------------------------------------------------

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return [0x80 | out.length, ...out];
}

/** An element with identifier `tag` and the concatenation of `parts` as content. */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Buffer {
  let length = 0;
  for (const p of parts) length += p.length;
  const header = lengthBytes(length);
  const out = Buffer.allocUnsafe(1 + header.length + length);
  out[0] = tag;
  let pos = 1;
  for (const b of header) out[pos++] = b;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export const sequence = (...parts: readonly Uint8Array[]): Buffer => tlv(TAG.sequence, ...parts);
export const set = (...parts: readonly Uint8Array[]): Buffer => tlv(TAG.set, ...parts);
/** `[n] EXPLICIT`: a constructed context tag around whole elements. */
export const explicit = (n: number, ...parts: readonly Uint8Array[]): Buffer => tlv(contextTag(n, true), ...parts);
/** `[n] IMPLICIT` over a primitive type: `content` is the content of the type it replaces. */
export const implicit = (n: number, content: Uint8Array): Buffer => tlv(contextTag(n, false), content);

/** A non-negative INTEGER from big-endian magnitude bytes (leading zeros dropped, a 0x00 added when the top bit is set). */
export function integer(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const bytes = magnitude.subarray(i);
  if (bytes.length === 0) return tlv(TAG.integer, Uint8Array.of(0));
  return bytes[0]! & 0x80 ? tlv(TAG.integer, Uint8Array.of(0), bytes) : tlv(TAG.integer, bytes);
}

/** A small non-negative INTEGER. */
export function smallInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative safe integer: ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return integer(Uint8Array.from(bytes));
}

const oids = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER from its dotted form; encodings are cached (treat the result as read-only). */
export function oid(dotted: string): Buffer {
  const hit = oids.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split('.').map((a) => (/^(0|[1-9]\d*)$/.test(a) ? Number(a) : Number.NaN));
  const [first, second] = arcs;
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a)) || first! > 2 || (first! < 2 && second! > 39))
    throw new RangeError(`not an object identifier: ${dotted}`);
  const bytes: number[] = [];
  for (const arc of [first! * 40 + second!, ...arcs.slice(2)]) {
    const group = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) group.unshift(0x80 | (v & 0x7f));
    bytes.push(...group);
  }
  const out = tlv(TAG.oid, Uint8Array.from(bytes));
  oids.set(dotted, out);
  return out;
}

export const boolean = (value: boolean): Buffer => tlv(TAG.boolean, Uint8Array.of(value ? 0xff : 0));
export const NULL: Buffer = tlv(TAG.null);
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.octetString, bytes);
export const utf8String = (text: string): Buffer => tlv(TAG.utf8String, Buffer.from(text, 'utf8'));

/** IA5String, or `[n] IMPLICIT IA5String` (GeneralName forms) when `context` is given. Non-ASCII text is refused. */
export function ia5String(text: string, context?: number): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: IA5 is exactly the 7-bit range
  if (!/^[\x00-\x7f]*$/.test(text)) throw new RangeError(`not IA5 (ASCII) text: ${JSON.stringify(text)}`);
  return tlv(context === undefined ? TAG.ia5String : contextTag(context, false), Buffer.from(text, 'latin1'));
}

/** A BIT STRING of whole bytes, or with `unusedBits` (0–7) low bits of the last byte unused. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!(unusedBits >= 0 && unusedBits <= 7) || (unusedBits && !bytes.length)) throw new RangeError(`bad unused bit count ${unusedBits}`);
  return tlv(TAG.bitString, Uint8Array.of(unusedBits), bytes);
}

/** A named-bit BIT STRING (e.g. KeyUsage) with bits `0…` set, trailing zero bits dropped as DER requires. */
export function namedBits(bits: readonly number[]): Buffer {
  if (!bits.length) return bitString(new Uint8Array(0));
  const top = Math.max(...bits);
  const bytes = new Uint8Array((top >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return bitString(bytes, 7 - (top & 7));
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds (milliseconds are dropped). */
export function time(ms: number): Buffer {
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  if (!Number.isFinite(ms) || year < 0 || year > 9999) throw new RangeError(`time out of range: ${ms}`);
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year < 2050) return tlv(TAG.utcTime, Buffer.from(`${pad(year % 100)}${rest}`, 'latin1'));
  return tlv(TAG.generalizedTime, Buffer.from(`${pad(year, 4)}${rest}`, 'latin1'));
}
