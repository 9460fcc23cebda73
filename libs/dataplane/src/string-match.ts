import type { StringMatch } from '@novamesh/contracts';

/** A compiled StringMatch: true when `value` (undefined = absent) satisfies it. Stateless; safe to share. */
export type StringMatcher = (value: string | undefined) => boolean;

/** A policy regex anchored to match the whole value, compiled once. */
export function anchoredRegex(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}

/**
 * Compiles a header or query StringMatch once per snapshot. exact/prefix/regex never match an
 * absent value; `present: false` matches only an absent one. Throws when a regex does not compile.
 */
export function compileStringMatch(m: StringMatch): StringMatcher {
  if (m.present !== undefined) {
    const want = m.present;
    return (v) => (v !== undefined) === want;
  }
  if (m.exact !== undefined) {
    const exact = m.exact;
    return (v) => v === exact;
  }
  if (m.prefix !== undefined) {
    const prefix = m.prefix;
    return (v) => v?.startsWith(prefix) === true;
  }
  if (m.regex !== undefined) {
    const re = anchoredRegex(m.regex);
    return (v) => v !== undefined && re.test(v);
  }
  return (v) => v !== undefined;
}
