import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// A root rotation under continuous mTLS traffic between sidecars: both roots trusted, every
// sidecar re-issues under the new root (hot-swapping its TLS credentials), the old root leaves —
// and not one request fails on the way.
let m: TestMesh;
let web: SidecarProcess;
const sidecars: SidecarProcess[] = [];

beforeAll(async () => {
  m = await TestMesh.start();
  const env = { SIDECAR_NEW_ROOT_RENEW_MAX: '2s' };
  for (const name of ['r1', 'r2']) sidecars.push(await m.sidecar('orders', await m.app(name), { env }));
  web = await m.sidecar('web', await m.app('web'), { env: { ...env, SIDECAR_UPSTREAMS: 'orders' } });
  sidecars.push(web);
  await m.until(web, 'two orders endpoints', (d) => d.snapshot?.upstreams[0]?.endpoints.length === 2);
  for (const s of sidecars) await m.until(s, 'a certificate', (d) => d.certificate !== null);
}, 120_000);

afterAll(async () => {
  await m?.dispose();
});

describe('root rotation under traffic', () => {
  it('moves every sidecar to the new root and retires the old one with zero failed requests', async () => {
    const serials = new Map<string, string>();
    for (const s of sidecars)
      serials.set(s.id, (await s.admin<{ certificate: { serial: string } }>('/config_dump')).body.certificate.serial);

    let stop = false;
    const results: { status: number; xfcc: string | undefined }[] = [];
    const load = Promise.all(
      Array.from({ length: 3 }, async () => {
        while (!stop) {
          const r = await call(web, 'orders', '/during-rotation');
          results.push({ status: r.status, xfcc: r.json.headers?.['x-forwarded-client-cert'] as string | undefined });
        }
      }),
    );
    try {
      const begun = await m.mesh.rotateRoot('begin');
      expect(begun.rotating).toBe(true);
      for (const s of sidecars)
        await m.until(
          s,
          'a certificate under the new root',
          (d) => d.certificate !== null && d.certificate.serial !== serials.get(s.id),
          30_000,
        );
      const finished = await m.mesh.rotateRoot('finish');
      expect(finished.rotating).toBe(false);
      expect(finished.roots).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 1_000)); // traffic keeps flowing after the old root left
    } finally {
      stop = true;
      await load;
    }
    expect(results.length).toBeGreaterThan(100);
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect(results.every((r) => r.xfcc?.includes('URI=spiffe://novamesh.local/ns/default/svc/web'))).toBe(true);

    // New connections after the switch: a sidecar that only ever knew the new root reaches the
    // orders sidecars, whose TLS servers swapped to the new credentials and bundle in place.
    const late = await m.sidecar('late', await m.app('late'), { env: { SIDECAR_UPSTREAMS: 'orders' } });
    await m.until(
      late,
      'orders endpoints and a certificate',
      (d) => d.snapshot?.upstreams[0]?.endpoints.length === 2 && d.certificate !== null,
    );
    for (let i = 0; i < 4; i++) {
      const r = await call(late, 'orders', '/after-rotation');
      expect(r.status).toBe(200);
      expect(r.json.headers['x-forwarded-client-cert']).toContain('URI=spiffe://novamesh.local/ns/default/svc/late');
    }
  });
});
