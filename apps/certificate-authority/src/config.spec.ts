import { describe, expect, it } from 'vitest';
import { loadConfig } from './config';

describe('certificate-authority config', () => {
  it('has safe defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      caDir: '.data/ca',
      trustDomain: 'novamesh.local',
      certTtlMs: 24 * 3_600_000,
      natsUrl: ['nats://127.0.0.1:4222'],
      metricsHost: '127.0.0.1',
      metricsPort: 9464,
      pruneIntervalMs: 3_600_000,
      expiredCertRetentionMs: 24 * 3_600_000,
    });
    expect(c.passphrase).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names every bad key at once and never echoes the passphrase', () => {
    let message = '';
    try {
      loadConfig({ CA_TRUST_DOMAIN: 'Not A Domain', CA_CERT_TTL: '5s', CA_PASSPHRASE: 'short', LOG_LEVEL: 'loud' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/CA_TRUST_DOMAIN="Not A Domain"/);
    expect(message).toMatch(/CA_CERT_TTL="5s" must be a duration from 1m/);
    expect(message).toMatch(/CA_PASSPHRASE is shorter than 8 characters/);
    expect(message).toMatch(/LOG_LEVEL="loud"/);
    expect(message).not.toContain('short"');
  });

  it('reads the pruning settings and refuses a non-duration', () => {
    expect(loadConfig({ CA_PRUNE_INTERVAL: '5s', CA_EXPIRED_CERT_RETENTION: '2h' })).toMatchObject({
      pruneIntervalMs: 5_000,
      expiredCertRetentionMs: 2 * 3_600_000,
    });
    expect(() => loadConfig({ CA_PRUNE_INTERVAL: '0', CA_EXPIRED_CERT_RETENTION: 'a day' })).toThrow(
      /CA_PRUNE_INTERVAL="0" is not a positive duration[\s\S]*CA_EXPIRED_CERT_RETENTION="a day"/,
    );
  });

  it('reads the metrics listener and refuses a bad port', () => {
    expect(loadConfig({ CA_METRICS_PORT: '0', CA_METRICS_HOST: '0.0.0.0' })).toMatchObject({ metricsHost: '0.0.0.0', metricsPort: 0 });
    expect(() => loadConfig({ CA_METRICS_PORT: '70000' })).toThrow(/CA_METRICS_PORT="70000" must be a port number/);
    expect(() => loadConfig({ CA_METRICS_PORT: 'http' })).toThrow(/CA_METRICS_PORT="http"/);
  });
});
