import { describe, expect, it } from 'vitest';
import { MIN_NATS_SERVER_VERSION, natsServerTooOld } from './nats-server';

describe('natsServerTooOld', () => {
  it('names the version, the minimum and the failure for a server older than 2.10', () => {
    for (const v of ['2.9.10', '2.2.0', '1.4.1', 'v2.9.25']) {
      const why = natsServerTooOld(v);
      expect(why).toContain(`nats-server ${v} is older than ${MIN_NATS_SERVER_VERSION}`);
      expect(why).toMatch(/stream is deleted while a message is read/);
    }
  });

  it('accepts 2.10 and later, pre-releases of them, and says nothing about a version it cannot read', () => {
    for (const v of ['2.10.0', '2.10.27', '2.11.0-RC.1', '2.12.3', '3.0.0', undefined, '', 'unknown']) {
      expect(natsServerTooOld(v)).toBeUndefined();
    }
  });
});
