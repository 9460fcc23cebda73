import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type DownstreamRequest, RetryableBody } from './forward';

/** A request body stream as node:http(2) delivers one, with its headers. */
function request(headers: Record<string, string> = {}): PassThrough & { headers: Record<string, string> } {
  return Object.assign(new PassThrough(), { headers });
}

describe('RetryableBody', () => {
  it('keeps a small body whole for another try (and a mirror copy) once it ended', async () => {
    const req = request();
    const body = new RetryableBody(req as unknown as DownstreamRequest);
    const first = body.open() as PassThrough;
    first.resume();
    req.end('hello');
    await new Promise((r) => req.once('end', r));
    expect(body.replayable).toBe(true);
    expect((body.open() as Buffer).toString()).toBe('hello');
  });

  it('never hands out what was kept of a body whose client went away mid-way, even when the stream ends after its close (node:http2)', async () => {
    const req = request();
    const body = new RetryableBody(req as unknown as DownstreamRequest);
    const first = body.open() as PassThrough;
    first.on('error', () => undefined);
    first.resume();
    req.write('part of a bo');
    await new Promise((r) => setImmediate(r));
    req.emit('close');
    req.end();
    await new Promise((r) => req.once('end', r));
    expect(body.replayable).toBe(false);
    expect(body.open()).toBeUndefined();
    expect(first.destroyed).toBe(true);
  });
});
