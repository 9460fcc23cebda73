import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type ProxyAckV1, type ProxyStatusReplyV1, subjects } from '@novamesh/contracts';
import { type ManagedProcess, startProxyConfig, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A compiled proxy-config replica (`npx tsc -b` first) on a nats-server whose max_payload is 16 KiB:
// more sidecar acknowledgements than one status reply can carry, and acknowledgements too large
// to be taken. The replica must answer why and keep running.

let nats: TestNats;
let nc: NatsConnection;
let p1: ManagedProcess;

beforeAll(async () => {
  nats = await TestNats.start({ config: 'max_payload: 16KB' });
  p1 = await startProxyConfig({ natsUrl: nats.url, instance: 'pc-limits' });
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await p1?.stop();
  await nats?.dispose();
});

const ack = (sidecar: string, reason: string): ProxyAckV1 => ({
  service: 'frontend',
  sidecar,
  version: 1,
  hash: 'h1',
  rejected: { version: 2, hash: 'h2', reason },
  sentAt: new Date().toISOString(),
});

const status = async () =>
  (await nc.request(subjects.proxyStatus, JSON.stringify({ service: 'frontend' }), { timeout: 5_000 })).json<ProxyStatusReplyV1>();

describe('proxy-config status at the NATS payload limit', () => {
  it('refuses an acknowledgement with an oversized reason, and answers a status reply too large to send with why', async () => {
    nc.publish(subjects.proxyAck('frontend', 'fe-huge'), JSON.stringify(ack('fe-huge', 'x'.repeat(5_000))));
    await p1.waitForLine(/invalid proxy ack skipped/);
    // 20 sidecars with 1,000-character reasons: their status (~25 KB) is over the 16 KiB max_payload.
    for (let i = 0; i < 20; i++) nc.publish(subjects.proxyAck('frontend', `fe-${i}`), JSON.stringify(ack(`fe-${i}`, 'r'.repeat(1_000))));
    await nc.flush();
    const r = await waitFor(async () => {
      const reply = await status();
      return reply.ok ? undefined : reply;
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('MESH_TOO_LARGE');
    expect(r.error.message).toMatch(/max_payload/);
    expect(p1.running).toBe(true);
    await p1.waitForLine(/reply not sent/);
    // Still answering: a status of another service fits.
    const other = (
      await nc.request(subjects.proxyStatus, JSON.stringify({ service: 'cart' }), { timeout: 5_000 })
    ).json<ProxyStatusReplyV1>();
    expect(other).toMatchObject({ ok: true, sidecars: [] });
    expect(((await status()) as { ok: boolean }).ok).toBe(false);
  });
});
