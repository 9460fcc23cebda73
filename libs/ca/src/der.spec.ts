import { generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, BasicConstraints, Certificate, GeneralNames, KeyUsage, Name, Time } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bitString,
  boolean,
  children,
  contentOf,
  DerError,
  explicit,
  ia5String,
  implicit,
  integer,
  NULL,
  namedBits,
  octetString,
  oid,
  rawOf,
  readBitStringBytes,
  readOid,
  readTime,
  readTlv,
  readTop,
  sequence,
  set,
  smallInteger,
  TAG,
  type Tlv,
  time,
  tlv,
  utf8String,
} from './der';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => Buffer.from(h.replace(/\s/g, ''), 'hex');

describe('DER lengths', () => {
  it.each([
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8180'],
    [255, '81ff'],
    [256, '820100'],
    [65535, '82ffff'],
    [65536, '83010000'],
  ])('%i content bytes: length %s, read back in place, parsed by asn1-schema', (n, header) => {
    const content = Buffer.alloc(n, 0xab);
    const der = octetString(content);
    expect(hex(der.subarray(1, 1 + header.length / 2))).toBe(header);
    expect(der.length).toBe(1 + header.length / 2 + n);
    const t = readTop(der, TAG.octetString);
    expect(t).toEqual({ tag: TAG.octetString, start: 0, contentStart: 1 + header.length / 2, end: der.length });
    expect(contentOf(der, t).equals(content)).toBe(true);
    expect(contentOf(der, t).buffer).toBe(der.buffer); // a view, not a copy
    expect(Buffer.from(AsnConvert.parse(der, OctetString).buffer).equals(content)).toBe(true);
  });

  it('nests elements whose lengths cross the short/long boundary', () => {
    for (const n of [125, 126, 127, 128, 253, 254, 255, 256, 65533, 65534, 65535, 65536]) {
      const der = sequence(octetString(Buffer.alloc(n)), NULL);
      const [a, b] = children(der, readTop(der, TAG.sequence));
      expect(contentOf(der, a!).length).toBe(n);
      expect(b).toMatchObject({ tag: TAG.null, end: der.length });
    }
  });
});

describe('DER reader refuses what is not DER', () => {
  it.each([
    ['empty', ''],
    ['a lone tag', '30'],
    ['content past the end', '3004020101'],
    ['a length past the end', '308201'],
    ['indefinite length', '3080020101 0000'],
    ['a non-minimal long length', `04817f${'00'.repeat(127)}`],
    ['a length with a leading zero byte', '0482008000'],
    ['a five-byte length', '04850000000001'],
    ['a high tag number', '1f2200'],
    ['trailing bytes', '05000500'],
  ])('%s', (_what, h) => {
    expect(() => readTop(bytes(h))).toThrow(DerError);
  });

  it('children that overrun their parent, of a primitive, and wrong tags', () => {
    const der = bytes('3003 0402 0000');
    expect(() => children(der, readTlv(der, 0, der.length))).toThrow(DerError);
    const prim = octetString(Buffer.from('x'));
    expect(() => children(prim, readTop(prim))).toThrow(/primitive/);
    expect(() => readTop(prim, TAG.sequence)).toThrow(/expected 0x30/);
    expect(() => readOid(prim, readTop(prim))).toThrow(DerError);
    expect(() => readOid(bytes('0602 2a86'), readTop(bytes('0602 2a86')))).toThrow(/truncated/);
    expect(() => readOid(bytes('0602 8001'), readTop(bytes('0602 8001')))).toThrow(/minimally/);
    expect(() => readBitStringBytes(bitString(Buffer.of(0x80), 7), readTop(bitString(Buffer.of(0x80), 7)))).toThrow(/whole bytes/);
  });
});

