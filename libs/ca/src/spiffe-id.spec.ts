import { MeshValidationError } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { parseSpiffeId, spiffeId } from './index';

describe('spiffeId', () => {
  it('builds spiffe://<td>/ns/<ns>/svc/<svc> and parses back to the same parts', () => {
    const uri = spiffeId({ trustDomain: 'novamesh.local', namespace: 'shop', service: 'payment' });
    expect(uri).toBe('spiffe://novamesh.local/ns/shop/svc/payment');
    expect(parseSpiffeId(uri)).toEqual({ uri, trustDomain: 'novamesh.local', namespace: 'shop', service: 'payment' });
  });

  it('names every bad part at once', () => {
    const err = (() => {
      try {
        spiffeId({ trustDomain: 'Nova Mesh', namespace: '..', service: '' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MeshValidationError);
    expect((err as MeshValidationError).code).toBe('MESH_INVALID');
    expect((err as MeshValidationError).issues).toEqual([
      { path: 'trustDomain', message: '"Nova Mesh" may only hold lower-case letters, digits, ".", "-" and "_" (at most 255)' },
      { path: 'namespace', message: '".." is not allowed as a path segment' },
      { path: 'service', message: 'is empty' },
    ]);
  });
});

describe('parseSpiffeId', () => {
  it.each([
    ['https://novamesh.local/ns/shop/svc/payment', 'does not start with spiffe://'],
    ['spiffe://Novamesh.local/ns/shop/svc/payment', 'trust domain "Novamesh.local" may only hold'],
    ['spiffe://novamesh.local:8443/ns/shop/svc/payment', 'trust domain "novamesh.local:8443" may only hold'],
    ['spiffe://user@novamesh.local/ns/shop/svc/payment', 'trust domain "user@novamesh.local"'],
    ['spiffe:///ns/shop/svc/payment', 'trust domain is empty'],
    ['spiffe://novamesh.local/ns/shop/svc/payment/', 'path segment is empty'],
    ['spiffe://novamesh.local/ns//svc/payment', 'path segment is empty'],
    ['spiffe://novamesh.local/ns/./svc/payment', 'path segment "." is not allowed'],
    ['spiffe://novamesh.local/ns/shop/svc/pay%20ment', 'path segment "pay%20ment" may only hold'],
    ['spiffe://novamesh.local/ns/shop/svc/payment?x=1', 'path segment "payment?x=1" may only hold'],
    ['spiffe://novamesh.local/svc/payment', 'is not of the form spiffe://<trust-domain>/ns/<namespace>/svc/<service>'],
    ['spiffe://novamesh.local/ns/shop/svc/payment/extra', 'is not of the form'],
    ['spiffe://novamesh.local', 'is not of the form'],
    [`spiffe://novamesh.local/ns/shop/svc/${'a'.repeat(2100)}`, 'is longer than 2048 bytes'],
  ])('refuses %s', (uri, message) => {
    expect(() => parseSpiffeId(uri, 'csr.san')).toThrow(MeshValidationError);
    try {
      parseSpiffeId(uri, 'csr.san');
    } catch (e) {
      const [issue] = (e as MeshValidationError).issues;
      expect(issue?.path).toBe('csr.san');
      expect(issue?.message).toContain(message);
    }
  });
});
