import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as contracts from '../index';
import {
  EffectivePolicyV1,
  POLICY_KINDS,
  PolicyAnalyzeRequestV1,
  PolicyApplyRequestV1,
  PolicyDeleteRequestV1,
  PolicyListRequestV1,
  PolicyRollbackRequestV1,
  PolicySchema,
} from './index';
import { normalizeSeedKey } from './seed';

describe('policy schemas', () => {
  it('are exported from @novamesh/contracts', () => {
    for (const name of [
      'POLICY_KINDS',
      'PolicySchema',
      'TrafficPolicySchema',
      'RouteRuleSchema',
      'RateLimitPolicySchema',
      'AuthorizationPolicySchema',
      'MutualTLSPolicySchema',
      'EffectivePolicyV1',
      'PolicyApplyRequestV1',
      'PolicyDeleteRequestV1',
      'PolicyGetRequestV1',
      'PolicyListRequestV1',
      'PolicyHistoryRequestV1',
      'PolicyRollbackRequestV1',
      'PolicyAnalyzeRequestV1',
    ])
      expect(contracts, name).toHaveProperty(name);
    expect(POLICY_KINDS).toEqual(['TrafficPolicy', 'RouteRule', 'RateLimitPolicy', 'AuthorizationPolicy', 'MutualTLSPolicy']);
  });

  it('render to JSON Schema (typed form of the input), for the AsyncAPI document', () => {
    const json = z.toJSONSchema(PolicySchema, { io: 'input', unrepresentable: 'any' }) as { oneOf?: unknown[]; anyOf?: unknown[] };
    expect((json.oneOf ?? json.anyOf)?.length).toBe(5);
    const text = JSON.stringify(json);
    expect(text).toContain('"maxConnections"');
    expect(text).toContain('"ring-hash"');
    expect(() => z.toJSONSchema(EffectivePolicyV1, { io: 'input', unrepresentable: 'any' })).not.toThrow();
  });

  it('accept the seed string-map form of a TrafficPolicy and normalize it', () => {
    expect(
      PolicySchema.parse({
        kind: 'TrafficPolicy',
        name: 'orders',
        serviceName: 'orders',
        loadBalancing: 'round_robin',
        circuitBreaking: { max_connections: '100' },
        timeouts: { connect_timeout: '5s' },
        retries: { attempts: '2', retry_on: 'connect-failure, reset' },
      }),
    ).toEqual({
      kind: 'TrafficPolicy',
      name: 'orders',
      serviceName: 'orders',
      loadBalancing: { algorithm: 'round-robin' },
      circuitBreaking: { maxConnections: 100 },
      timeouts: { connect: 5000 },
      retries: { attempts: 2, retryOn: ['connect-failure', 'reset'] },
    });
    expect(normalizeSeedKey('max_pending_requests')).toBe('maxPendingRequests');
    expect(normalizeSeedKey('request_timeout')).toBe('request');
    expect(normalizeSeedKey('consecutive_5xx')).toBe('consecutive5xx');
  });

  it('keep a seed key as written when its typed name is also given, so the conflict is reported', () => {
    const r = PolicySchema.safeParse({
      kind: 'TrafficPolicy',
      name: 'orders',
      serviceName: 'orders',
      circuitBreaking: { max_connections: '100', maxConnections: 200 },
    });
    expect(r.success).toBe(false);
    expect(r.error?.issues).toMatchObject([{ code: 'unrecognized_keys', keys: ['max_connections'], path: ['circuitBreaking'] }]);
  });
});

describe('policy command requests', () => {
  it('apply: dryRun defaults to false; expectedRevision 0 means "must not exist"', () => {
    expect(PolicyApplyRequestV1.parse({ policy: { kind: 'RouteRule' } })).toEqual({ policy: { kind: 'RouteRule' }, dryRun: false });
    expect(PolicyApplyRequestV1.parse({ policy: {}, expectedRevision: 0 }).expectedRevision).toBe(0);
    expect(PolicyApplyRequestV1.safeParse({ policy: {}, expectedRevision: -1 }).success).toBe(false);
    expect(PolicyApplyRequestV1.safeParse({ policy: {}, extra: 1 }).success).toBe(false);
  });

  it('delete/get/rollback take a kind and a policy name', () => {
    expect(PolicyDeleteRequestV1.parse({ kind: 'RouteRule', name: 'r', expectedRevision: 4 })).toEqual({
      kind: 'RouteRule',
      name: 'r',
      expectedRevision: 4,
    });
    expect(PolicyDeleteRequestV1.safeParse({ kind: 'Route', name: 'r' }).success).toBe(false);
    expect(PolicyRollbackRequestV1.safeParse({ kind: 'RouteRule', name: 'r', toRevision: 0 }).success).toBe(false);
    expect(PolicyListRequestV1.parse({ serviceName: '*' })).toEqual({ serviceName: '*' });
    expect(PolicyAnalyzeRequestV1.parse({})).toEqual({});
  });
});
