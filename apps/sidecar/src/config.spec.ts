import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config';

const required = { SIDECAR_SERVICE: 'orders', SIDECAR_APP_PORT: '8080' };

/** The ConfigError message loadConfig throws for `env` (fails when it does not throw one). */
function problems(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  return expect.unreachable('loadConfig accepted a bad environment');
}

describe('sidecar config', () => {
  it('has working defaults', () => {
    const cfg = loadConfig(required);
    expect(cfg).toMatchObject({
      service: 'orders',
      appPort: 8080,
      fastPath: true,
      inboundFastPath: true,
      headersTimeoutMs: 60_000,
      listenerFiltersTimeoutMs: 15_000,
      idleTimeoutMs: 65_000,
      tunnelIdleTimeoutMs: 3_600_000,
      rateLimitTimeoutMs: 100,
    });
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it('reads how long a global rate-limit decision waits for Redis, and refuses what is not a duration', () => {
    expect(loadConfig({ ...required, SIDECAR_RATE_LIMIT_TIMEOUT: '1s' }).rateLimitTimeoutMs).toBe(1_000);
    expect(problems({ ...required, SIDECAR_RATE_LIMIT_TIMEOUT: 'soon' })).toMatch(/SIDECAR_RATE_LIMIT_TIMEOUT/);
  });

  it("reads NATS_URL and LOG_LEVEL, and leaves the control plane's other settings alone (an inherited NATS_REPLICAS cannot stop it)", () => {
    const cfg = loadConfig({
      ...required,
      NATS_URL: 'nats://10.0.0.1:4222,nats://10.0.0.2:4222',
      LOG_LEVEL: 'debug',
      NATS_REPLICAS: '7',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url',
      SIDECAR_INSTANCE: 'x',
    });
    expect(cfg).toMatchObject({ natsUrl: ['nats://10.0.0.1:4222', 'nats://10.0.0.2:4222'], logLevel: 'debug' });
    expect(cfg).not.toHaveProperty('replicas');
    expect(problems({ ...required, LOG_LEVEL: 'loud' })).toContain('LOG_LEVEL="loud" must be one of');
    expect(problems({ ...required, NATS_URL: 'http://x' })).toContain('NATS_URL');
  });

  it('refuses one port for two listeners, defaults included, naming both variables', () => {
    expect(problems({ ...required, SIDECAR_APP_PORT: '15001' })).toContain(
      'SIDECAR_OUTBOUND_PORT and SIDECAR_APP_PORT are both 15001 on 127.0.0.1: each listener needs a port of its own',
    );
    expect(problems({ ...required, SIDECAR_UPSTREAM_PORTS: 'cart=15000' })).toContain(
      'SIDECAR_ADMIN_PORT and SIDECAR_UPSTREAM_PORTS (cart) are both 15000 on 127.0.0.1',
    );
    expect(problems({ ...required, SIDECAR_INBOUND_PORT: '9000', SIDECAR_ADMIN_PORT: '9000' })).toContain(
      'SIDECAR_INBOUND_PORT and SIDECAR_ADMIN_PORT are both 9000 on 127.0.0.1',
    );
    // 0 is any free port; a workload on another host may use the same number.
    expect(() => loadConfig({ ...required, SIDECAR_OUTBOUND_PORT: '0', SIDECAR_ADMIN_PORT: '0', SIDECAR_INBOUND_PORT: '0' })).not.toThrow();
    expect(() => loadConfig({ ...required, SIDECAR_APP_PORT: '15001', SIDECAR_APP_HOST: '10.0.0.7' })).not.toThrow();
    // The inbound port on the pod address, the workload on loopback: the same number, no clash…
    expect(() => loadConfig({ ...required, SIDECAR_BIND_HOST: '10.0.0.5', SIDECAR_INBOUND_PORT: '8080' })).not.toThrow();
    // …but a wildcard bind takes loopback's port too.
    expect(problems({ ...required, SIDECAR_BIND_HOST: '0.0.0.0', SIDECAR_INBOUND_PORT: '8080' })).toContain(
      'SIDECAR_INBOUND_PORT and SIDECAR_APP_PORT are both 8080 on 127.0.0.1',
    );
  });

  it('refuses the endpoint labels it sets itself, saying what sets them', () => {
    const text = problems({ ...required, SIDECAR_LABELS: 'version=v1,novamesh.io/namespace=a,novamesh.io/sidecar=x' });
    expect(text).toContain('"novamesh.io/namespace=a" is set by the sidecar itself (use SIDECAR_NAMESPACE)');
    expect(text).toContain('"novamesh.io/sidecar=x" is set by the sidecar itself (to SIDECAR_ID)');
    // The zone label is the sidecar's only with SIDECAR_ZONE; without it, a label may still carry the zone.
    expect(problems({ ...required, SIDECAR_ZONE: 'b', SIDECAR_LABELS: 'novamesh.io/zone=a' })).toContain(
      '"novamesh.io/zone=a" is set by the sidecar itself (from SIDECAR_ZONE, which is set)',
    );
    expect(loadConfig({ ...required, SIDECAR_LABELS: 'version=v1,novamesh.io/zone=a' }).labels).toEqual({
      version: 'v1',
      'novamesh.io/zone': 'a',
    });
  });

  it('keeps its data under a directory a restart finds again: per user, service and app port, not per process', () => {
    const cfg = loadConfig(required);
    expect(cfg.sidecarId).toContain(String(process.pid));
    expect(cfg.dataDir).toMatch(new RegExp(`novamesh-sidecar-${process.getuid?.() ?? 'user'}[/\\\\]orders-8080$`));
    expect(loadConfig({ ...required, SIDECAR_APP_PORT: '8081' }).dataDir).toMatch(/orders-8081$/);
    expect(loadConfig({ ...required, SIDECAR_DATA_DIR: '/srv/sc' }).dataDir).toBe('/srv/sc');
  });

  it('names every bad key at once', () => {
    const msg = problems({ SIDECAR_APP_PORT: '0', SIDECAR_FAST_PATH: 'yes', SIDECAR_HEADERS_TIMEOUT: 'soon', SIDECAR_DRAIN: '-1s' });
    for (const key of ['SIDECAR_SERVICE', 'SIDECAR_APP_PORT', 'SIDECAR_FAST_PATH', 'SIDECAR_HEADERS_TIMEOUT', 'SIDECAR_DRAIN'])
      expect(msg).toContain(key);
  });

  describe('SIDECAR_HEADERS_TIMEOUT', () => {
    it.each([
      ['1s', 1_000],
      ['250ms', 250],
      ['1.5s', 1_500],
      ['2m', 120_000],
      ['1h', 3_600_000],
      ['24h', 86_400_000],
      ['5000', 5_000],
      [' 3s ', 3_000],
      ['', 60_000], // empty: the default
    ])('parses %j', (value, ms) => {
      expect(loadConfig({ ...required, SIDECAR_HEADERS_TIMEOUT: value }).headersTimeoutMs).toBe(ms);
    });

    it.each(['0', '0s', '0.1ms', '-1s', 'soon', '10 s', '5sec', '1d', '1e3'])('refuses %j as not a positive duration', (value) => {
      const msg = problems({ ...required, SIDECAR_HEADERS_TIMEOUT: value });
      expect(msg).toContain(`SIDECAR_HEADERS_TIMEOUT="${value}" is not a positive duration`);
    });

    it('refuses more than 24h (beyond what a timer can hold, it would fire at once)', () => {
      expect(problems({ ...required, SIDECAR_HEADERS_TIMEOUT: '25h' })).toContain('SIDECAR_HEADERS_TIMEOUT="25h" must be at most 24h');
      expect(problems({ ...required, SIDECAR_HEADERS_TIMEOUT: '86400001' })).toContain(
        'SIDECAR_HEADERS_TIMEOUT="86400001" must be at most 24h',
      );
    });

    it('is reported together with the other bad keys', () => {
      const msg = problems({ ...required, SIDECAR_HEADERS_TIMEOUT: '0', SIDECAR_ACCESS_LOG: 'loud' });
      expect(msg).toContain('SIDECAR_HEADERS_TIMEOUT');
      expect(msg).toContain('SIDECAR_ACCESS_LOG');
    });
  });

  describe('SIDECAR_LISTENER_FILTERS_TIMEOUT', () => {
    it.each([
      ['300ms', 300],
      ['5s', 5_000],
      ['24h', 86_400_000],
      ['', 15_000], // empty: the default (Envoy's listener_filters_timeout)
    ])('parses %j', (value, ms) => {
      expect(loadConfig({ ...required, SIDECAR_LISTENER_FILTERS_TIMEOUT: value }).listenerFiltersTimeoutMs).toBe(ms);
    });

    it('is independent of SIDECAR_HEADERS_TIMEOUT', () => {
      const cfg = loadConfig({ ...required, SIDECAR_HEADERS_TIMEOUT: '2s', SIDECAR_LISTENER_FILTERS_TIMEOUT: '1s' });
      expect(cfg).toMatchObject({ headersTimeoutMs: 2_000, listenerFiltersTimeoutMs: 1_000 });
    });

    it.each(['0', '0s', '-1s', 'never', '15 s'])('refuses %j as not a positive duration', (value) => {
      const msg = problems({ ...required, SIDECAR_LISTENER_FILTERS_TIMEOUT: value });
      expect(msg).toContain(`SIDECAR_LISTENER_FILTERS_TIMEOUT="${value}" is not a positive duration`);
    });

    it('refuses more than 24h', () => {
      expect(problems({ ...required, SIDECAR_LISTENER_FILTERS_TIMEOUT: '25h' })).toContain(
        'SIDECAR_LISTENER_FILTERS_TIMEOUT="25h" must be at most 24h',
      );
    });
  });

  describe('SIDECAR_IDLE_TIMEOUT', () => {
    it.each([
      ['500ms', 500],
      ['2s', 2_000],
      ['10m', 600_000],
      ['24h', 86_400_000],
      ['', 65_000], // empty: the default (the HTTP/1.1 keep-alive the listeners had before the setting)
    ])('parses %j', (value, ms) => {
      expect(loadConfig({ ...required, SIDECAR_IDLE_TIMEOUT: value }).idleTimeoutMs).toBe(ms);
    });

    it('is independent of the other listener timeouts', () => {
      const cfg = loadConfig({ ...required, SIDECAR_IDLE_TIMEOUT: '30s', SIDECAR_HEADERS_TIMEOUT: '2s' });
      expect(cfg).toMatchObject({ idleTimeoutMs: 30_000, headersTimeoutMs: 2_000, listenerFiltersTimeoutMs: 15_000 });
    });

    it.each(['0', '0s', '-1s', 'never', 'off', '65 s'])('refuses %j as not a positive duration (there is no "no limit")', (value) => {
      const msg = problems({ ...required, SIDECAR_IDLE_TIMEOUT: value });
      expect(msg).toContain(`SIDECAR_IDLE_TIMEOUT="${value}" is not a positive duration`);
    });

    it('refuses more than 24h', () => {
      expect(problems({ ...required, SIDECAR_IDLE_TIMEOUT: '25h' })).toContain('SIDECAR_IDLE_TIMEOUT="25h" must be at most 24h');
    });
  });

  describe('SIDECAR_TUNNEL_IDLE_TIMEOUT', () => {
    it("sets the WebSocket tunnels' idle timeout apart from the connections' one", () => {
      const cfg = loadConfig({ ...required, SIDECAR_TUNNEL_IDLE_TIMEOUT: '10m' });
      expect(cfg).toMatchObject({ tunnelIdleTimeoutMs: 600_000, idleTimeoutMs: 65_000 });
    });

    it.each(['0', 'never', '25h'])('refuses %j with the variable named', (value) => {
      expect(problems({ ...required, SIDECAR_TUNNEL_IDLE_TIMEOUT: value })).toContain(`SIDECAR_TUNNEL_IDLE_TIMEOUT="${value}"`);
    });
  });

  it.each([
    ['0.0.0.0', 'is the unspecified address'],
    ['::', 'is the unspecified address'],
    ['239.1.2.3', 'is a multicast address'],
    ['not an address!', 'must be an IPv4/IPv6 address or a DNS name'],
  ])('refuses SIDECAR_ADDRESS=%j, which no caller can reach', (value, why) => {
    expect(problems({ ...required, SIDECAR_ADDRESS: value })).toContain(`SIDECAR_ADDRESS="${value}"`);
    expect(problems({ ...required, SIDECAR_ADDRESS: value })).toContain(why);
  });
});