describe('DER OBJECT IDENTIFIER', () => {
  it.each([
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['1.2.840.113549.1.1.11', '06092a864886f70d01010b'],
    ['2.5.29.17', '0603551d11'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['2.999.3', '0603883703'],
    ['0.39', '060127'],
  ])('%s encodes as %s and reads back', (dotted, h) => {
    expect(hex(oid(dotted))).toBe(h);
    expect(readOid(oid(dotted), readTop(oid(dotted)))).toBe(dotted);
    expect(AsnConvert.parse(sequence(oid(dotted)), AlgorithmIdentifier).algorithm).toBe(dotted);
  });

  it('caches encodings and refuses malformed dotted forms', () => {
    expect(oid('1.2.840.10045.2.1')).toBe(oid('1.2.840.10045.2.1'));
    for (const bad of ['', '1', '3.1', '1.40', '1.2.x', '1..2', '1.02', '-1.2']) expect(() => oid(bad), bad).toThrow(RangeError);
  });

  it('round-trips arbitrary arcs', () => {
    const arc = fc.integer({ min: 0, max: 2 ** 40 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(arc, { maxLength: 8 }), (a, b, rest) => {
        const dotted = [a, b, ...rest].join('.');
        expect(readOid(oid(dotted), readTop(oid(dotted)))).toBe(dotted);
      }),
    );
  });
});

describe('DER primitives', () => {
  it('INTEGER from magnitude bytes: minimal, positive', () => {
    expect(hex(integer(Buffer.of()))).toBe('020100');
    expect(hex(integer(Buffer.of(0, 0, 0)))).toBe('020100');
    expect(hex(integer(Buffer.of(0x7f)))).toBe('02017f');
    expect(hex(integer(Buffer.of(0x80)))).toBe('02020080');
    expect(hex(integer(Buffer.of(0, 0, 0x12, 0x34)))).toBe('02021234');
    expect(hex(smallInteger(0))).toBe('020100');
    expect(hex(smallInteger(2))).toBe('020102');
    expect(hex(smallInteger(256))).toBe('02020100');
    expect(() => smallInteger(-1)).toThrow(RangeError);
    const bc = AsnConvert.parse(sequence(boolean(true), smallInteger(65535)), BasicConstraints);
    expect(bc).toMatchObject({ cA: true, pathLenConstraint: 65535 });
  });

  it('BOOLEAN, NULL, BIT STRING, named bits', () => {
    expect(hex(boolean(true))).toBe('0101ff');
    expect(hex(boolean(false))).toBe('010100');
    expect(hex(NULL)).toBe('0500');
    expect(hex(bitString(Buffer.of(1, 2)))).toBe('0303000102');
    expect(hex(namedBits([0]))).toBe('03020780');
    expect(hex(namedBits([0, 2]))).toBe('030205a0');
    expect(hex(namedBits([5, 6]))).toBe('03020106');
    expect(hex(namedBits([8]))).toBe('0303070080');
    expect(hex(namedBits([]))).toBe('030100');
    expect(AsnConvert.parse(namedBits([0, 2]), KeyUsage).toNumber()).toBe(0b101);
    expect(AsnConvert.parse(namedBits([5, 6]), KeyUsage).toNumber()).toBe(0b1100000);
    expect(() => bitString(Buffer.of(), 1)).toThrow(RangeError);
    const b = bitString(Buffer.of(9, 8));
    expect(hex(readBitStringBytes(b, readTop(b)))).toBe('0908');
  });

  it('strings, SET, SEQUENCE and context tags, as asn1-x509 reads them', () => {
    const name = sequence(
      set(sequence(oid('2.5.4.10'), utf8String('novamesh.local'))),
      set(sequence(oid('2.5.4.3'), utf8String('Zürich ✓'))),
    );
    const parsed = AsnConvert.parse(name, Name);
    expect(parsed.map((rdn) => rdn[0]!.value.utf8String)).toEqual(['novamesh.local', 'Zürich ✓']);
    expect(parsed.map((rdn) => rdn[0]!.type)).toEqual(['2.5.4.10', '2.5.4.3']);

    const names = AsnConvert.parse(
      sequence(ia5String('spiffe://td/ns/a/svc/b', 6), ia5String('b.a', 2), ia5String('x@y', 1)),
      GeneralNames,
    );
    expect(names.map((n) => n.uniformResourceIdentifier ?? n.dNSName ?? n.rfc822Name)).toEqual(['spiffe://td/ns/a/svc/b', 'b.a', 'x@y']);
    expect(hex(ia5String('a'))).toBe('160161');
    expect(() => ia5String('é')).toThrow(RangeError);

    expect(hex(explicit(3, NULL))).toBe('a3020500');
    expect(hex(implicit(0, Buffer.of(1, 2)))).toBe('80020102');
    expect(hex(tlv(0x04))).toBe('0400');
  });
});

describe('DER times', () => {
  const at = (iso: string) => Date.parse(iso);
  it.each([
    ['1950-01-01T00:00:00Z', TAG.utcTime, '500101000000Z'],
    ['1999-12-31T23:59:59Z', TAG.utcTime, '991231235959Z'],
    ['2049-12-31T23:59:59Z', TAG.utcTime, '491231235959Z'],
    ['2050-01-01T00:00:00Z', TAG.generalizedTime, '20500101000000Z'],
    ['1949-12-31T23:59:59Z', TAG.generalizedTime, '19491231235959Z'],
    ['9999-12-31T23:59:59Z', TAG.generalizedTime, '99991231235959Z'],
    ['0050-06-01T00:00:00Z', TAG.generalizedTime, '00500601000000Z'],
  ])('%s is %s %s and reads back', (iso, tag, text) => {
    const der = time(at(iso));
    const t = readTop(der);
    expect(t.tag).toBe(tag);
    expect(contentOf(der, t).toString('latin1')).toBe(text);
    expect(readTime(der, t)).toBe(at(iso));
    if (at(iso) >= at('1950-01-01T00:00:00Z')) {
      const parsed = AsnConvert.parse(der, Time);
      expect((tag === TAG.utcTime ? parsed.utcTime : parsed.generalTime)?.getTime()).toBe(at(iso));
    }
  });

  it('drops milliseconds, refuses what cannot be written or read', () => {
    const der = time(at('2030-05-06T07:08:09.999Z'));
    expect(readTime(der, readTop(der))).toBe(at('2030-05-06T07:08:09Z'));
    expect(() => time(Number.NaN)).toThrow(RangeError);
    expect(() => time(at('+010000-01-01T00:00:00Z'))).toThrow(RangeError);
    const bad = tlv(TAG.utcTime, Buffer.from('2030010100Z'));
    expect(() => readTime(bad, readTop(bad))).toThrow(DerError);
    expect(() => readTime(NULL, readTop(NULL))).toThrow(DerError);
  });

  it('round-trips every second from 1950 to 9999', () => {
    fc.assert(
      fc.property(fc.integer({ min: at('1950-01-01T00:00:00Z') / 1000, max: at('9999-12-31T23:59:59Z') / 1000 }), (s) => {
        const der = time(s * 1000);
        expect(readTime(der, readTop(der))).toBe(s * 1000);
      }),
    );
  });
});

describe('DER reader over random trees', () => {
  type Node = { leaf: Buffer } | { kids: Node[] };
  const node: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      fc.record({ leaf: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 120, maxLength: 300 })).map(Buffer.from) }),
      fc.record({ kids: fc.array(tie('node'), { maxLength: 5 }) }),
    ),
  })).node;
  const write = (n: Node): Buffer => ('leaf' in n ? octetString(n.leaf) : sequence(...n.kids.map(write)));
  const read = (der: Buffer, t: Tlv): Node =>
    t.tag === TAG.octetString ? { leaf: Buffer.from(contentOf(der, t)) } : { kids: children(der, t).map((c) => read(der, c)) };

  it('reads back exactly what was written, and rawOf is the element', () => {
    fc.assert(
      fc.property(node, (n) => {
        const der = write(n);
        const top = readTop(der);
        expect(read(der, top)).toEqual(n);
        expect(rawOf(der, top).equals(der)).toBe(true);
      }),
    );
  });

  it('never accepts a truncation', () => {
    fc.assert(
      fc.property(node, fc.nat(), (n, cut) => {
        const der = write(n);
        const short = der.subarray(0, cut % der.length);
        expect(() => readTop(short)).toThrow(DerError);
      }),
    );
  });
});

