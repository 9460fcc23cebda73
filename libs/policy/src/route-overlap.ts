import type { PathMatch, RequestMatch, StringMatch } from '@novamesh/contracts';

/** Whether `regex` (a policy regex: it matches the whole value) matches `value`. */
function fullMatch(regex: string, value: string): boolean {
  try {
    return new RegExp(`^(?:${regex})$`).test(value);
  } catch {
    return false;
  }
}

/** A match on every path: none at all, or the prefix "/". */
const anyPath = (p: PathMatch | undefined) => p === undefined || p.prefix === '/';

function pathCovers(a: PathMatch | undefined, b: PathMatch | undefined): boolean {
  if (anyPath(a)) return true;
  if (anyPath(b) || a === undefined || b === undefined) return false;
  if (a.exact !== undefined) return b.exact === a.exact;
  if (a.prefix !== undefined) {
    const literal = b.exact ?? b.prefix;
    return literal?.startsWith(a.prefix) ?? false;
  }
  if (a.regex !== undefined) return b.regex === a.regex || (b.exact !== undefined && fullMatch(a.regex, b.exact));
  return false;
}

/** Whether every value matched by `b` is also matched by `a`. */
function valueCovers(a: StringMatch, b: StringMatch): boolean {
  if (a.present === true) return b.present !== false;
  if (a.present === false) return b.present === false;
  if (a.exact !== undefined) return b.exact === a.exact;
  if (a.prefix !== undefined) {
    const literal = b.exact ?? b.prefix;
    return literal?.startsWith(a.prefix) ?? false;
  }
  if (a.regex !== undefined) return b.regex === a.regex || (b.exact !== undefined && fullMatch(a.regex, b.exact));
  return false;
}

function lookup(m: Record<string, StringMatch> | undefined, key: string, caseInsensitive: boolean): StringMatch | undefined {
  if (!m) return undefined;
  if (!caseInsensitive) return m[key];
  const k = key.toLowerCase();
  const found = Object.keys(m).find((x) => x.toLowerCase() === k);
  return found === undefined ? undefined : m[found];
}

function entriesCover(
  a: Record<string, StringMatch> | undefined,
  b: Record<string, StringMatch> | undefined,
  caseInsensitive: boolean,
): boolean {
  for (const [key, am] of Object.entries(a ?? {})) {
    const bm = lookup(b, key, caseInsensitive);
    if (bm === undefined || !valueCovers(am, bm)) return false;
  }
  return true;
}

/**
 * Whether every request matched by `b` is also matched by `a` — so a route with match `b`
 * placed after one with match `a` can never be reached. Conservative: answers false when it
 * cannot tell (e.g. two different regexes).
 */
export function matchCovers(a: RequestMatch, b: RequestMatch): boolean {
  if (!pathCovers(a.path, b.path)) return false;
  if (a.methods && !b.methods?.every((m) => a.methods?.includes(m))) return false;
  if (!entriesCover(a.headers, b.headers, true)) return false;
  return entriesCover(a.queryParams, b.queryParams, false);
}

/** A match every request fits: no conditions, or only the path prefix "/". */
export function isCatchAll(m: RequestMatch): boolean {
  return anyPath(m.path) && !m.methods && Object.keys(m.headers ?? {}).length === 0 && Object.keys(m.queryParams ?? {}).length === 0;
}
