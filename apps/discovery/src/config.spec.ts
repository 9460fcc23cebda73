import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config';

describe('discovery config', () => {
  it('has working defaults', () => {
    const cfg = loadConfig({});
    expect(cfg).toMatchObject({
      natsUrl: ['nats://127.0.0.1:4222'],
      redisUrl: 'redis://127.0.0.1:6379',
      replicas: 1,
      sweepIntervalMs: 1000,
    });
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it('names every bad key at once', () => {
    try {
      loadConfig({ NATS_URL: 'http://x', REDIS_URL: 'nope', NATS_REPLICAS: '7', DISCOVERY_SWEEP_INTERVAL: 'often', LOG_LEVEL: 'loud' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const msg = (e as Error).message;
      for (const key of ['NATS_URL', 'REDIS_URL', 'NATS_REPLICAS', 'DISCOVERY_SWEEP_INTERVAL', 'LOG_LEVEL']) expect(msg).toContain(key);
    }
  });
});