describe('a certificate written with the DER writer', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const alg = sequence(oid('1.2.840.10045.4.3.2'));

  function selfSigned(serial: Buffer, notBefore: number, notAfter: number, cn: string, san: string): Buffer {
    const name = sequence(set(sequence(oid('2.5.4.3'), utf8String(cn))));
    const tbs = sequence(
      explicit(0, smallInteger(2)),
      integer(serial),
      alg,
      name,
      sequence(time(notBefore), time(notAfter)),
      name,
      spki,
      explicit(
        3,
        sequence(
          sequence(oid('2.5.29.19'), boolean(true), octetString(sequence(boolean(true)))),
          sequence(oid('2.5.29.15'), boolean(true), octetString(namedBits([5, 6]))),
          sequence(oid('2.5.29.17'), octetString(sequence(ia5String(san, 6), ia5String('a.example', 2)))),
        ),
      ),
    );
    return sequence(tbs, alg, bitString(sign('sha256', tbs, privateKey)));
  }

  it('is read the same by node:crypto and asn1-x509 across the 2049/2050 boundary', () => {
    const cases = [
      [Date.parse('2049-12-31T23:59:59Z'), Date.parse('2050-01-01T00:00:00Z')],
      [Date.parse('2025-01-01T00:00:00Z'), Date.parse('2049-12-31T23:59:59Z')],
      [Date.parse('2050-01-01T00:00:01Z'), Date.parse('2100-02-28T12:00:00Z')],
    ] as const;
    for (const [from, to] of cases) {
      const serial = Buffer.from('80ff00112233445566778899aabbccdd', 'hex');
      const der = selfSigned(serial, from, to, 'Zürich CA', 'spiffe://x.test/ns/a/svc/b');
      const cert = new X509Certificate(der);
      expect(cert.verify(publicKey)).toBe(true);
      expect(cert.checkIssued(cert)).toBe(true);
      expect(Date.parse(cert.validFrom)).toBe(from);
      expect(Date.parse(cert.validTo)).toBe(to);
      expect(cert.serialNumber).toBe('80FF00112233445566778899AABBCCDD');
      expect(cert.subject).toBe('CN=Zürich CA');
      expect(cert.subjectAltName).toBe('URI:spiffe://x.test/ns/a/svc/b, DNS:a.example');
      expect(cert.ca).toBe(true);

      const asn = AsnConvert.parse(der, Certificate);
      expect(asn.tbsCertificate.version).toBe(2);
      expect(Buffer.from(asn.tbsCertificate.serialNumber).toString('hex')).toBe(`00${serial.toString('hex')}`);
      expect(asn.tbsCertificate.validity.notBefore.getTime().getTime()).toBe(from);
      expect(asn.tbsCertificate.validity.notAfter.getTime().getTime()).toBe(to);
      expect(Buffer.from(AsnConvert.serialize(asn)).equals(der)).toBe(true); // asn1-schema re-encodes it byte for byte
    }
  });
});
