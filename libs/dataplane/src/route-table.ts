import { MeshValidationError, type RequestMatch, type SnapshotRouteV1, type StringMatch, type UpstreamV1 } from '@novamesh/contracts';
import { applyHeaderOps, type CompiledHeaderOps, compileHeaderOps } from './header-ops';
import { headerValue, parseQuery, type RequestView } from './request-view';
import { anchoredRegex, compileStringMatch, type StringMatcher } from './string-match';

type Fault = NonNullable<SnapshotRouteV1['fault']>;
type Retries = NonNullable<SnapshotRouteV1['retries']>;
type Headers = Record<string, string | string[] | undefined>;

/**
 * The route a request matched, compiled once per snapshot and shared by every request that
 * matches it: immutable, safe to keep for the life of the request.
 */
export interface MatchedRoute {
  /** The route's name, or `<rule>[<n>]` (its position in its RouteRule) when it has none. */
  readonly name: string;
  /** The RouteRule it came from. */
  readonly rule: string;
  readonly route: SnapshotRouteV1;
  /** The subset to send to, drawn by the split's weights; undefined: every endpoint of the service. */
  pickSubset(random?: () => number): string | undefined;
  /** The path the upstream gets (query excluded: the caller re-appends it); `path` itself without a rewrite. */
  rewritePath(path: string): string;
  readonly requestHeaders?: CompiledHeaderOps;
  readonly responseHeaders?: CompiledHeaderOps;
  /** Applies `requestHeaders` (if any) in place; returns `headers`. */
  applyRequestHeaders<H extends Headers>(headers: H): H;
  /** Applies `responseHeaders` (if any) in place; returns `headers`. */
  applyResponseHeaders<H extends Headers>(headers: H): H;
  readonly mirror?: { readonly subset: string; readonly percentage: number };
  /** Whether to copy this request to the mirror subset (false without a mirror). */
  shouldMirror(random?: () => number): boolean;
  /** Per-route overrides passed through for the resilience layer (ms). */
  readonly timeout?: number;
  readonly retries?: Retries;
  readonly fault?: Fault;
}

/** An upstream's routes in evaluation order; immutable, shareable. */
export interface RouteTable {
  readonly routes: readonly MatchedRoute[];
  /** The first route whose match holds; undefined sends the request to every endpoint. */
  match(req: RequestView): MatchedRoute | undefined;
}

const PATH_ANY = 0;
const PATH_EXACT = 1;
const PATH_PREFIX = 2;
const PATH_REGEX = 3;

/** Joins a rewritten prefix and the rest of the path without doubling the slash between them. */
function joinPath(prefix: string, rest: string): string {
  return prefix.endsWith('/') && rest.startsWith('/') ? prefix + rest.slice(1) : prefix + rest;
}

/** Runs a compile step, turning a failure into a validation error that says where. */
function compileAt<T>(path: string, compile: () => T): T {
  try {
    return compile();
  } catch (e) {
    throw new MeshValidationError('route does not compile', [{ path, message: (e as Error).message }]);
  }
}

function compileConditions(at: string, rec: Record<string, StringMatch> | undefined, lowerCase: boolean) {
  return Object.entries(rec ?? {}).map(
    ([k, sm]) => [lowerCase ? k.toLowerCase() : k, compileAt(`${at}.${k}`, () => compileStringMatch(sm))] as const,
  );
}

/**
 * A RequestMatch (path, methods, headers, query parameters) compiled once: regexes anchored and
 * compiled, header names lower-cased. Immutable, shareable; `matches` allocates only when it gets
 * as far as a query condition. Throws MeshValidationError (at `at`) when a regex does not compile.
 */
export class CompiledRequestMatch {
  readonly query: readonly (readonly [string, StringMatcher])[];
  private readonly pathKind: number;
  private readonly pathValue: string;
  private readonly pathRegex?: RegExp;
  private readonly methods?: readonly string[];
  private readonly headers: readonly (readonly [string, StringMatcher])[];

  constructor(m: RequestMatch, at: string) {
    const path = m.path;
    this.pathKind = path?.exact !== undefined ? PATH_EXACT : path?.prefix !== undefined ? PATH_PREFIX : path?.regex ? PATH_REGEX : PATH_ANY;
    this.pathValue = path?.exact ?? path?.prefix ?? '';
    const regex = path?.regex;
    if (regex !== undefined) this.pathRegex = compileAt(`${at}.path.regex`, () => anchoredRegex(regex));
    this.methods = m.methods;
    this.headers = compileConditions(`${at}.headers`, m.headers, true);
    this.query = compileConditions(`${at}.queryParams`, m.queryParams, false);
  }

  /** Every condition, the query parsed only when one is set. */
  matches(req: RequestView): boolean {
    return this.matchesRequest(req) && (this.query.length === 0 || this.matchesQuery(parseQuery(req.query)));
  }

