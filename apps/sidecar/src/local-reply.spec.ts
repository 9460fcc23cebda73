import { once } from 'node:events';
import { createServer } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DownstreamRequest, DownstreamResponse } from './forward';
import { InFlightLimit } from './in-flight';
import { encodeGrpcMessage, grpcStatusOf, grpcStatusOfHttp, sendLocalReply } from './local-reply';

describe('grpcStatusOf', () => {
  it('answers a rate-limited gRPC caller RESOURCE_EXHAUSTED, whatever status the policy sets', () => {
    expect(grpcStatusOf(429)).toBe(8);
    expect(grpcStatusOf(503, 'RATE_LIMITED')).toBe(8);
    expect(grpcStatusOf(503, 'OVERLOADED')).toBe(14);
    expect(grpcStatusOf(403)).toBe(7);
  });

  it('grpcStatusOfHttp follows gRPC’s HTTP-to-status mapping: what it does not name is UNKNOWN', () => {
    const mapped = [400, 401, 403, 404, 429, 502, 503, 504, 500, 418, 200].map(grpcStatusOfHttp);
    expect(mapped).toEqual([13, 16, 7, 12, 14, 14, 14, 14, 2, 2, 2]);
  });

  it('grpc-message: only bytes outside printable ASCII and % are percent-encoded, as gRPC clients decode it', () => {
    const text = 'route a/b: 50% of "x", ünïcode\n';
    const encoded = encodeGrpcMessage(text);
    expect(encoded).toBe('route a/b: 50%25 of "x", %C3%BCn%C3%AFcode%0A');
    // What grpc-js does with it.
    expect(decodeURI(encoded)).toBe(text);
  });
});

// A real node:http server in front of the handlers, so headers are what a client sees.
let release: () => void = () => undefined;
const limit = new InFlightLimit(2, () => undefined);
const server = createServer(
  limit.guard('inbound', async (req: DownstreamRequest, res: DownstreamResponse) => {
    if (req.url === '/slow') {
      await new Promise<void>((r) => {
        const prev = release;
        release = () => {
          prev();
          r();
        };
      });
      res.end('done');
      return;
    }
    sendLocalReply(req, res, 'RATE_LIMITED', 'rate limit rl/l exceeded', { 'retry-after': '1' }, 503);
  }),
);
let base = '';
beforeAll(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe('local replies', () => {
  it('RATE_LIMITED carries the policy status, code, reason and extra headers; gRPC callers get status 8', async () => {
    const http = await request(`${base}/x`);
    expect(http.statusCode).toBe(503);
    expect(http.headers).toMatchObject({
      'x-novamesh-error': 'RATE_LIMITED',
      'x-novamesh-reason': 'rate limit rl/l exceeded',
      'retry-after': '1',
    });
    expect(await http.body.json()).toEqual({ code: 'RATE_LIMITED', message: 'rate limit rl/l exceeded' });
    const grpc = await request(`${base}/x`, { headers: { 'content-type': 'application/grpc' } });
    await grpc.body.dump();
    expect(grpc.statusCode).toBe(200);
    expect(grpc.headers['grpc-status']).toBe('8');
  });

  it('InFlightLimit answers 503 OVERLOADED beyond its bound and admits again when requests finish', async () => {
    const slow = [request(`${base}/slow`), request(`${base}/slow`)];
    await new Promise((r) => setTimeout(r, 50));
    expect(limit.active).toBe(2);
    const shed = await request(`${base}/x`);
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['x-novamesh-error']).toBe('OVERLOADED');
    await shed.body.dump();
    release();
    for (const r of await Promise.all(slow)) expect(await r.body.text()).toBe('done');
    await new Promise((r) => setTimeout(r, 10));
    expect(limit.active).toBe(0);
    const again = await request(`${base}/x`);
    await again.body.dump();
    expect(again.headers['x-novamesh-error']).toBe('RATE_LIMITED');
  });
});
