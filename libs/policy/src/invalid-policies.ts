/** One invalid policy and the refusal a user must see: an issue at `path` whose message matches `message`. */
export interface InvalidPolicyCase {
  name: string;
  policy: unknown;
  path: string;
  message: RegExp;
}

const traffic = (over: Record<string, unknown>) => ({ kind: 'TrafficPolicy', name: 'payment-traffic', serviceName: 'payment', ...over });

const SUBSETS = [
  { name: 'v1', labels: { version: 'v1' } },
  { name: 'v2', labels: { version: 'v2' } },
];
const routeRule = (routes: unknown[], extra: Record<string, unknown> = {}) => ({
  kind: 'RouteRule',
  name: 'reviews-canary',
  serviceName: 'reviews',
  subsets: SUBSETS,
  routes,
  ...extra,
});
const headerRegex = (regex: string) => routeRule([{ match: { headers: { 'x-env': { regex } } } }]);

const rateLimit = (limit: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  kind: 'RateLimitPolicy',
  name: 'payment-limits',
  serviceName: 'payment',
  limits: [{ name: 'per-caller', requests: 100, per: 'second', ...limit }],
  ...extra,
});

const authz = (rule: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  kind: 'AuthorizationPolicy',
  name: 'payment-allow',
  serviceName: 'payment',
  action: 'ALLOW',
  rules: [rule],
  ...extra,
});

const mtls = (over: Record<string, unknown>) => ({
  kind: 'MutualTLSPolicy',
  name: 'mesh-strict',
  serviceName: '*',
  mode: 'strict',
  ...over,
});

/**
 * Invalid policies, each with the issue a user must see. Shared by the unit test of
 * validation and the policy service's end-to-end test, which applies them over NATS.
 */
