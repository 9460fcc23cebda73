import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { validService } from '@novamesh/contracts';
import { type ManagedProcess, startDiscovery, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';

// A real OTLP/HTTP (JSON) receiver: discovery exports the spans of the events it processes,
// continuing the trace the publisher put in the NATS headers.
let nats: TestNats;
let redis: TestRedis;
let discovery: ManagedProcess;
let collector: Server;
let nc: NatsConnection;
const received: string[] = [];

beforeAll(async () => {
  collector = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      if (req.url === '/v1/traces') received.push(body);
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  discovery = await startDiscovery({
    natsUrl: nats.url,
    redisUrl: redis.url,
    instance: 'traced',
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as { port: number }).port}` },
  });
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await discovery?.stop();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
  collector?.close();
});

it('exports a consumer span for a registration, in the publisher’s trace, with the service name', async () => {
  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const h = natsHeaders();
  h.set('traceparent', `00-${traceId}-b7ad6b7169203331-01`);
  await jetstream(nc).publish('mesh.v1.registry.traced.register', JSON.stringify(validService('traced')), { headers: h });
  const body = await waitFor(() => received.find((b) => b.includes('process mesh.v1.registry.traced.register')), {
    timeoutMs: 20_000,
    what: 'the span to reach the collector',
  });
  const doc = JSON.parse(body);
  const spans = doc.resourceSpans.flatMap((r: { scopeSpans: { spans: unknown[] }[] }) => r.scopeSpans.flatMap((s) => s.spans));
  const span = spans.find((s: { name: string }) => s.name === 'process mesh.v1.registry.traced.register');
  expect(span.traceId).toBe(traceId);
  expect(span.parentSpanId).toBe('b7ad6b7169203331');
  expect(JSON.stringify(doc.resourceSpans[0].resource)).toContain('discovery');
});
