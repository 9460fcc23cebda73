/**
 * The seed's TrafficPolicy held string maps (`{ "max_connections": "100", "connect_timeout": "5s",
 * "retry_on": "5xx,reset" }`). Parsing accepts that form next to the typed one: snake_case keys
 * become camelCase (plus a few renames such as `connect_timeout` → `connect`), numeric and
 * boolean strings become numbers and booleans for the fields that hold them, and comma lists
 * become arrays. The result is then validated like the typed form, so a normalized policy
 * round-trips: parsing its output again gives the same value.
 */

/** Seed keys whose camelCase form is not the typed field name. */
const KEY_ALIASES: Record<string, string> = {
  connect_timeout: 'connect',
  request_timeout: 'request',
  idle_timeout: 'idle',
  connectTimeout: 'connect',
  requestTimeout: 'request',
  idleTimeout: 'idle',
  num_retries: 'attempts',
  consecutive_errors: 'consecutive5xx',
  minimum_ring_size: 'minRingSize',
  maximum_ring_size: 'maxRingSize',
  lb_policy: 'algorithm',
};

const NUMERIC = new Set([
  'maxConnections',
  'maxPendingRequests',
  'maxRequests',
  'maxRetries',
  'consecutive5xx',
  'consecutiveGatewayErrors',
  'maxEjectionPercent',
  'attempts',
  'choiceCount',
  'tableSize',
  'minRingSize',
  'maxRingSize',
  'ratio',
  'minRetriesPerSecond',
]);
const BOOLEAN = new Set(['jitter', 'sourceIp']);
const LISTS = new Set(['retryOn', 'retriableStatusCodes']);

/** The typed field name a seed key stands for (`max_connections` → `maxConnections`). */
export function normalizeSeedKey(key: string): string {
  const alias = KEY_ALIASES[key];
  if (alias !== undefined) return alias;
  return key.includes('_') ? key.replace(/_+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase()) : key;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function coerce(key: string, value: unknown): unknown {
  if (typeof value !== 'string') {
    if (key === 'retriableStatusCodes' && Array.isArray(value)) return value.map((v) => coerce('code', v));
    return value;
  }
  const s = value.trim();
  if (NUMERIC.has(key) || key === 'code') return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : value;
  if (BOOLEAN.has(key)) return s === 'true' ? true : s === 'false' ? false : value;
  if (LISTS.has(key))
    return s
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '')
      .map((p) => coerce(key === 'retriableStatusCodes' ? 'code' : 'item', p));
  return value;
}

/**
 * Renames seed keys and coerces string values of one object; anything that is not a plain
 * object is returned as it is, for the schema to refuse. A seed key is kept as written when its
 * typed name is also present, so the schema reports it as unknown rather than dropping a value.
 */
export function normalizeSeedObject(value: unknown): unknown {
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const nk = normalizeSeedKey(k);
    const key = nk !== k && Object.hasOwn(value, nk) ? k : nk;
    Object.defineProperty(out, key, { value: coerce(key, v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

const ALGORITHM_ALIASES: Record<string, string> = {
  'round-robin': 'round-robin',
  roundrobin: 'round-robin',
  'least-request': 'least-request',
  'least-conn': 'least-request',
  'least-connections': 'least-request',
  random: 'random',
  weighted: 'weighted',
  'weighted-round-robin': 'weighted',
  'ring-hash': 'ring-hash',
  ringhash: 'ring-hash',
  maglev: 'maglev',
};

/** `ROUND_ROBIN`, `round_robin` and `round-robin` all name the same algorithm. */
export function normalizeAlgorithm(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  return ALGORITHM_ALIASES[value.trim().toLowerCase().replace(/_/g, '-')] ?? value;
}

/** `loadBalancing: "least_request"` (the seed's form) or an object with `algorithm`. */
export function normalizeLoadBalancing(value: unknown): unknown {
  if (typeof value === 'string') return { algorithm: normalizeAlgorithm(value) };
  const obj = normalizeSeedObject(value);
  if (!isPlainObject(obj)) return obj;
  const out = { ...obj };
  if ('algorithm' in out) out.algorithm = normalizeAlgorithm(out.algorithm);
  return out;
}

/** `"header:x-user"`, `"cookie:session"`, `"query:user"` or `"source-ip"`, or the typed object. */
export function normalizeHashKey(value: unknown): unknown {
  if (typeof value !== 'string') return normalizeSeedObject(value);
  const s = value.trim();
  if (/^source[-_]?ip$/i.test(s)) return { sourceIp: true };
  const m = /^(header|cookie|query|query[-_]?parameter|queryParameter):(.+)$/i.exec(s);
  if (!m) return value;
  const kind = (m[1] as string).toLowerCase();
  const name = (m[2] as string).trim();
  if (kind === 'header') return { header: name };
  if (kind === 'cookie') return { cookie: name };
  return { queryParameter: name };
}
