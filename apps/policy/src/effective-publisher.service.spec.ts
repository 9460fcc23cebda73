import type { JetStreamClient } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { AuthorizationPolicySchema, type EffectivePolicyV1, type Policy } from '@novamesh/contracts';
import { createLogger } from '@novamesh/observability';
import { computeEffective } from '@novamesh/policy';
import { describe, expect, it, vi } from 'vitest';
import { type EffectivePublisherOptions, EffectivePublisherService, effectiveHash, eventJson } from './effective-publisher.service';

const logger = createLogger({ service: 'policy-test', instance: 't', level: 'silent' });
const decoder = new TextDecoder();

/** A mesh-wide DENY rule for namespace `ns`: every service's effective policy changes with it. */
function meshWide(ns: string, revision: number): { policy: Policy; revision: number }[] {
  const policy = AuthorizationPolicySchema.parse({
    kind: 'AuthorizationPolicy',
    name: 'mesh-wide',
    serviceName: '*',
    action: 'DENY',
    rules: [{ from: { namespaces: [ns] } }],
  });
  return [{ policy, revision }];
}

/**
 * A NATS connection and stream in one: each publication is stored after a pseudo-random 0–4 ms
 * and then delivered to the publisher's follow (`stored`), as MESH_CONFIG's follow delivers it;
 * a second publication with a message id already stored is dropped, as the stream drops it.
 * Records the order in which publications were sent, the most in flight at once (overall and per
 * service) and can refuse some (never stored, as a stream refusing a message).
 */
function fakeNats(fail: (e: EffectivePolicyV1) => boolean = () => false, delayMs?: (e: EffectivePolicyV1) => number) {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  const sent: EffectivePolicyV1[] = [];
  const stored: EffectivePolicyV1[] = [];
  const ids = new Set<string>();
  const perService = new Map<string, number>();
  const stats = { inFlight: 0, maxInFlight: 0, maxPerService: 0 };
  let publisher: EffectivePublisherService | undefined;
  const nc = {
    publish(subject: string, data: Uint8Array, opts: { headers: MsgHdrs }) {
      const e = JSON.parse(decoder.decode(data)) as EffectivePolicyV1;
      const msgId = opts.headers.get('Nats-Msg-Id');
      expect(subject).toBe(`mesh.v1.config.policy.${e.service}`);
      sent.push(e);
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      const mine = (perService.get(e.service) ?? 0) + 1;
      perService.set(e.service, mine);
      stats.maxPerService = Math.max(stats.maxPerService, mine);
      setTimeout(
        () => {
          stats.inFlight--;
          perService.set(e.service, mine - 1);
          if (fail(e) || ids.has(msgId)) return;
          ids.add(msgId);
          stored.push(e);
          publisher?.stored(subject, msgId, stored.length, () => e);
        },
        delayMs ? delayMs(e) : Math.floor(rand() * 5),
      );
    },
  };
  const make = (opts: EffectivePublisherOptions = {}) => {
    publisher = new EffectivePublisherService({} as JetStreamClient, nc as unknown as NatsConnection, logger, opts);
    return publisher;
  };
  return { make, sent, stored, stats };
}

const services = Array.from({ length: 120 }, (_, i) => `svc-${i}`);

