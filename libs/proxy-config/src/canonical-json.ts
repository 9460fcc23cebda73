/**
 * JSON with object keys sorted (recursively), so equal values give equal text whatever order
 * their keys were set in. Same rules as JSON.stringify otherwise: `undefined` members are left
 * out (`null` inside arrays), `toJSON` is honoured. Every sidecar runs it on each snapshot it
 * receives (the hash check) and proxy-config on each part it compiles, so it builds one string
 * per value and sorts only the key lists that are not in order already.
 */
export function canonicalJson(value: unknown): string {
  return canon(value) ?? 'null';
}

function canon(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    case 'bigint':
      return JSON.stringify(v); // throws, as JSON.stringify does
    default:
      return undefined; // undefined, functions, symbols
  }
  if (v === null) return 'null';
  const withToJson = v as { toJSON?: () => unknown };
  if (typeof withToJson.toJSON === 'function') return canon(withToJson.toJSON());
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      out += canon(v[i]) ?? 'null';
    }
    return `${out}]`;
  }
  const record = v as Record<string, unknown>;
  const keys = Object.keys(record);
  for (let i = 1; i < keys.length; i++)
    if ((keys[i - 1] as string) > (keys[i] as string)) {
      keys.sort();
      break;
    }
  let out = '{';
  for (const k of keys) {
    const s = canon(record[k]);
    if (s === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(k)}:${s}`;
  }
  return `${out}}`;
}
