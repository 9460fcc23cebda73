import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  checkPorts,
  collectLabels,
  collectUpstreamPorts,
  FlagError,
  flagPorts,
  portArg,
  sidecarEnv,
  tokenFromFlags,
} from './sidecar-flags';

describe('sidecar flags', () => {
  it('turns flags into exactly the SIDECAR_* variables the sidecar reads', () => {
    const env = sidecarEnv(
      {
        service: 'web',
        namespace: 'shop',
        id: 'web-1',
        inboundPort: 0,
        outboundPort: 15001,
        adminPort: 15000,
        address: '10.0.0.7',
        upstreams: ['orders', 'payment'],
        upstreamPort: { orders: 9001, payment: 9002 },
        labels: { version: 'v2', 'topology.kubernetes.io/zone': 'a' },
        zone: 'eu-west-1a',
        weight: 3,
        dataDir: '/var/lib/web',
        accessLog: 'all',
        logLevel: 'warn',
      },
      { natsUrl: 'nats://a:4222,nats://b:4222', appPort: 8080, token: 's3cret' },
    );
    expect(env).toEqual({
      NATS_URL: 'nats://a:4222,nats://b:4222',
      SIDECAR_SERVICE: 'web',
      SIDECAR_APP_PORT: '8080',
      SIDECAR_NAMESPACE: 'shop',
      SIDECAR_ID: 'web-1',
      SIDECAR_INBOUND_PORT: '0',
      SIDECAR_OUTBOUND_PORT: '15001',
      SIDECAR_ADMIN_PORT: '15000',
      SIDECAR_ADDRESS: '10.0.0.7',
      SIDECAR_UPSTREAMS: 'orders,payment',
      SIDECAR_UPSTREAM_PORTS: 'orders=9001,payment=9002',
      SIDECAR_LABELS: 'version=v2,topology.kubernetes.io/zone=a',
      SIDECAR_ZONE: 'eu-west-1a',
      SIDECAR_WEIGHT: '3',
      SIDECAR_JOIN_TOKEN: 's3cret',
      SIDECAR_DATA_DIR: '/var/lib/web',
      SIDECAR_ACCESS_LOG: 'all',
      LOG_LEVEL: 'warn',
    });
  });

  it('sets nothing for flags that were not given, so the inherited environment (or the default) applies', () => {
    expect(sidecarEnv({ service: 'web' }, { natsUrl: 'nats://n:4222', appPort: 3000 })).toEqual({
      NATS_URL: 'nats://n:4222',
      SIDECAR_SERVICE: 'web',
      SIDECAR_APP_PORT: '3000',
    });
  });

  it('parses repeatable key=value flags and refuses malformed parts', () => {
    expect(collectUpstreamPorts('payment=9002', collectUpstreamPorts('orders=9001', undefined))).toEqual({ orders: 9001, payment: 9002 });
    expect(collectLabels('zone=a', collectLabels('version=v2,tier=gold', undefined))).toEqual({ version: 'v2', tier: 'gold', zone: 'a' });
    expect(() => collectUpstreamPorts('orders', undefined)).toThrow(InvalidArgumentError);
    expect(() => collectUpstreamPorts('Orders=9001', undefined)).toThrow('"Orders" is not a service name');
    expect(() => collectUpstreamPorts('orders=0', undefined)).toThrow('needs a port from 1 to 65535');
    expect(() => collectLabels('=v2', undefined)).toThrow('is not key=value');
    expect(() => collectLabels('-bad=v2', undefined)).toThrow('is not a label key');
    for (const key of ['novamesh.io/sidecar', 'novamesh.io/namespace'])
      expect(() => collectLabels(`version=v2,${key}=x`, undefined)).toThrow(`"${key}" is set by the sidecar itself`);
  });

  it('accepts 0 only where the sidecar may pick any free port', () => {
    expect(portArg(0)('0')).toBe(0);
    expect(() => portArg(1)('0')).toThrow('must be a port from 1 to 65535');
    for (const bad of ['', 'x', '1.5', '65536', '-1']) expect(() => portArg(0)(bad)).toThrow(InvalidArgumentError);
  });

  it('refuses one port for two listeners, naming both flags', () => {
    expect(() => checkPorts(flagPorts({ service: 'web', appPort: 8080, upstreamPort: { orders: 8080 } }))).toThrow(
      new FlagError('--app-port 8080 and --upstream-port orders=8080 use the same port: each listener needs its own'),
    );
    expect(() => checkPorts(flagPorts({ service: 'web', appPort: 8080, inboundPort: 0, outboundPort: 0, adminPort: 0 }))).not.toThrow();
  });

  it('reads the token from --token-file, trimmed, and says what is wrong with the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-token-'));
    writeFileSync(join(dir, 'token'), '  tok-123\n');
    writeFileSync(join(dir, 'empty'), '\n');
    expect(tokenFromFlags({ service: 'web', tokenFile: join(dir, 'token') })).toBe('tok-123');
    expect(tokenFromFlags({ service: 'web', token: 'direct' })).toBe('direct');
    expect(tokenFromFlags({ service: 'web' })).toBeUndefined();
    expect(() => tokenFromFlags({ service: 'web', tokenFile: join(dir, 'empty') })).toThrow('the file is empty');
    expect(() => tokenFromFlags({ service: 'web', tokenFile: join(dir, 'missing') })).toThrow(/--token-file .*missing: no such file/);
  });
});
