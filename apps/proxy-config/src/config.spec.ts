import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config';

describe('proxy-config config', () => {
  it('defaults to a 10 ms debounce bounded by 100 ms, 128 publishes in flight, stale after 30 s, streams rechecked every 10 s', () => {
    expect(loadConfig({ PROXY_CONFIG_INSTANCE: 'pc1' })).toMatchObject({
      instance: 'pc1',
      debounceMs: 10,
      maxDelayMs: 100,
      maxInFlight: 128,
      staleAfterMs: 30_000,
      streamRecheckMs: 10_000,
    });
  });

  it('takes durations with units or plain milliseconds', () => {
    const c = loadConfig({
      PROXY_CONFIG_DEBOUNCE_MS: '25',
      PROXY_CONFIG_MAX_DELAY_MS: '1s',
      PROXY_CONFIG_STALE_AFTER: '1500ms',
      PROXY_CONFIG_STREAM_RECHECK: '300ms',
    });
    expect([c.debounceMs, c.maxDelayMs, c.staleAfterMs, c.streamRecheckMs]).toEqual([25, 1_000, 1_500, 300]);
  });

  it('names every bad key at once', () => {
    const bad = () =>
      loadConfig({
        PROXY_CONFIG_DEBOUNCE_MS: '200ms',
        PROXY_CONFIG_MAX_DELAY_MS: '50ms',
        PROXY_CONFIG_MAX_IN_FLIGHT: '0',
        PROXY_CONFIG_STREAM_RECHECK: 'soon',
        NATS_URL: 'http://x',
      });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(
      /PROXY_CONFIG_MAX_DELAY_MS.*\n.*PROXY_CONFIG_MAX_IN_FLIGHT|PROXY_CONFIG_MAX_IN_FLIGHT[\s\S]*PROXY_CONFIG_MAX_DELAY_MS/,
    );
    expect(bad).toThrow(/NATS_URL/);
    expect(bad).toThrow(/PROXY_CONFIG_STREAM_RECHECK/);
  });
});
