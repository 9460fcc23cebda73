import { PassThrough } from 'node:stream';
import { ErrorCode, MeshError, MeshValidationError } from '@novamesh/contracts';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { findingsTable } from './policy-analyze';
import {
  age,
  changedFields,
  describeDocumentError,
  documentRange,
  indent,
  kindArg,
  loadPolicyDocuments,
  parseKind,
  parsePolicyRef,
  refText,
  timestamp,
} from './policy-common';
import { describeText } from './policy-describe';
import { historySummaries, historyTable } from './policy-history';

const stdin = (text: string) => {
  const s = new PassThrough();
  s.end(text);
  return s;
};

describe('policy kinds and references', () => {
  it('accepts kinds in any case, plural, or by their short alias', () => {
    expect(parseKind('trafficpolicy')).toBe('TrafficPolicy');
    expect(parseKind('TrafficPolicy')).toBe('TrafficPolicy');
    expect(parseKind('trafficpolicies')).toBe('TrafficPolicy');
    expect(parseKind('RouteRules')).toBe('RouteRule');
    expect(parseKind('tp')).toBe('TrafficPolicy');
    expect(parseKind('rr')).toBe('RouteRule');
    expect(parseKind('rl')).toBe('RateLimitPolicy');
    expect(parseKind('AUTHZ')).toBe('AuthorizationPolicy');
    expect(parseKind('mtls')).toBe('MutualTLSPolicy');
    expect(parseKind('mutualtlspolicy')).toBe('MutualTLSPolicy');
    expect(parseKind('service')).toBeUndefined();
    expect(() => kindArg('pod')).toThrow(InvalidArgumentError);
    expect(() => kindArg('pod')).toThrow(/trafficpolicy\|routerule/);
  });

  it('parses KIND/NAME and KIND NAME, refusing anything else', () => {
    expect(parsePolicyRef('tp/payment-traffic')).toEqual({ kind: 'TrafficPolicy', name: 'payment-traffic' });
    expect(parsePolicyRef('RouteRule', 'canary')).toEqual({ kind: 'RouteRule', name: 'canary' });
    expect(() => parsePolicyRef('tp')).toThrow(/no policy name/);
    expect(() => parsePolicyRef('tp/')).toThrow(/no policy name/);
    expect(() => parsePolicyRef('tp/a', 'b')).toThrow(/either KIND\/NAME or KIND NAME/);
    expect(() => parsePolicyRef('pod/a')).toThrow(/"pod" is not a policy kind/);
    expect(refText({ kind: 'MutualTLSPolicy', name: 'mesh-strict' })).toBe('mutualtlspolicy/mesh-strict');
  });
});

describe('policy files', () => {
  it('reads every document of a multi-document YAML file from stdin, numbered from 1', async () => {
    const docs = await loadPolicyDocuments(
      '-',
      stdin('kind: TrafficPolicy\nname: a\nserviceName: payment\n---\nkind: RouteRule\nname: b\nserviceName: payment\n'),
    );
    expect(docs.map((d) => [d.number, d.value.kind, d.value.name])).toEqual([
      [1, 'TrafficPolicy', 'a'],
      [2, 'RouteRule', 'b'],
    ]);
  });

  it('skips empty documents, such as a trailing ---', async () => {
    const docs = await loadPolicyDocuments('-', stdin('---\n# payment\nkind: MutualTLSPolicy\nname: a\n---\n# nothing\n---\n'));
    expect(docs.map((d) => [d.number, d.value.name])).toEqual([[1, 'a']]);
    await expect(loadPolicyDocuments('-', stdin('---\n---\n# only comments\n'))).rejects.toThrow(/holds no policy documents/);
  });

  it('refuses the whole file when one document does not parse, naming it', async () => {
    const err = await loadPolicyDocuments('-', stdin('kind: TrafficPolicy\nname: a\n---\nkind: [unclosed\n')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshValidationError);
    expect((err as MeshError).issues.map((i) => i.path)).toEqual(['document 2']);
    const notMapping = await loadPolicyDocuments('-', stdin('- a\n- b\n')).catch((e: unknown) => e);
    expect((notMapping as MeshError).issues.map((i) => i.path)).toEqual(['document 1']);
  });

  it('refuses an empty file and a missing file', async () => {
    await expect(loadPolicyDocuments('-', stdin(''))).rejects.toThrow(/holds no policy documents/);
    await expect(loadPolicyDocuments('/no/such/file.yaml', stdin(''))).rejects.toThrow(/cannot read \/no\/such\/file\.yaml: no such file/);
  });

  it('describes a refused document by kind, name and number, then every issue', () => {
    const err = new MeshError(ErrorCode.invalid, 'invalid TrafficPolicy "x": loadBalancing.algorithm: unknown', {
      issues: [
        { path: 'loadBalancing.algorithm', message: 'unknown' },
        { path: 'timeout', message: 'must be a duration' },
      ],
    });
    expect(describeDocumentError({ number: 2, value: { kind: 'TrafficPolicy', name: 'x' } }, err)).toBe(
      'error: TrafficPolicy "x" (document 2): invalid\n  loadBalancing.algorithm: unknown\n  timeout: must be a duration\n',
    );
    expect(documentRange(3, 3)).toBe('document 3');
    expect(documentRange(3, 5)).toBe('documents 3-5');
  });
});

