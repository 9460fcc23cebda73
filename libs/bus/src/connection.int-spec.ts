import { createServer, type Server, type Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '@novamesh/observability';
import { jsonLogLines, waitFor } from '@novamesh/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { connectBus, drainBus } from './connection';

/**
 * Speaks just enough of the NATS protocol for a client to connect (INFO, then PONG for every
 * PING), announcing the version it is given: a nats-server 2.9 is not always at hand, and the
 * warning is about what the server announces.
 */
async function announcingServer(version: () => string): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write(`INFO ${JSON.stringify({ server_id: 'test', version: version(), proto: 1, max_payload: 1_048_576, headers: true })}\r\n`);
    s.on('data', (b) => {
      for (const line of b.toString().split('\r\n')) if (line === 'PING') s.write('PONG\r\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, sockets };
}

function capture() {
  const { lines, destination } = jsonLogLines();
  return { lines, logger: createLogger({ service: 'connection-test', destination }) };
}

describe('connectBus and the nats-server version', () => {
  let nc: NatsConnection | undefined;
  let server: Server | undefined;
  afterEach(async () => {
    await drainBus(nc);
    await new Promise((r) => server?.close(r));
  });

  it('warns once, naming the version and why, when the server is older than 2.10', async () => {
    const fake = await announcingServer(() => '2.9.10');
    server = fake.server;
    const { lines, logger } = capture();
    nc = await connectBus({ servers: `127.0.0.1:${fake.port}`, name: 'old', logger });
    await new Promise((r) => setImmediate(r));
    const warns = lines.filter((l) => l.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ natsServer: '2.9.10' });
    expect(warns[0]?.msg).toMatch(/^nats-server 2\.9\.10 is older than 2\.10\.0, the oldest Novamesh supports: .*upgrade nats-server$/);
  });

  it('says nothing for 2.10, and warns when a reconnect lands on an older server', async () => {
    let version = '2.10.27';
    const fake = await announcingServer(() => version);
    server = fake.server;
    const { lines, logger } = capture();
    nc = await connectBus({ servers: `127.0.0.1:${fake.port}`, name: 'upgrade', logger });
    await new Promise((r) => setImmediate(r));
    expect(lines.filter((l) => l.level === 'warn')).toEqual([]);

    version = '2.9.10';
    for (const s of fake.sockets) s.destroy();
    const warn = await waitFor(() => lines.find((l) => l.level === 'warn'), { timeoutMs: 5_000, what: 'a warning after the reconnect' });
    expect(warn).toMatchObject({ natsServer: '2.9.10' });
  });
});
