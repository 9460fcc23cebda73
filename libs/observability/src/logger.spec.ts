import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()));
      cb();
    },
  });
  return { lines, destination };
}

describe('createLogger', () => {
  it('writes JSON lines with service and instance, and redacts secrets wherever they sit', async () => {
    const { lines, destination } = capture();
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