export const INVALID_POLICIES: InvalidPolicyCase[] = [
  // ---- any kind
  { name: 'not an object', policy: 'kind: TrafficPolicy', path: '', message: /expected an object, received "kind: TrafficPolicy"/ },
  { name: 'null', policy: null, path: '', message: /expected an object, received null/ },
  {
    name: 'unknown kind',
    policy: { ...traffic({}), kind: 'TrafficPolice' },
    path: 'kind',
    message:
      /must be one of "TrafficPolicy", "RouteRule", "RateLimitPolicy", "AuthorizationPolicy", "MutualTLSPolicy" \(received "TrafficPolice"\)/,
  },
  { name: 'missing kind', policy: { name: 'x', serviceName: 'payment' }, path: 'kind', message: /is required/ },
  {
    name: 'invalid name',
    policy: traffic({ name: 'Payment_Traffic' }),
    path: 'name',
    message: /must be a DNS label.*\(received "Payment_Traffic"\)/,
  },
  {
    name: 'missing serviceName',
    policy: { kind: 'TrafficPolicy', name: 'payment-traffic' },
    path: 'serviceName',
    message: /^is required \(expected a string\)$/,
  },
  { name: 'mesh-wide TrafficPolicy', policy: traffic({ serviceName: '*' }), path: 'serviceName', message: /must be a service name/ },
  {
    name: 'unknown field, with a suggestion',
    policy: traffic({ retires: { attempts: 2 } }),
    path: 'retires',
    message: /unknown field "retires" \(did you mean "retries"\?\)/,
  },
  {
    name: 'description too long',
    policy: traffic({ description: 'x'.repeat(2000) }),
    path: 'description',
    message: /must be at most 1024 characters \(received 2000 characters\)/,
  },

  // ---- TrafficPolicy
  {
    name: 'unknown load-balancing algorithm',
    policy: traffic({ loadBalancing: { algorithm: 'fastest' } }),
    path: 'loadBalancing.algorithm',
    message: /must be one of "round-robin", "least-request", "random", "weighted", "ring-hash", "maglev" \(received "fastest"\)/,
  },
  {
    name: 'unknown algorithm in the seed string form',
    policy: traffic({ loadBalancing: 'FASTEST' }),
    path: 'loadBalancing',
    message: /must be one of "round-robin".*\(received "FASTEST"\)/,
  },
  {
    name: 'ring-hash without hash key',
    policy: traffic({ loadBalancing: { algorithm: 'ring-hash' } }),
    path: 'loadBalancing.hashKey',
    message: /is required: ring-hash and maglev need a hashKey/,
  },
  {
    name: 'hash key on two things',
    policy: traffic({ loadBalancing: { algorithm: 'ring-hash', hashKey: { header: 'x-user', cookie: 'session' } } }),
    path: 'loadBalancing.hashKey',
    message: /must have only one of header, cookie, queryParameter, sourceIp \(has header and cookie\)/,
  },
  {
    name: 'maglev table size not prime',
    policy: traffic({ loadBalancing: { algorithm: 'maglev', hashKey: { sourceIp: true }, tableSize: 1000 } }),
    path: 'loadBalancing.tableSize',
    message: /must be a prime number/,
  },
  {
    name: 'maglev table size too large',
    policy: traffic({ loadBalancing: { algorithm: 'maglev', hashKey: { sourceIp: true }, tableSize: 10_000_019 } }),
    path: 'loadBalancing.tableSize',
    message: /must be at most 5000011 \(received 10000019\)/,
  },
  {
    name: 'choice count on round-robin',
    policy: traffic({ loadBalancing: { algorithm: 'round-robin', choiceCount: 2 } }),
    path: 'loadBalancing.choiceCount',
    message: /unknown field "choiceCount"; allowed fields: algorithm/,
  },
  {
    name: 'least-request with one choice',
    policy: traffic({ loadBalancing: { algorithm: 'least-request', choiceCount: 1 } }),
    path: 'loadBalancing.choiceCount',
    message: /must be at least 2 \(received 1\)/,
  },
  {
    name: 'zero max connections',
    policy: traffic({ circuitBreaking: { maxConnections: 0 } }),
    path: 'circuitBreaking.maxConnections',
    message: /must be at least 1 \(received 0\)/,
  },
  {
    name: 'seed key misspelt',
    policy: traffic({ circuitBreaking: { max_conections: '100' } }),
    path: 'circuitBreaking.max_conections',
    message: /unknown field "max_conections" \(did you mean "maxConnections"\?\)/,
  },
  {
    name: 'seed value not a number',
    policy: traffic({ circuitBreaking: { max_connections: 'lots' } }),
    path: 'circuitBreaking.max_connections',
    message: /expected a number, received "lots"/,
  },
  {
    name: 'outlier max ejection over 100%',
    policy: traffic({ outlierDetection: { maxEjectionPercent: 150 } }),
    path: 'outlierDetection.maxEjectionPercent',
    message: /must be at most 100 \(received 150\)/,
  },
  {
    name: 'negative connect timeout',
    policy: traffic({ timeouts: { connect: '-5s' } }),
    path: 'timeouts.connect',
    message: /"-5s" is not a duration/,
  },
  {
    name: 'connect timeout too large',
    policy: traffic({ timeouts: { connect: '10m' } }),
    path: 'timeouts.connect',
    message: /must be between 1ms and 300000ms/,
  },
  {
    name: 'seed request timeout not a duration',
    policy: traffic({ timeouts: { request_timeout: 'soon' } }),
    path: 'timeouts.request_timeout',
    message: /"soon" is not a duration/,
  },
  {
    name: 'zero idle timeout',
    policy: traffic({ timeouts: { idle: 0 } }),
    path: 'timeouts.idle',
    message: /must be between 1ms and 86400000ms/,
  },
  {
    name: 'retry attempts < 0',
    policy: traffic({ retries: { attempts: -1 } }),
    path: 'retries.attempts',
    message: /must be at least 0 \(received -1\)/,
  },
  {
    name: 'fractional retry attempts',
    policy: traffic({ retries: { attempts: 1.5 } }),
    path: 'retries.attempts',
    message: /expected a whole number, received 1.5/,
  },
  {
    name: 'retry budget ratio > 1',
    policy: traffic({ retries: { attempts: 2, budget: { ratio: 1.5 } } }),
    path: 'retries.budget.ratio',
    message: /must be at most 1 \(received 1.5\)/,
  },
  {
    name: 'retry budget ratio 0',
    policy: traffic({ retries: { attempts: 2, budget: { ratio: 0 } } }),
    path: 'retries.budget.ratio',
    message: /must be greater than 0 \(received 0\)/,
  },
  {
    name: 'unknown retryOn condition',
    policy: traffic({ retries: { attempts: 2, retryOn: ['5xx', 'timeout'] } }),
    path: 'retries.retryOn[1]',
    message: /must be one of "connect-failure", .*"retriable-status-codes" \(received "timeout"\)/,
  },
  {
    name: 'unknown condition in the seed list',
    policy: traffic({ retries: { attempts: '2', retry_on: '5xx,oops' } }),
    path: 'retries.retry_on',
    message: /must be one of "connect-failure".*\(received "oops"\)/,
  },
  {
    name: 'retriable status code 700',
    policy: traffic({ retries: { attempts: 2, retryOn: ['retriable-status-codes'], retriableStatusCodes: [700] } }),
    path: 'retries.retriableStatusCodes[0]',
    message: /must be at most 599 \(received 700\)/,
  },
  {
    name: 'retriable-status-codes without codes',
    policy: traffic({ retries: { attempts: 2, retryOn: ['retriable-status-codes'] } }),
    path: 'retries.retriableStatusCodes',
    message: /is required when retryOn includes "retriable-status-codes"/,
  },
  {
    name: 'backoff max shorter than base',
    policy: traffic({ retries: { attempts: 2, backoff: { baseInterval: '100ms', maxInterval: '50ms' } } }),
    path: 'retries.backoff.maxInterval',
    message: /must not be shorter than baseInterval \(100ms\)/,
  },

  // ---- RouteRule
  {
    name: 'catastrophic regex (a+)+',
    policy: headerRegex('(a+)+$'),
    path: 'routes[0].match.headers.x-env.regex',
    message: /could backtrack catastrophically: nested quantifier/,
  },
  {
    name: 'catastrophic regex (a|a)*',
    policy: routeRule([{ match: { path: { regex: '/(a|a)*' } } }]),
    path: 'routes[0].match.path.regex',
    message: /could backtrack catastrophically: .*alternatives that can match the same text/,
  },
  {
    name: 'catastrophic regex (a*)* in a query match',
    policy: routeRule([{ match: { queryParams: { q: { regex: '(a*)*b' } } } }]),
    path: 'routes[0].match.queryParams.q.regex',
    message: /could backtrack catastrophically: nested quantifier/,
  },
  {
    name: 'adjacent overlapping repetitions',
    policy: headerRegex('\\d+\\d+x'),
    path: 'routes[0].match.headers.x-env.regex',
    message: /adjacent repetitions "\\d\+" and "\\d\+"/,
  },
  {
    name: 'regex backreference',
    policy: headerRegex('(a)\\1'),
    path: 'routes[0].match.headers.x-env.regex',
    message: /must not use backreferences/,
  },
  {
    name: 'regex lookahead',
    policy: headerRegex('(?=prod)prod-.*'),
    path: 'routes[0].match.headers.x-env.regex',
    message: /must not use lookarounds/,
  },
  {
    name: 'regex that does not compile',
    policy: routeRule([
      { name: 'a', match: { path: { prefix: '/a' } } },
      { name: 'b', match: { path: { prefix: '/b' } } },
      { name: 'c', match: { headers: { 'x-env': { regex: '(prod' } } } },
    ]),
    path: 'routes[2].match.headers.x-env.regex',
    message: /^does not compile: .*Unterminated group/,
  },
  {
    name: 'overlong regex',
    policy: headerRegex('a'.repeat(300)),
    path: 'routes[0].match.headers.x-env.regex',
    message: /must be at most 256 characters \(received 300\)/,
  },
  {
    name: 'split weights summing to 90',
    policy: routeRule([
      {
        split: [
          { subset: 'v1', weight: 80 },
          { subset: 'v2', weight: 10 },
        ],
      },
    ]),
    path: 'routes[0].split',
    message: /weights must sum to 100 \(they sum to 90\)/,
  },
  {
    name: 'split weight missing',
    policy: routeRule([{ split: [{ subset: 'v1', weight: 100 }, { subset: 'v2' }] }]),
    path: 'routes[0].split[1].weight',
    message: /is required when splitting across more than one subset/,
  },
  {
    name: 'split to an unknown subset',
    policy: routeRule([{ split: [{ subset: 'v3' }] }]),
    path: 'routes[0].split[0].subset',
    message: /subset "v3" is not defined \(subsets: v1, v2\)/,
  },
  {
    name: 'mirror to an unknown subset',
    policy: routeRule([{ mirror: { subset: 'shadow', percentage: 10 } }]),
    path: 'routes[0].mirror.subset',
    message: /subset "shadow" is not defined/,
  },
  {
    name: 'mirror percentage over 100',
    policy: routeRule([{ mirror: { subset: 'v2', percentage: 150 } }]),
    path: 'routes[0].mirror.percentage',
    message: /must be at most 100 \(received 150\)/,
  },
  {
    name: 'fault percentage 101',
    policy: routeRule([{ fault: { delay: { fixedDelay: '1s', percentage: 101 } } }]),
    path: 'routes[0].fault.delay.percentage',
    message: /must be at most 100 \(received 101\)/,
  },
  {
    name: 'abort status 99',
    policy: routeRule([{ fault: { abort: { httpStatus: 99, percentage: 5 } } }]),
    path: 'routes[0].fault.abort.httpStatus',
    message: /must be at least 200 \(received 99\)/,
  },
  {
    name: 'fault with neither delay nor abort',
    policy: routeRule([{ fault: {} }]),
    path: 'routes[0].fault',
    message: /must have a delay, an abort or both/,
  },
  {
    name: 'duplicate subset name',
    policy: routeRule([{}], { subsets: [SUBSETS[0], { name: 'v1', labels: { version: 'v9' } }] }),
    path: 'subsets[1].name',
    message: /duplicates subsets\[0\]\.name "v1"/,
  },
  {
    name: 'subset selecting no labels',
    policy: routeRule([{}], { subsets: [{ name: 'all', labels: {} }] }),
    path: 'subsets[0].labels',
    message: /must select at least one label/,
  },
  {
    name: 'prefix rewrite without a prefix match',
    policy: routeRule([{ match: { path: { exact: '/a' } }, rewrite: { prefix: '/b' } }]),
    path: 'routes[0].rewrite.prefix',
    message: /needs match\.path\.prefix/,
  },
  {
    name: 'path match without leading slash',
    policy: routeRule([{ match: { path: { exact: 'api' } } }]),
    path: 'routes[0].match.path.exact',
    message: /must start with "\/" \(received "api"\)/,
  },
  {
    name: 'path match of two kinds',
    policy: routeRule([{ match: { path: { exact: '/a', prefix: '/a' } } }]),
    path: 'routes[0].match.path',
    message: /must have only one of exact, prefix, regex \(has exact and prefix\)/,
  },
  {
    name: 'route match on a bad method',
    policy: routeRule([{ match: { methods: ['GET', 'FETCH'] } }]),
    path: 'routes[0].match.methods[1]',
    message: /must be one of "GET", .* \(received "FETCH"\)/,
  },
  { name: 'no routes', policy: routeRule([]), path: 'routes', message: /must not be empty/ },
  {
    name: 'header value with a line break',
    policy: routeRule([{ headers: { request: { set: { 'x-a': 'b\r\nx-evil: 1' } } } }]),
    path: 'routes[0].headers.request.set.x-a',
    message: /must not contain line breaks/,
  },
  {
    name: 'invalid header name',
    policy: routeRule([{ match: { headers: { 'x env': { exact: 'a' } } } }]),
    path: 'routes[0].match.headers["x env"]',
    message: /is not an allowed key: must be an HTTP header name/,
  },
  {
    name: 'negative route timeout',
    policy: routeRule([{ timeout: '-1s' }]),
    path: 'routes[0].timeout',
    message: /"-1s" is not a duration/,
  },
  {
    name: 'unknown field in a route',
    policy: routeRule([{ weight: 10 }]),
    path: 'routes[0].weight',
    message: /unknown field "weight"; allowed fields: name, match, split/,
  },
  {
    name: 'duplicate route names',
    policy: routeRule([{ name: 'a', match: { path: { prefix: '/a' } } }, { name: 'a' }]),
    path: 'routes[1].name',
    message: /duplicates routes\[0\]\.name "a"/,
  },

  // ---- RateLimitPolicy
  {
    name: 'rate limit 0 per second',
    policy: rateLimit({ requests: 0 }),
    path: 'limits[0].requests',
    message: /must be at least 1 \(received 0\)/,
  },
  {
    name: 'rate limit per hour',
    policy: rateLimit({ per: 'hour' }),
    path: 'limits[0].per',
    message: /must be one of "second", "minute" \(received "hour"\)/,
  },
  {
    name: 'unknown key type',
    policy: rateLimit({ key: { type: 'cookie' } }),
    path: 'limits[0].key.type',
    message: /must be one of "source-identity", "header", "path", "client-ip" \(received "cookie"\)/,
  },
  {
    name: 'header key without a name',
    policy: rateLimit({ key: { type: 'header' } }),
    path: 'limits[0].key.name',
    message: /is required \(expected a string\)/,
  },
  {
    name: 'bad failureMode',
    policy: rateLimit({}, { failureMode: 'maybe' }),
    path: 'failureMode',
    message: /must be one of "open", "closed" \(received "maybe"\)/,
  },
  {
    name: 'burst on a global limit',
    policy: rateLimit({ scope: 'global', burst: 10 }),
    path: 'limits[0].burst',
    message: /only local limits have a burst/,
  },
  {
    name: 'limited response status 200',
    policy: rateLimit({}, { response: { status: 200 } }),
    path: 'response.status',
    message: /must be at least 400 \(received 200\)/,
  },
  { name: 'no limits', policy: { ...rateLimit({}), limits: [] }, path: 'limits', message: /must not be empty/ },
  {
    name: 'unknown scope',
    policy: rateLimit({ scope: 'cluster' }),
    path: 'limits[0].scope',
    message: /must be one of "local", "global" \(received "cluster"\)/,
  },

  // ---- AuthorizationPolicy
  {
    name: 'principal not a SPIFFE ID',
    policy: authz({ from: { principals: ['orders.shop.svc'] } }),
    path: 'rules[0].from.principals[0]',
    message: /must be a SPIFFE ID/,
  },
  {
    name: 'principal with a wildcard in the middle',
    policy: authz({ from: { principals: ['spiffe://novamesh.local/ns/*/sa/orders'] } }),
    path: 'rules[0].from.principals[0]',
    message: /must be a SPIFFE ID/,
  },
  {
    name: 'bad method',
    policy: authz({ to: { methods: ['get'] } }),
    path: 'rules[0].to.methods[0]',
    message: /must be one of "GET", .*\(received "get"\)/,
  },
  { name: 'port 70000', policy: authz({ to: { ports: [70000] } }), path: 'rules[0].to.ports[0]', message: /must be between 1 and 65535/ },
  {
    name: 'path without a leading slash',
    policy: authz({ to: { paths: ['api/*'] } }),
    path: 'rules[0].to.paths[0]',
    message: /must be a path starting with "\/"/,
  },
  {
    name: 'unknown action',
    policy: authz({}, { action: 'PERMIT' }),
    path: 'action',
    message: /must be one of "ALLOW", "DENY", "AUDIT" \(received "PERMIT"\)/,
  },
  {
    name: 'AUDIT as defaultAction',
    policy: authz({}, { defaultAction: 'AUDIT' }),
    path: 'defaultAction',
    message: /must be one of "ALLOW", "DENY" \(received "AUDIT"\)/,
  },
  {
    name: 'namespace not a DNS label',
    policy: authz({ from: { namespaces: ['Shop'] } }),
    path: 'rules[0].from.namespaces[0]',
    message: /must be a DNS label/,
  },
  {
    name: 'unknown field in a rule',
    policy: authz({ form: { namespaces: ['shop'] } }),
    path: 'rules[0].form',
    message: /unknown field "form" \(did you mean "from"\?\)/,
  },

  // ---- MutualTLSPolicy
  {
    name: "mTLS mode 'sometimes'",
    policy: mtls({ mode: 'sometimes' }),
    path: 'mode',
    message: /must be one of "strict", "permissive", "disable" \(received "sometimes"\)/,
  },
  {
    name: 'mTLS for an invalid service name',
    policy: mtls({ serviceName: 'Orders' }),
    path: 'serviceName',
    message: /must be a service name .* or "\*" for the whole mesh/,
  },
  {
    name: 'mTLS without a mode',
    policy: { kind: 'MutualTLSPolicy', name: 'mesh-strict', serviceName: '*' },
    path: 'mode',
    message: /^is required \(one of "strict", "permissive", "disable"\)$/,
  },
];
