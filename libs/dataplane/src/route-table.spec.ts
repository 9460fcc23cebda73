import { MeshValidationError, SnapshotRouteV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { applyHeaderOps, compileHeaderOps } from './header-ops';
import type { RequestView } from './request-view';
import { compileUpstreamRoutes } from './route-table';

const route = (r: Record<string, unknown>) => SnapshotRouteV1.parse({ rule: 'reviews', ...r });
const table = (...routes: Record<string, unknown>[]) => compileUpstreamRoutes({ routes: routes.map(route) });
const req = (path: string, over: Partial<RequestView> = {}): RequestView => ({ method: 'GET', path, query: '', headers: {}, ...over });

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
}

describe('compileUpstreamRoutes: matching', () => {
  it('matches paths exactly, by prefix, and by regex anchored to the whole path', () => {
    const t = table(
      { name: 'exact', match: { path: { exact: '/health' } } },
      { name: 'prefix', match: { path: { prefix: '/api/' } } },
      { name: 'regex', match: { path: { regex: '/users/[0-9]+' } } },
    );
    expect(t.match(req('/health'))?.name).toBe('exact');
    expect(t.match(req('/health/x'))).toBeUndefined();
    expect(t.match(req('/api/v1/items'))?.name).toBe('prefix');
    expect(t.match(req('/api'))).toBeUndefined();
    expect(t.match(req('/users/42'))?.name).toBe('regex');
    expect(t.match(req('/users/42/orders'))).toBeUndefined(); // anchored at the end
    expect(t.match(req('/v2/users/42'))).toBeUndefined(); // and at the start
  });

  it('matches methods', () => {
    const t = table({ name: 'writes', match: { methods: ['POST', 'PUT'] } });
    expect(t.match(req('/', { method: 'PUT' }))?.name).toBe('writes');
    expect(t.match(req('/', { method: 'GET' }))).toBeUndefined();
  });

  it('matches headers by exact, prefix, regex and presence, case-insensitively by name', () => {
    const t = table(
      { name: 'exact', match: { headers: { 'X-Env': { exact: 'canary' } } } },
      { name: 'prefix', match: { headers: { 'user-agent': { prefix: 'curl/' } } } },
      { name: 'regex', match: { headers: { 'x-tenant': { regex: 't-[a-z]{3}' } } } },
      { name: 'absent', match: { headers: { 'x-debug': { present: false }, 'x-b': { present: true } } } },
    );
    expect(t.match(req('/', { headers: { 'x-env': 'canary' } }))?.name).toBe('exact');
    expect(t.match(req('/', { headers: { 'x-env': 'canary-2' } }))).toBeUndefined();
    expect(t.match(req('/', { headers: { 'user-agent': 'curl/8.1' } }))?.name).toBe('prefix');
    expect(t.match(req('/', { headers: { 'x-tenant': 't-abc' } }))?.name).toBe('regex');
    expect(t.match(req('/', { headers: { 'x-tenant': 't-abcd' } }))).toBeUndefined();
    expect(t.match(req('/', { headers: { 'x-b': '1' } }))?.name).toBe('absent');
    expect(t.match(req('/', { headers: { 'x-b': '1', 'x-debug': '1' } }))).toBeUndefined();
  });

  it('joins a repeated header with ", " before matching it', () => {
    const t = table({ name: 'both', match: { headers: { 'x-flag': { exact: 'a, b' } } } });
    expect(t.match(req('/', { headers: { 'x-flag': ['a', 'b'] } }))?.name).toBe('both');
  });

  it('matches decoded query parameters', () => {
    const t = table(
      { name: 'q', match: { queryParams: { name: { exact: 'Jürgen M' }, debug: { present: true } } } },
      { name: 'r', match: { queryParams: { id: { regex: '[0-9]+' } } } },
    );
    expect(t.match(req('/', { query: 'name=J%C3%BCrgen+M&debug' }))?.name).toBe('q');
    expect(t.match(req('/', { query: 'name=J%C3%BCrgen+M' }))).toBeUndefined();
    expect(t.match(req('/', { query: 'id=123' }))?.name).toBe('r');
    expect(t.match(req('/', { query: 'id=12a' }))).toBeUndefined();
    expect(t.match(req('/', { query: 'id=%ZZ' }))).toBeUndefined(); // malformed escapes do not throw
  });

  it('requires every condition and takes the first route that holds, rule by rule', () => {
    const t = compileUpstreamRoutes({
      routes: [
        route({ rule: 'a-canary', match: { path: { prefix: '/api/' }, headers: { 'x-canary': { exact: '1' } } } }),
        route({ rule: 'a-canary', match: { path: { prefix: '/api/' } } }),
        route({ rule: 'b-default', name: 'catch-all' }),
      ],
    });
    expect(t.match(req('/api/x', { headers: { 'x-canary': '1' } }))?.name).toBe('a-canary[0]');
    expect(t.match(req('/api/x'))?.name).toBe('a-canary[1]');
    expect(t.match(req('/other'))).toMatchObject({ name: 'catch-all', rule: 'b-default' });
    expect(table({ match: { path: { exact: '/only' } } }).match(req('/else'))).toBeUndefined();
  });

  it('refuses a regex that does not compile, saying where', () => {
    const bad = { ...route({}), match: { path: { regex: '(' } } } as SnapshotRouteV1;
    expect(() => compileUpstreamRoutes({ routes: [route({}), bad] })).toThrow(MeshValidationError);
    expect(() => compileUpstreamRoutes({ routes: [route({}), bad] })).toThrow(/routes\[1\]\.match\.path\.regex/);
  });
});