  /** Path, method and header conditions (everything but the query), cheapest first. */
  matchesRequest(req: RequestView): boolean {
    switch (this.pathKind) {
      case PATH_EXACT:
        if (req.path !== this.pathValue) return false;
        break;
      case PATH_PREFIX:
        if (!req.path.startsWith(this.pathValue)) return false;
        break;
      case PATH_REGEX:
        if (!this.pathRegex?.test(req.path)) return false;
        break;
    }
    if (this.methods && !this.methods.includes(req.method)) return false;
    for (const [name, test] of this.headers) if (!test(headerValue(req.headers, name))) return false;
    return true;
  }

  matchesQuery(params: Map<string, string>): boolean {
    for (const [name, test] of this.query) if (!test(params.get(name))) return false;
    return true;
  }
}

class CompiledRoute implements MatchedRoute {
  readonly rule: string;
  readonly requestHeaders?: CompiledHeaderOps;
  readonly responseHeaders?: CompiledHeaderOps;
  readonly mirror?: { readonly subset: string; readonly percentage: number };
  readonly timeout?: number;
  readonly retries?: Retries;
  readonly fault?: Fault;
  readonly rewritePath: (path: string) => string;
  readonly conditions: CompiledRequestMatch;
  private readonly subsets: readonly string[];
  /** Cumulative split weights (percent), aligned with `subsets`. */
  private readonly bounds: Float64Array;
  private readonly lastWeighted?: string;

  constructor(
    readonly route: SnapshotRouteV1,
    readonly name: string,
    at: string,
  ) {
    this.rule = route.rule;
    const path = route.match.path;
    this.conditions = new CompiledRequestMatch(route.match, `${at}.match`);

    const split = route.split ?? [];
    this.subsets = split.map((s) => s.subset);
    let sum = 0;
    this.bounds = Float64Array.from(split, (s) => (sum += s.weight));
    this.lastWeighted = split.findLast((s) => s.weight > 0)?.subset;

    const rewrite = route.rewrite;
    if (rewrite?.path !== undefined) {
      const to = rewrite.path;
      this.rewritePath = () => to;
    } else if (rewrite?.prefix !== undefined && path?.prefix !== undefined) {
      const from = path.prefix;
      const to = rewrite.prefix;
      this.rewritePath = (p) => (p.startsWith(from) ? joinPath(to, p.slice(from.length)) : p);
    } else this.rewritePath = (p) => p;

    if (route.headers?.request) this.requestHeaders = compileHeaderOps(route.headers.request);
    if (route.headers?.response) this.responseHeaders = compileHeaderOps(route.headers.response);
    if (route.mirror) this.mirror = Object.freeze({ subset: route.mirror.subset, percentage: route.mirror.percentage });
    if (route.timeout !== undefined) this.timeout = route.timeout;
    if (route.retries) this.retries = route.retries;
    if (route.fault) this.fault = route.fault;
  }

  pickSubset(random: () => number = Math.random): string | undefined {
    const n = this.subsets.length;
    if (n <= 1) return this.subsets[0];
    const r = random() * 100;
    for (let i = 0; i < n; i++) if (r < (this.bounds[i] as number)) return this.subsets[i];
    // Only reached when the weights sum below 100, which validation refuses.
    return this.lastWeighted;
  }

  shouldMirror(random: () => number = Math.random): boolean {
    return this.mirror !== undefined && random() * 100 < this.mirror.percentage;
  }

  applyRequestHeaders<H extends Headers>(headers: H): H {
    return this.requestHeaders ? applyHeaderOps(headers, this.requestHeaders) : headers;
  }

  applyResponseHeaders<H extends Headers>(headers: H): H {
    return this.responseHeaders ? applyHeaderOps(headers, this.responseHeaders) : headers;
  }
}

/**
 * Compiles an upstream's routes (rule by rule, in snapshot order) once per snapshot: regexes
 * anchored and compiled, header names lower-cased, split weights accumulated. A match then walks
 * the routes without allocating, except the query parameters: parsed at most once, and only when
 * a route gets as far as a query condition. Throws MeshValidationError when a regex does not compile.
 */
export function compileUpstreamRoutes(upstream: Pick<UpstreamV1, 'routes'>): RouteTable {
  const perRule = new Map<string, number>();
  const routes = upstream.routes.map((r, i) => {
    const n = perRule.get(r.rule) ?? 0;
    perRule.set(r.rule, n + 1);
    return new CompiledRoute(r, r.name ?? `${r.rule}[${n}]`, `routes[${i}]`);
  });
  return {
    routes,
    match(req: RequestView): MatchedRoute | undefined {
      let params: Map<string, string> | undefined;
      for (const route of routes) {
        const c = route.conditions;
        if (!c.matchesRequest(req)) continue;
        if (c.query.length === 0) return route;
        params ??= parseQuery(req.query);
        if (c.matchesQuery(params)) return route;
      }
      return undefined;
    },
  };
}
