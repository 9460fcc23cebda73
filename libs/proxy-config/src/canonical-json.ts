/**
 * JSON with object keys sorted (recursively), so equal values give equal text whatever order
 * their keys were set in. Same rules as JSON.stringify otherwise: `undefined` members are left
 * out (`null` inside arrays), `toJSON` is honoured.
 */
export function canonicalJson(value: unknown): string {
  return canon(value) ?? 'null';
}

function canon(v: unknown): string | undefined {
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return undefined;
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const withToJson = v as { toJSON?: () => unknown };
  if (typeof withToJson.toJSON === 'function') return canon(withToJson.toJSON());
  if (Array.isArray(v)) return `[${v.map((x) => canon(x) ?? 'null').join(',')}]`;
  const record = v as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of Object.keys(record).sort()) {
    const s = canon(record[k]);
    if (s !== undefined) parts.push(`${JSON.stringify(k)}:${s}`);
  }
  return `{${parts.join(',')}}`;
}
