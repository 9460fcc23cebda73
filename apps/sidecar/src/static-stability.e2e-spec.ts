import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { subjects } from '@novamesh/contracts';
import { waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type EchoApp, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// Static stability: sidecars keep serving with their last good snapshot and certificate when the
// control plane, then NATS itself, go away — and a sidecar restarted meanwhile starts from disk.
let m: TestMesh;
let web: SidecarProcess;
let webApp: EchoApp;
const apps: EchoApp[] = [];

async function allOk(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await call(web, 'orders', `/static/${i}`);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.headers['x-forwarded-client-cert']).toContain('URI=spiffe://novamesh.local/ns/default/svc/web');
  }
}

beforeAll(async () => {
  m = await TestMesh.start();
  for (const name of ['s1', 's2']) {
    const app = await m.app(name);
    apps.push(app);
    await m.sidecar('orders', app);
  }
  webApp = await m.app('web');
  web = await m.sidecar('web', webApp, { env: { SIDECAR_UPSTREAMS: 'orders' } });
  await m.until(
    web,
    'two orders endpoints and a certificate',
    (d) => d.snapshot?.upstreams[0]?.endpoints.length === 2 && d.certificate !== null,
  );
}, 120_000);

afterAll(async () => {
  await m?.dispose();
});

describe('a sidecar refuses a bad snapshot and keeps serving with the good one', () => {
  it('reports the reason on /config_dump and in its acknowledgement', async () => {
    const before = await web.version();
    const nc = await connect({ servers: m.nats.url });
    try {
      const acks: string[] = [];
      const sub = nc.subscribe(subjects.proxyAck('web', web.id), {
        callback: (_e, msg) => {
          acks.push(msg.string());
        },
      });
      const { body } = await web.admin<{ snapshot: Record<string, unknown> }>('/config_dump');
      const forged = { ...body.snapshot, version: before + 1, upstreams: [] }; // hash no longer matches the content
      await jetstream(nc).publish(subjects.proxyConfig('web'), JSON.stringify(forged));
      const dump = await m.until(web, 'a rejection', (d) => d.rejected !== null);
      expect(dump.rejected?.reason).toMatch(/content hash [0-9a-f]{64} does not match the declared hash/);
      expect(await web.version()).toBe(before);
      await allOk(4);
      await waitFor(() => acks.some((a) => JSON.parse(a).rejected?.version === before + 1), { what: 'an ack with the rejection' });
      sub.unsubscribe();
    } finally {
      await nc.close();
    }
  });
});

describe('control plane and NATS outage', () => {
  it('keeps serving over mTLS while every control-plane service is stopped', async () => {
    await allOk(4);
    for (const p of m.procs.filter((p) => !p.name.startsWith('sidecar-'))) await p.stop();
    await allOk(20);
  });

  it('keeps serving while NATS is down too', async () => {
    await m.nats.stop();
    await allOk(20);
  });

  it('a sidecar restarted during the outage starts from its saved snapshot and certificate', async () => {
    await web.proc.stop();
    web = await m.sidecar('web', webApp, { id: web.id, token: web.token ?? false, env: { SIDECAR_UPSTREAMS: 'orders' } });
    const dump = await m.until(web, 'snapshot and certificate from disk', (d) => d.snapshot !== null && d.certificate !== null);
    expect(dump.certificate?.spiffeId).toBe('spiffe://novamesh.local/ns/default/svc/web');
    expect(web.proc.output.some((l) => l.includes('serving the last good snapshot from disk'))).toBe(true);
    await allOk(10);
  });

  it('reconnects when NATS is back, without a restart, and acknowledges its version again', async () => {
    await m.nats.restart();
    const nc = await connect({ servers: m.nats.url });
    try {
      let acked = 0;
      const sub = nc.subscribe(subjects.proxyAck('web', web.id), {
        callback: (_e, msg) => {
          acked = JSON.parse(msg.string()).version;
        },
      });
      const version = await web.version();
      await waitFor(() => acked === version, { timeoutMs: 20_000, what: `web to acknowledge version ${version} after NATS came back` });
      sub.unsubscribe();
    } finally {
      await nc.close();
    }
    await allOk(4);
  });
});

describe('graceful shutdown', () => {
  it('SIGTERM lets in-flight requests finish and callers see no failure', async () => {
    const target = apps[1] as EchoApp;
    target.delayMs = 300;
    const slow = Array.from({ length: 6 }, (_, i) => call(web, 'orders', `/slow/${i}`));
    await new Promise((r) => setTimeout(r, 100));
    const sidecar = m.sidecars.find((s) => s.id === 's2-sc') as SidecarProcess;
    await sidecar.proc.stop('SIGTERM');
    const results = await Promise.all(slow);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    target.delayMs = 0;
  });
});
