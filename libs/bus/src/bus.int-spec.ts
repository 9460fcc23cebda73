import { type JetStreamClient, type JsMsg, jetstream, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { type DeadLetterV1, ErrorCode, MeshError, MeshValidationError, streams, subjects } from '@novamesh/contracts';
import { setupTelemetry } from '@novamesh/observability';
import { TestNats, waitFor } from '@novamesh/testing';
import { context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectBus, drainBus, tlsRequired } from './connection';
import { DurableConsumerRunner } from './consumer';
import { publishDeadLetter } from './dead-letter';
import { subjectMatches } from './jetstream.server';
import { meshStreams, provisionDiscovery, registryConsumer } from './provision';
import { publishJson } from './publish';

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;

beforeAll(async () => {
  setupTelemetry({ service: 'bus-test', exporters: [new InMemorySpanExporter()] });
  nats = await TestNats.start();
  nc = await connectBus({ servers: nats.url, name: 'bus-test' });
  js = jetstream(nc);
});

afterAll(async () => {
  await drainBus(nc);
  await nats?.dispose();
});

async function deadLetters(): Promise<DeadLetterV1[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streams.deadLetter);
  const out: DeadLetterV1[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(streams.deadLetter, { seq }).catch(() => null);
    if (m) out.push(m.json<DeadLetterV1>());
  }
  return out;
}

describe('connecting', () => {
  it('a tls:// URL requires TLS: a server without it is refused, never spoken to in plaintext', async () => {
    const port = new URL(nats.url).port;
    expect(tlsRequired(`nats://127.0.0.1:1, tls://127.0.0.1:${port}`)).toBe(true);
    expect(tlsRequired([`nats://127.0.0.1:${port}`])).toBe(false);
    await expect(connectBus({ servers: `tls://127.0.0.1:${port}`, name: 'tls-test', timeout: 2_000 })).rejects.toThrow(/secure|tls/i);
    const plain = await connectBus({ servers: `nats://127.0.0.1:${port}`, name: 'plain-test', timeout: 2_000 });
    await drainBus(plain);
  });
});

describe('provisioning', () => {
  it('is idempotent, including when replicas race', async () => {
    await Promise.all([provisionDiscovery(nc), provisionDiscovery(nc), provisionDiscovery(nc)]);
    await provisionDiscovery(nc);
    const jsm = await jetstreamManager(nc);
    for (const s of meshStreams()) {
      const info = await jsm.streams.info(s.name);
      expect(info.config.subjects).toEqual(s.subjects);
    }
    const c = await jsm.consumers.info(streams.registry, registryConsumer().durable_name);
    expect(c.config.max_deliver).toBe(5);
    expect(c.config.ack_policy).toBe('explicit');
  });
});

describe('publishing', () => {
  it('drops a second message with the same Nats-Msg-Id', async () => {
    const a = await publishJson(js, subjects.registry('dedup', 'heartbeat'), { service: 'dedup' }, { msgId: 'same-id' });
    const b = await publishJson(js, subjects.registry('dedup', 'heartbeat'), { service: 'dedup' }, { msgId: 'same-id' });
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
  });

  it('carries the trace context in NATS headers', async () => {
    const tracer = trace.getTracer('test');
    const span = tracer.startSpan('publisher');
    const sub = nc.subscribe('test.trace', { max: 1 });
    await jetstreamManager(nc).then((jsm) => jsm.streams.add({ name: 'TRACE_TEST', subjects: ['test.trace'] }));
    await context.with(trace.setSpan(context.active(), span), () => publishJson(js, 'test.trace', { x: 1 }));
    span.end();
    for await (const m of sub) {
      expect(m.headers?.get('traceparent')).toContain(span.spanContext().traceId);
    }
  });
});

describe('DurableConsumerRunner', () => {
  it('acks good messages, dead-letters bad ones at once and gives up on failing ones after max deliveries', async () => {
    await provisionDiscovery(nc);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'RUNNER_TEST', subjects: ['test.runner.>'], retention: RetentionPolicy.Workqueue });
    await jsm.consumers.add('RUNNER_TEST', { ...registryConsumer(), durable_name: 'runner-test', filter_subject: 'test.runner.>' });
    const handled: string[] = [];
    const attempts = new Map<string, number>();
    const runner = new DurableConsumerRunner({
      js,
      stream: 'RUNNER_TEST',
      durable: 'runner-test',
      maxDeliver: 3,
      handle: async (msg: JsMsg) => {
        const body = msg.json<{ kind: string; n: number }>();
        attempts.set(body.kind, (attempts.get(body.kind) ?? 0) + 1);
        if (body.kind === 'bad') throw new MeshValidationError('invalid test event', [{ path: 'kind', message: 'is bad' }]);
        if (body.kind === 'flaky' && (attempts.get('flaky') ?? 0) < 2) throw new Error('store briefly unavailable');
        if (body.kind === 'broken')
          throw new MeshError(ErrorCode.notFound, 'service "x" is not registered', {
            retryable: true,
            issues: [{ path: 'service', message: 'is not registered' }],
          });
        handled.push(body.kind);
      },
      deadLetter: (msg, err) => publishDeadLetter(js, 'registry', msg, err, 'test'),
    });
    runner.start();
    for (const kind of ['good', 'bad', 'flaky', 'broken']) await publishJson(js, `test.runner.${kind}`, { kind, n: 1 });
    await waitFor(() => handled.includes('good') && handled.includes('flaky') && (attempts.get('broken') ?? 0) >= 3, {
      timeoutMs: 20_000,
      what: 'processing',
    });
    const dls = await waitFor(async () => {
      const d = (await deadLetters()).filter((x) => x.subject.startsWith('test.runner.'));
      return d.length >= 2 ? d : undefined;
    });
    await runner.stop();
    const bad = dls.find((d) => d.subject.endsWith('.bad'));
    const broken = dls.find((d) => d.subject.endsWith('.broken'));
    expect(bad?.error).toMatchObject({ code: ErrorCode.invalid, issues: [{ path: 'kind', message: 'is bad' }] });
    expect(bad?.deliveryCount).toBe(1);
    expect(JSON.parse(bad?.payload ?? '{}')).toEqual({ kind: 'bad', n: 1 });
    // Given up on: the record keeps the last refusal's code and issues.
    expect(broken?.error).toEqual({
      code: ErrorCode.redeliveryExhausted,
      message: `gave up after 3 deliveries: ${ErrorCode.notFound}: service "x" is not registered`,
      issues: [{ path: 'service', message: 'is not registered' }],
    });
    expect(broken?.deliveryCount).toBe(3);
    expect(attempts.get('bad')).toBe(1);
    expect(attempts.get('good')).toBe(1);
    // work queue: everything acked or terminated leaves the consumer (the server applies acks asynchronously)
    await waitFor(
      async () => {
        const info = await jsm.consumers.info('RUNNER_TEST', 'runner-test');
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      { timeoutMs: 5000, what: 'all messages acked or terminated' },
    );
  });
});

describe('subjectMatches', () => {
  it.each([
    ['mesh.v1.registry.>', 'mesh.v1.registry.a.register', true],
    ['mesh.v1.registry.*.register', 'mesh.v1.registry.a.register', true],
    ['mesh.v1.registry.*.register', 'mesh.v1.registry.a.endpoint.add', false],
    ['mesh.v1.registry.>', 'mesh.v1.registry', false],
    ['a.b', 'a.b.c', false],
  ])('%s ~ %s = %s', (p, s, want) => expect(subjectMatches(p, s)).toBe(want));
});

it('keeps headers helper usable', () => {
  expect(natsHeaders()).toBeDefined();
});