describe('EffectivePublisherService', () => {
  it('publishes a mesh-wide change concurrently, bounded, and never lets a later revision of a service overtake an earlier one', async () => {
    const { make, sent, stored, stats } = fakeNats();
    const publisher = make({ maxInFlight: 16, maxPending: 48 });
    // Five mesh-wide changes, refreshed the way the KV watch does (one awaited call after the
    // other), plus the same services refreshed from a second, unawaited path (new services).
    for (let rev = 1; rev <= 5; rev++) {
      for (const s of services) expect(await publisher.refresh(s, meshWide(`change-${rev}`, rev), rev)).toBe(true);
      if (rev === 3) for (const s of services.slice(0, 30)) void publisher.refresh(s, meshWide('change-3', 3), 3);
    }
    await publisher.idle();

    expect(stats.maxInFlight).toBeGreaterThan(1);
    expect(stats.maxInFlight).toBeLessThanOrEqual(16);
    expect(stats.maxPerService).toBe(1);
    for (const s of services) {
      // Unchanged content queued again is not published again; the rest in revision order.
      expect(sent.filter((e) => e.service === s).map((e) => e.revision)).toEqual([1, 2, 3, 4, 5]);
      expect(stored.filter((e) => e.service === s).at(-1)?.authorization.policies[0]?.rules[0]?.from?.namespaces).toEqual(['change-5']);
    }
    // The publications really interleave across services (not one service after the other).
    expect(sent.slice(0, 16).map((e) => e.revision)).toEqual(Array(16).fill(1));

    // Nothing changed: nothing queued, nothing sent.
    expect(await publisher.refresh('svc-0', meshWide('change-5', 5), 6)).toBe(false);
    await publisher.idle();
    expect(sent).toHaveLength(services.length * 5);
  });

  it('holds a later revision of a service until the earlier, slower one is stored', async () => {
    // Odd revisions take 20 ms to be acked, even ones none: unchained, revision 2 would be stored first.
    const { make, stored, stats } = fakeNats(undefined, (e) => (e.revision % 2 ? 20 : 0));
    const publisher = make({ maxInFlight: 64 });
    for (const s of services.slice(0, 20)) {
      await publisher.refresh(s, meshWide('first', 1), 1);
      await publisher.refresh(s, meshWide('second', 2), 2);
    }
    await publisher.idle();
    expect(stats.maxPerService).toBe(1);
    for (const s of services.slice(0, 20)) expect(stored.filter((e) => e.service === s).map((e) => e.revision)).toEqual([1, 2]);
  });

  it('makes the caller wait while maxPending publications are queued', async () => {
    const { make, stats } = fakeNats();
    const publisher = make({ maxInFlight: 4, maxPending: 8 });
    let resolved = 0;
    const calls = services.slice(0, 20).map((s) => publisher.refresh(s, meshWide('x', 1), 1).then(() => resolved++));
    await new Promise((r) => setImmediate(r));
    expect(resolved).toBeLessThan(8);
    await Promise.all(calls);
    await publisher.idle();
    expect(stats.maxInFlight).toBeLessThanOrEqual(4);
  });

  it('forgets a publication never seen stored, so the next refresh with the same content publishes it again', async () => {
    let failing = true;
    const { make, stored } = fakeNats((e) => failing && e.service === 'svc-1');
    const publisher = make({ confirmTimeoutMs: 50 });
    await publisher.refresh('svc-1', meshWide('a', 1), 1);
    await publisher.refresh('svc-2', meshWide('a', 1), 1);
    await publisher.idle();
    expect(stored.map((e) => e.service)).toEqual(['svc-2']);
    failing = false;
    expect(await publisher.refresh('svc-1', meshWide('a', 1), 2)).toBe(true);
    expect(await publisher.refresh('svc-2', meshWide('a', 1), 2)).toBe(false);
    await publisher.idle();
    expect(stored.map((e) => `${e.service}@${e.revision}`)).toEqual(['svc-2@1', 'svc-1@2']);
  });

  it('takes a copy stored by another replica (same message id) as the confirmation of its own', async () => {
    // The stream refuses this replica's copy (it holds the other replica's already).
    const { make, sent } = fakeNats(() => true);
    const publisher = make({ confirmTimeoutMs: 10_000 });
    expect(await publisher.refresh('svc-1', meshWide('a', 1), 1)).toBe(true);
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    const theirs = { ...(sent[0] as EffectivePolicyV1) };
    const msgId = `svc-1:1:${effectiveHash(theirs)}`;
    publisher.stored('mesh.v1.config.policy.svc-1', msgId, 1, () => theirs);
    const started = Date.now();
    await publisher.idle();
    expect(Date.now() - started).toBeLessThan(1_000);
    // The same content again: already the stream's last value, nothing sent.
    expect(await publisher.refresh('svc-1', meshWide('a', 1), 2)).toBe(false);
    expect(sent).toHaveLength(1);
  });

  it("learns the stream's last values from other replicas' messages and does not republish them", async () => {
    const { make, sent } = fakeNats();
    const publisher = make();
    const theirs = { ...computeEffective('svc-9', meshWide('b', 7)), revision: 7, updatedAt: new Date().toISOString() };
    publisher.stored('mesh.v1.config.policy.svc-9', `svc-9:7:${effectiveHash(theirs)}`, 1, () => theirs);
    expect(await publisher.refresh('svc-9', meshWide('b', 7), 8)).toBe(false);
    expect(sent).toHaveLength(0);
  });

  it('sends the event as JSON.stringify of it would, the content serialized once for hash and message', () => {
    const content = computeEffective('svc-1', meshWide('a', 3));
    const updatedAt = new Date().toISOString();
    expect(eventJson(JSON.stringify(content), 3, updatedAt)).toBe(JSON.stringify({ ...content, revision: 3, updatedAt }));
    expect(() => eventJson('[]', 1, updatedAt)).toThrow(RangeError);
  });
});
