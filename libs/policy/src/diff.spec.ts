import { describe, expect, it } from 'vitest';
import { diffPolicies } from './diff';

const base = { kind: 'MutualTLSPolicy', name: 'mesh', serviceName: '*', mode: 'strict' };

describe('diffPolicies', () => {
  it('is empty for equal values, whatever their key order', () => {
    expect(diffPolicies(base, { ...base })).toBe('');
    expect(diffPolicies({ mode: 'strict', serviceName: '*', name: 'mesh', kind: 'MutualTLSPolicy' }, base)).toBe('');
  });

  it('shows a changed line as removed then added, with the rest as context', () => {
    expect(diffPolicies(base, { ...base, mode: 'permissive' })).toBe(
      ['  kind: MutualTLSPolicy', '  name: mesh', '  serviceName: "*"', '- mode: strict', '+ mode: permissive', ''].join('\n'),
    );
  });

  it('shows a new policy as all added and a deleted one as all removed', () => {
    expect(diffPolicies(undefined, base)).toBe(
      ['+ kind: MutualTLSPolicy', '+ name: mesh', '+ serviceName: "*"', '+ mode: strict', ''].join('\n'),
    );
    expect(diffPolicies(base, null)).toBe(
      ['- kind: MutualTLSPolicy', '- name: mesh', '- serviceName: "*"', '- mode: strict', ''].join('\n'),
    );
  });

  it('diffs nested lists line by line', () => {
    const before = { kind: 'RouteRule', name: 'r', routes: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] };
    const after = { kind: 'RouteRule', name: 'r', routes: [{ name: 'a' }, { name: 'c' }, { name: 'd' }] };
    expect(diffPolicies(before, after)).toBe(
      ['  kind: RouteRule', '  name: r', '  routes:', '    - name: a', '-   - name: b', '    - name: c', '+   - name: d', ''].join('\n'),
    );
  });
});
