import { describe, expect, it } from 'vitest';
import { ConfigError, EnvReader } from './index';

describe('EnvReader', () => {
  it('reads the common settings with defaults', () => {
    const r = new EnvReader({ X_INSTANCE: 'x1' });
    expect(r.done(r.common('X_INSTANCE'))).toEqual({ natsUrl: ['nats://127.0.0.1:4222'], instance: 'x1', logLevel: 'info', replicas: 1 });
  });

  it('collects every problem into one error', () => {
    const r = new EnvReader({
      NATS_URL: 'http://a',
      NATS_REPLICAS: '9',
      LOG_LEVEL: 'loud',
      T: 'soon',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x',
    });
    r.common('I');
    r.duration('T', '1s');
    try {
      r.done({});
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      for (const key of ['NATS_URL', 'NATS_REPLICAS', 'LOG_LEVEL', 'T=', 'OTEL_EXPORTER_OTLP_ENDPOINT'])
        expect((e as Error).message).toContain(key);
    }
  });
});