describe('compileUpstreamRoutes: what a matched route does', () => {
  it('splits by whole percents (± 2 % over 10,000 picks); no split means every endpoint', () => {
    const t = table({
      split: [
        { subset: 'v1', weight: 80 },
        { subset: 'v2', weight: 15 },
        { subset: 'v3', weight: 5 },
        { subset: 'v4', weight: 0 },
      ],
    });
    const m = t.match(req('/'));
    const random = seeded(3);
    const counts = new Map<string | undefined, number>();
    for (let i = 0; i < 10_000; i++) {
      const s = m?.pickSubset(random);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    expect(Math.abs((counts.get('v1') ?? 0) - 8000)).toBeLessThan(200);
    expect(Math.abs((counts.get('v2') ?? 0) - 1500)).toBeLessThan(200);
    expect(Math.abs((counts.get('v3') ?? 0) - 500)).toBeLessThan(200);
    expect(counts.has('v4')).toBe(false);
    expect(
      table({ split: [{ subset: 'v2' }] })
        .match(req('/'))
        ?.pickSubset(),
    ).toBe('v2');
    expect(table({}).match(req('/'))?.pickSubset()).toBeUndefined();
  });

  it('rewrites an exact path or the matched prefix', () => {
    expect(
      table({ match: { path: { exact: '/old' } }, rewrite: { path: '/new' } })
        .match(req('/old'))
        ?.rewritePath('/old'),
    ).toBe('/new');
    const prefix = table({ match: { path: { prefix: '/api/' } }, rewrite: { prefix: '/v2/' } }).match(req('/api/v1/x'));
    expect(prefix?.rewritePath('/api/v1/x')).toBe('/v2/v1/x');
    const noSlash = table({ match: { path: { prefix: '/ratings' } }, rewrite: { prefix: '/v1/bookRatings' } }).match(req('/ratings/7'));
    expect(noSlash?.rewritePath('/ratings/7')).toBe('/v1/bookRatings/7');
    const root = table({ match: { path: { prefix: '/api' } }, rewrite: { prefix: '/' } }).match(req('/api/x'));
    expect(root?.rewritePath('/api/x')).toBe('/x'); // not "//x"
    expect(root?.rewritePath('/api')).toBe('/');
    expect(table({}).match(req('/same'))?.rewritePath('/same')).toBe('/same');
  });

  it('applies request and response header operations: remove, then set, then add', () => {
    const m = table({
      headers: {
        request: { set: { 'X-Env': 'prod' }, add: { 'X-Trace': 'mesh' }, remove: ['X-Internal'] },
        response: { set: { 'Cache-Control': 'no-store' } },
      },
    }).match(req('/'));
    const headers = { 'x-env': 'dev', 'x-trace': 'client', 'x-internal': 'secret', host: 'reviews' };
    expect(m?.applyRequestHeaders(headers)).toEqual({ 'x-env': 'prod', 'x-trace': ['client', 'mesh'], host: 'reviews' });
    expect(m?.applyResponseHeaders({ 'cache-control': 'max-age=60' })).toEqual({ 'cache-control': 'no-store' });
    expect(table({}).match(req('/'))?.applyRequestHeaders({ a: '1' })).toEqual({ a: '1' });
  });

  it('adds to a header that already has several values, and re-adds after removing', () => {
    const ops = compileHeaderOps({ add: { Via: 'mesh' }, remove: ['x-a'] });
    expect(applyHeaderOps({ via: ['a', 'b'] }, ops)).toEqual({ via: ['a', 'b', 'mesh'] });
    expect(applyHeaderOps({ 'x-a': '1' }, compileHeaderOps({ remove: ['X-A'], add: { 'x-a': '2' } }))).toEqual({ 'x-a': '2' });
  });

  it('mirrors the configured percentage of requests', () => {
    const m = table({ mirror: { subset: 'shadow', percentage: 25 } }).match(req('/'));
    expect(m?.mirror).toEqual({ subset: 'shadow', percentage: 25 });
    const random = seeded(9);
    let mirrored = 0;
    for (let i = 0; i < 10_000; i++) if (m?.shouldMirror(random)) mirrored++;
    expect(Math.abs(mirrored - 2500)).toBeLessThan(200);
    expect(
      table({})
        .match(req('/'))
        ?.shouldMirror(() => 0),
    ).toBe(false);
  });

  it('passes timeout, retries and fault through', () => {
    const m = table({
      timeout: 1500,
      retries: { attempts: 2, retryOn: ['5xx'] },
      fault: { abort: { httpStatus: 503, percentage: 10 } },
    }).match(req('/'));
    expect(m?.timeout).toBe(1500);
    expect(m?.retries).toMatchObject({ attempts: 2, retryOn: ['5xx'] });
    expect(m?.fault).toEqual({ abort: { httpStatus: 503, percentage: 10 } });
  });
});
