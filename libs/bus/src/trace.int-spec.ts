import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { createLogger, setupTelemetry } from '@novamesh/observability';
import { jsonLogLines, TestNats } from '@novamesh/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectBus, drainBus } from './connection';
import { publishJson } from './publish';
import { withConsumerSpan } from './trace';

// Services run without a span exporter by default: the incoming trace must still reach the
// handler's logs and every message the handler publishes.
let nats: TestNats;
let nc: NatsConnection;

beforeAll(async () => {
  setupTelemetry({ service: 'trace-test' });
  nats = await TestNats.start();
  nc = await connectBus({ servers: nats.url, name: 'trace-test' });
  await (await jetstreamManager(nc)).streams.add({ name: 'TRACE', subjects: ['trace.>'] });
});
afterAll(async () => {
  await drainBus(nc);
  await nats?.dispose();
});

it('carries a publisher trace through a consumer to its logs and onward publishes, with no exporter', async () => {
  const js = jetstream(nc);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const h = natsHeaders();
  h.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
  await js.publish('trace.in', '{}', { headers: h });

  const { lines, destination } = jsonLogLines();
  const log = createLogger({ service: 'trace-test', destination });
  const onward = nc.subscribe('trace.out', { max: 1 });
  const msg = await (await js.consumers.get('TRACE')).next();
  expect(msg).not.toBeNull();
  await withConsumerSpan('process trace.in', msg?.headers, async () => {
    log.info('handling');
    await publishJson(js, 'trace.out', { ok: true });
  });
  for await (const m of onward) expect(m.headers?.get('traceparent')).toContain(traceId);
  await new Promise((r) => setImmediate(r));
  expect(lines[0]).toMatchObject({ msg: 'handling', traceId });
});