describe('policy output', () => {
  it('formats ages, timestamps and indented blocks', () => {
    const now = Date.parse('2025-01-31T12:00:00.000Z');
    expect(age('2025-01-31T11:59:15.000Z', now)).toBe('45s ago');
    expect(age('2025-01-31T11:55:00.000Z', now)).toBe('5m ago');
    expect(age('2025-01-31T09:00:00.000Z', now)).toBe('3h ago');
    expect(age('2025-01-29T12:00:00.000Z', now)).toBe('2d ago');
    expect(timestamp('2025-01-31T12:00:00.123Z')).toBe('2025-01-31T12:00:00Z');
    expect(indent('a: 1\nb: 2\n')).toBe('  a: 1\n  b: 2\n');
  });

  it('summarises each revision of a history', () => {
    const p = (over: Record<string, unknown>) => ({ kind: 'TrafficPolicy', name: 'x', serviceName: 'payment', ...over }) as never;
    const entries = [
      { revision: 3, operation: 'PUT', updatedAt: '2025-01-31T12:00:00.000Z', policy: p({ timeout: '1s' }) },
      { revision: 5, operation: 'PUT', updatedAt: '2025-01-31T12:01:00.000Z', policy: p({ timeout: '2s', description: 'slow' }) },
      { revision: 6, operation: 'PUT', updatedAt: '2025-01-31T12:02:00.000Z', policy: p({ timeout: '1s' }) },
      { revision: 7, operation: 'DEL', updatedAt: '2025-01-31T12:03:00.000Z' },
      { revision: 9, operation: 'PUT', updatedAt: '2025-01-31T12:04:00.000Z', policy: p({ timeout: '1s' }) },
    ];
    expect(historySummaries(entries)).toEqual([
      'created',
      'changed description, timeout',
      'changed description, timeout (same as revision 3)',
      'deleted',
      'created again',
    ]);
    const [header, ...rows] = historyTable(entries).trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['REVISION', 'OPERATION', 'UPDATED', 'SUMMARY']);
    expect(rows[0]).toMatch(/^3\s+applied\s+2025-01-31T12:00:00Z\s+created$/);
    expect(rows[3]).toMatch(/^7\s+deleted\s+2025-01-31T12:03:00Z\s+deleted$/);
    expect(changedFields({ kind: 'A', a: { x: 1, y: 2 } }, { kind: 'B', a: { y: 2, x: 1 } })).toEqual([]);
  });

  it('lists findings with the path in the message', () => {
    expect(
      findingsTable([
        { level: 'error', code: 'MultipleTrafficPolicies', policy: 'TrafficPolicy.a', path: 'serviceName', message: 'a and b target x' },
        { level: 'warning', code: 'ServiceNotRegistered', policy: 'weird-key', message: 'ghost is not registered' },
        { level: 'info', code: 'Note', message: 'mesh-wide' },
      ]),
    ).toBe(
      'LEVEL     CODE                      POLICY            MESSAGE\n' +
        'error     MultipleTrafficPolicies   trafficpolicy/a   serviceName: a and b target x\n' +
        'warning   ServiceNotRegistered      weird-key         ghost is not registered\n' +
        'info      Note                      -                 mesh-wide\n',
    );
  });

  it('describes a stored policy and summarises the effective policy of its service', () => {
    const policy = { kind: 'MutualTLSPolicy', name: 'payment-mtls', serviceName: 'payment', mode: 'strict' } as const;
    const text = describeText({
      stored: { policy, revision: 7, updatedAt: '2025-01-31T12:00:00.123Z' },
      effective: {
        payment: {
          service: 'payment',
          revision: 9,
          traffic: null,
          routes: [],
          rateLimits: [],
          authorization: { defaultAction: 'ALLOW', policies: [] },
          mtls: { mode: 'strict', source: 'MutualTLSPolicy.payment-mtls' },
          sources: [{ kind: 'MutualTLSPolicy', name: 'payment-mtls', revision: 7 }],
          updatedAt: '2025-01-31T12:00:01.000Z',
        },
      },
    });
    expect(text).toBe(
      [
        'Kind:      MutualTLSPolicy',
        'Name:      payment-mtls',
        'Service:   payment',
        'Revision:  7',
        'Updated:   2025-01-31T12:00:00Z',
        'Policy:',
        '  kind: MutualTLSPolicy',
        '  name: payment-mtls',
        '  serviceName: payment',
        '  mode: strict',
        'Effective policy of payment (revision 9, updated 2025-01-31T12:00:01Z):',
        '  Sources:        mutualtlspolicy/payment-mtls (revision 7)',
        '  Traffic:        none',
        '  Routes:         none',
        '  Rate limits:    none',
        '  Authorization:  default ALLOW; policies: none',
        '  mTLS:           strict (from MutualTLSPolicy.payment-mtls)',
        '',
      ].join('\n'),
    );
  });
});
