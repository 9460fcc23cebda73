import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs module of the benchmark tools, without type declarations
import { RawClient } from './raw-client.mjs';

type Done = (err: Error | undefined, status?: number) => void;
const servers: (Server | NetServer)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function listen<T extends Server | NetServer>(server: T): Promise<string> {
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

function get(client: { get(done: Done): void }): Promise<number> {
  return new Promise((resolve, reject) => client.get((err, status) => (err ? reject(err) : resolve(status as number))));
}

describe('the load generator raw HTTP/1.1 client', () => {
  it('frames Content-Length, chunked (with trailers) and bodiless answers on one keep-alive connection', async () => {
    const sockets = new Set();
    const seen: string[] = [];
    const server = createServer((req, res) => {
      sockets.add(req.socket);
      seen.push(`${req.method} ${req.url} ${req.headers.host}`);
      const n = seen.length;
      if (n === 1) res.writeHead(200, { 'content-length': '5' }).end('hello');
      else if (n === 2) {
        res.writeHead(201, { 'transfer-encoding': 'chunked', trailer: 'x-sum' });
        res.write('a'.repeat(70_000));
        res.addTrailers({ 'x-sum': '1' });
        res.end('tail');
      } else res.writeHead(204).end();
    });
    const url = await listen(server);
    const client = new RawClient({ url, host: 'app.mesh', path: '/p?q=1', connections: 4 });
    expect([await get(client), await get(client), await get(client)]).toEqual([200, 201, 204]);
    expect(seen).toEqual(['GET /p?q=1 app.mesh', 'GET /p?q=1 app.mesh', 'GET /p?q=1 app.mesh']);
    expect(sockets.size).toBe(1);
    client.close();
  });

  it('opens at most `connections` connections; further requests wait their turn', async () => {
    const pending: (() => void)[] = [];
    const sockets = new Set();
    const server = createServer((req, res) => {
      sockets.add(req.socket);
      pending.push(() => res.writeHead(200, { 'content-length': '2' }).end('ok'));
    });
    const url = await listen(server);
    const client = new RawClient({ url, connections: 2 });
    const answers = Array.from({ length: 5 }, () => get(client));
    const served = async (n: number) => {
      for (let i = 0; i < 200 && pending.length < n; i++) await new Promise((r) => setTimeout(r, 5));
      expect(pending.length).toBe(n);
    };
    await served(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(pending.length).toBe(2); // the other three wait for a connection
    for (let done = 0; done < 5; done++) {
      await served(done + Math.min(2, 5 - done));
      const release = pending[done];
      if (!release) throw new Error(`request ${done} never reached the server`);
      release();
    }
    expect(await Promise.all(answers)).toEqual([200, 200, 200, 200, 200]);
    expect(sockets.size).toBe(2);
    client.close();
  });

  it('fails a request whose answer is cut short, is not HTTP or has no framing, and goes on with a new connection', async () => {
    const answers = [
      'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort',
      'SSH-2.0-OpenSSH\r\n\r\n',
      'HTTP/1.1 200 OK\r\n\r\nno framing',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok',
    ];
    let n = 0;
    const server = createNetServer((socket) => {
      socket.once('data', () => {
        const answer = answers[n++];
        if (answer === undefined) throw new Error(`connection ${n} was not expected`);
        socket.end(answer);
      });
    });
    const url = await listen(server);
    const client = new RawClient({ url, connections: 1 });
    await expect(get(client)).rejects.toThrow(/closed before the response was complete/);
    await expect(get(client)).rejects.toThrow(/not an HTTP\/1.x status line/);
    await expect(get(client)).rejects.toThrow(/neither Content-Length nor chunked/);
    expect(await get(client)).toBe(200);
    client.close();
  });

  it('refuses what it cannot do', () => {
    expect(() => new RawClient({ url: 'https://127.0.0.1:1', connections: 1 })).toThrow(/plain http only/);
    expect(() => new RawClient({ url: 'http://127.0.0.1:1', connections: 0 })).toThrow(/connections must be a positive integer/);
  });
});
