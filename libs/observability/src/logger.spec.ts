import { jsonLogLines } from '@novamesh/testing';
import { describe, expect, it } from 'vitest';
import { watchEventLoop } from './event-loop';
import { createLogger } from './logger';

describe('createLogger', () => {
  it('writes JSON lines with service and instance, and redacts secrets wherever they sit', async () => {
    const { lines, destination } = jsonLogLines();
    const log = createLogger({ service: 'discovery', instance: 'd1', destination });
    log
      .child({ component: 'ca' })
      .info({ token: 'join-abc', config: { passphrase: 'hunter2' }, headers: { authorization: 'Bearer x' } }, 'hello');
    await new Promise((r) => setImmediate(r));
    expect(lines[0]).toMatchObject({
      level: 'info',
      service: 'discovery',
      instance: 'd1',
      component: 'ca',
      token: '[redacted]',
      config: { passphrase: '[redacted]' },
      headers: { authorization: '[redacted]' },
      msg: 'hello',
    });
    expect(JSON.stringify(lines)).not.toMatch(/hunter2|join-abc|Bearer/);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchEventLoop', () => {
  it('logs the longest delay when the loop was blocked past the threshold, and nothing while it was not', async () => {
    const { lines, destination } = jsonLogLines();
    const logger = createLogger({ service: 'test', instance: 't1', destination });
    const stop = watchEventLoop(logger, { thresholdMs: 250, intervalMs: 100 });
    try {
      await sleep(350); // idle: a few intervals without a block
      expect(lines).toEqual([]);
      const until = Date.now() + 600;
      while (Date.now() < until); // the loop blocked for 600 ms
      await sleep(250);
      const warned = lines.filter((l) => l.msg === 'event loop blocked: nothing was answered meanwhile');
      expect(warned.length).toBeGreaterThanOrEqual(1);
      expect(warned[0]).toMatchObject({ level: 'warn', thresholdMs: 250 });
      expect(Math.max(...warned.map((w) => w.maxMs as number))).toBeGreaterThanOrEqual(550);
    } finally {
      stop();
    }
  });
});
