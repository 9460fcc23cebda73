/**
 * A small, conservative safety check for the regular expressions a policy may carry (path,
 * header and query matches). Sidecars evaluate them on every request with a backtracking
 * engine, so a pattern that can backtrack catastrophically would let one policy make every
 * sidecar of a service spin. Rather than prove a pattern safe, this refuses the shapes that
 * cause super-linear backtracking:
 *
 * - backreferences (`\1`, `\k<name>`) and lookarounds (`(?=`, `(?!`, `(?<=`, `(?<!`);
 * - an unboundedly repeated group (`*`, `+`, `{n,}`) that contains a quantifier (`(a+)+`,
 *   `(a*)*`, `(a?)+`), can match empty text, or holds alternatives that can start with the same
 *   character (`(a|a)*`, `(a|ab)+`). The one exception are groups delimited by a character
 *   nothing else in them matches, such as `(-[a-z]+)*` or `([^,]*,)+`: their iterations cannot
 *   overlap, so they backtrack linearly;
 * - a boundedly repeated group whose inner choices multiply past {@link REGEX_MAX_CHOICES}
 *   (`(a?){30}`), while small ones such as `(\d{1,3}\.){3}` stay allowed;
 * - two unbounded repetitions that can match the same characters with only optional atoms
 *   between them (`\d+\d+`, `.*.*`, `\w+\s*\w+`);
 * - more than {@link REGEX_MAX_UNBOUNDED} unbounded quantifiers, and repetition counts above 1000.
 *
 * Some safe patterns are refused too; the message says what to change. Patterns are JavaScript
 * regular expressions without flags, matched against the whole value.
 */

export const REGEX_MAX_LENGTH = 256;
export const REGEX_MAX_UNBOUNDED = 6;
export const REGEX_MAX_CHOICES = 10_000;
const MAX_REPEAT = 1000;

/** A set of characters, possibly the complement of a finite set (`negated`). */
interface CharSet {
  negated: boolean;
  chars: Set<string>;
}

interface Atom {
  /** Characters this atom can start with. */
  first: CharSet;
  /** Every character this atom can consume. */
  all: CharSet;
  /** Can match empty text, ignoring its quantifier. */
  emptyBody: boolean;
  zeroWidth: boolean;
  min: number;
  max: number;
  quantified: boolean;
  group?: Atom[][];
  /** Source text, for messages. */
  text: string;
}

const ANY: CharSet = { negated: true, chars: new Set() };
const NONE = (): CharSet => ({ negated: false, chars: new Set() });
const LINE_TERMINATORS = ['\n', '\r', '\u2028', '\u2029'];
const DOT: CharSet = { negated: true, chars: new Set(LINE_TERMINATORS) };
const DIGITS = rangeChars('0', '9');
const WORD = [...rangeChars('a', 'z'), ...rangeChars('A', 'Z'), ...DIGITS, '_'];
const SPACE = [' ', '\t', '\n', '\v', '\f', '\r', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff'];
for (let c = 0x2000; c <= 0x200a; c++) SPACE.push(String.fromCharCode(c));

function rangeChars(from: string, to: string): string[] {
  const out: string[] = [];
  for (let c = from.charCodeAt(0); c <= to.charCodeAt(0); c++) out.push(String.fromCharCode(c));
  return out;
}

const pos = (chars: Iterable<string>): CharSet => ({ negated: false, chars: new Set(chars) });
const neg = (chars: Iterable<string>): CharSet => ({ negated: true, chars: new Set(chars) });

function union(a: CharSet, b: CharSet): CharSet {
  if (!a.negated && !b.negated) return pos([...a.chars, ...b.chars]);
  if (a.negated && b.negated) return neg([...a.chars].filter((c) => b.chars.has(c)));
  const [n, p] = a.negated ? [a, b] : [b, a];
  return neg([...n.chars].filter((c) => !p.chars.has(c)));
}

function overlaps(a: CharSet, b: CharSet): boolean {
  if (a.negated && b.negated) return true;
  if (!a.negated && !b.negated) {
    for (const c of a.chars) if (b.chars.has(c)) return true;
    return false;
  }
  const [n, p] = a.negated ? [a, b] : [b, a];
  for (const c of p.chars) if (!n.chars.has(c)) return true;
  return false;
}

const complement = (s: CharSet): CharSet => ({ negated: !s.negated, chars: s.chars });

/** A shape that can backtrack catastrophically. */
class Unsafe extends Error {}
/** A feature policies may not use at all. */
class NotAllowed extends Error {}

/** Recursive-descent parser over a source that already compiled with `new RegExp(source)`. */
class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  parse(): Atom[][] {
    const alts = this.alternation();
    if (this.i < this.src.length) throw new NotAllowed(`has an unexpected "${this.src[this.i]}" at position ${this.i}`);
    return alts;
  }

  private alternation(): Atom[][] {
    const alts = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      alts.push(this.sequence());
    }
    return alts;
  }

  private sequence(): Atom[] {
    const seq: Atom[] = [];
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      const start = this.i;
      const atom = this.atom();
      this.quantifier(atom);
      atom.text = this.src.slice(start, this.i);
      seq.push(atom);
    }
    return seq;
  }

  private atom(): Atom {
    const c = this.src[this.i] as string;
    const simple = (set: CharSet): Atom => ({
      first: set,
      all: set,
      emptyBody: false,
      zeroWidth: false,
      min: 1,
      max: 1,
      quantified: false,
      text: '',
    });
    const zeroWidth = (): Atom => ({ ...simple(NONE()), emptyBody: true, zeroWidth: true });
    if (c === '^' || c === '$') {
      this.i++;
      return zeroWidth();
    }
    if (c === '.') {
      this.i++;
      return simple(DOT);
    }
    if (c === '[') return simple(this.charClass());
    if (c === '(') return this.group();
    if (c === '\\') {
      const e = this.escape(false);
      return e === 'boundary' ? zeroWidth() : simple(e);
    }
    this.i++;
    return simple(pos([c]));
  }

  private group(): Atom {
    const src = this.src;
    this.i++; // (
    if (src[this.i] === '?') {
      const next = src[this.i + 1];
      const after = src[this.i + 2];
      if (next === ':') this.i += 2;
      else if (next === '=' || next === '!' || (next === '<' && (after === '=' || after === '!')))
        throw new NotAllowed('must not use lookarounds ((?=, (?!, (?<=, (?<!)');
      else if (next === '<') {
        const close = src.indexOf('>', this.i);
        this.i = close + 1;
      } else throw new NotAllowed(`must not use the group syntax "(?${next ?? ''}"`);
    }
    const alts = this.alternation();
    if (src[this.i] !== ')') throw new NotAllowed('has an unterminated group');
    this.i++;
    let first = NONE();
    let all = NONE();
    let emptyBody = false;
    for (const alt of alts) {
      first = union(first, firstOf(alt));
      all = union(all, allOf(alt));
      if (alt.every(nullable)) emptyBody = true;
    }
    return { first, all, emptyBody, zeroWidth: false, min: 1, max: 1, quantified: false, group: alts, text: '' };
  }

  /** Parses one escape; returns its character set, or 'boundary' for \b and \B. */
  private escape(inClass: boolean): CharSet | 'boundary' {
    const src = this.src;
    this.i++; // backslash
    const c = src[this.i] as string;
    this.i++;
    if (/[1-9]/.test(c)) throw new NotAllowed(`must not use backreferences (\\${c})`);
    if (c === 'k' && src[this.i] === '<' && !inClass) throw new NotAllowed('must not use backreferences (\\k<name>)');
    switch (c) {
      case 'd':
        return pos(DIGITS);
      case 'D':
        return neg(DIGITS);
      case 'w':
        return pos(WORD);
      case 'W':
        return neg(WORD);
      case 's':
        return pos(SPACE);
      case 'S':
        return neg(SPACE);
      case 'b':
        return inClass ? pos(['\b']) : 'boundary';
      case 'B':
        return inClass ? pos(['B']) : 'boundary';
      case 'n':
        return pos(['\n']);
      case 'r':
        return pos(['\r']);
      case 't':
        return pos(['\t']);
      case 'v':
        return pos(['\v']);
      case 'f':
        return pos(['\f']);
      case '0':
        return pos(['\0']);
      case 'x': {
        const hex = src.slice(this.i, this.i + 2);
        if (/^[0-9a-fA-F]{2}$/.test(hex)) {
          this.i += 2;
          return pos([String.fromCharCode(Number.parseInt(hex, 16))]);
        }
        return pos(['x']);
      }
      case 'u': {
        const hex = src.slice(this.i, this.i + 4);
        if (/^[0-9a-fA-F]{4}$/.test(hex)) {
          this.i += 4;
          return pos([String.fromCharCode(Number.parseInt(hex, 16))]);
        }
        return pos(['u']);
      }
      case 'c': {
        const l = src[this.i];
        if (l && /[a-zA-Z]/.test(l)) {
          this.i++;
          return pos([String.fromCharCode(l.charCodeAt(0) % 32)]);
        }
        return pos(['\\', 'c']);
      }
      default:
        return pos([c]);
    }
  }

  private charClass(): CharSet {
    const src = this.src;
    this.i++; // [
    let negated = false;
    if (src[this.i] === '^') {
      negated = true;
      this.i++;
    }
    let set = NONE();
    while (this.i < src.length && src[this.i] !== ']') {
      let item: CharSet;
      let single: string | undefined;
      if (src[this.i] === '\\') {
        const e = this.escape(true) as CharSet;
        item = e;
        single = !e.negated && e.chars.size === 1 ? [...e.chars][0] : undefined;
      } else {
        single = src[this.i] as string;
        item = pos([single]);
        this.i++;
      }
      if (src[this.i] === '-' && single !== undefined && src[this.i + 1] !== ']' && this.i + 1 < src.length) {
        // a range: single '-' end
        this.i++;
        let end: string | undefined;
        if (src[this.i] === '\\') {
          const e = this.escape(true) as CharSet;
          end = !e.negated && e.chars.size === 1 ? [...e.chars][0] : undefined;
          if (end === undefined) item = union(item, union(e, pos(['-'])));
        } else {
          end = src[this.i] as string;
          this.i++;
        }
        if (end !== undefined) {
          const size = end.charCodeAt(0) - single.charCodeAt(0) + 1;
          item = size > 512 ? ANY : pos(rangeChars(single, end));
        }
      }
      set = union(set, item);
    }
    this.i++; // ]
    return negated ? complement(set) : set;
  }

  private quantifier(atom: Atom): void {
    const src = this.src;
    const c = src[this.i];
    let min: number;
    let max: number;
    if (c === '*') [min, max] = [0, Number.POSITIVE_INFINITY];
    else if (c === '+') [min, max] = [1, Number.POSITIVE_INFINITY];
    else if (c === '?') [min, max] = [0, 1];
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(this.i));
      if (!m) return; // a literal "{" (Annex B)
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] ? Number(m[3]) : Number.POSITIVE_INFINITY;
      if (min > MAX_REPEAT || (Number.isFinite(max) && max > MAX_REPEAT))
        throw new NotAllowed(`must not repeat more than ${MAX_REPEAT} times ("${m[0]}")`);
      this.i += m[0].length - 1;
    } else return;
    this.i++;
    if (src[this.i] === '?') this.i++; // lazy: same backtracking
    atom.min = min;
    atom.max = max;
    atom.quantified = true;
  }
}

const nullable = (a: Atom): boolean => a.zeroWidth || a.min === 0 || a.emptyBody;

function firstOf(seq: Atom[]): CharSet {
  let set = NONE();
  for (const a of seq) {
    set = union(set, a.first);
    if (!nullable(a)) break;
  }
  return set;
}

function allOf(seq: Atom[]): CharSet {
  let set = NONE();
  for (const a of seq) set = union(set, a.all);
  return set;
}

interface Inner {
  quantifiers: number;
  unbounded: boolean;
  choices: number;
}

function summarize(alts: Atom[][]): Inner {
  const out: Inner = { quantifiers: 0, unbounded: false, choices: alts.length };
  for (const alt of alts)
    for (const a of alt) {
      if (a.quantified) {
        out.quantifiers++;
        if (!Number.isFinite(a.max)) out.unbounded = true;
        else out.choices *= a.max - a.min + 1;
      }
      if (a.group) {
        const g = summarize(a.group);
        out.quantifiers += g.quantifiers;
        out.unbounded ||= g.unbounded;
        // A group repeated up to `max` times chooses anew in each repetition: (a?a){1,3} nested
        // three times has about 3 × (3 × (3 × 2³)³)³ ways, not 3 × 3 × 3 × 2.
        out.choices *= a.quantified && Number.isFinite(a.max) ? Math.min(g.choices ** a.max, REGEX_MAX_CHOICES + 1) : g.choices;
      }
      if (out.choices > REGEX_MAX_CHOICES) out.choices = REGEX_MAX_CHOICES + 1;
    }
  return out;
}

/** An alternation anywhere inside `alts` whose branches can start with the same character. */
function overlappingAlternation(alts: Atom[][]): boolean {
  for (let i = 0; i < alts.length; i++)
    for (let j = i + 1; j < alts.length; j++) {
      const a = alts[i] as Atom[];
      const b = alts[j] as Atom[];
      if (a.every(nullable) || b.every(nullable) || overlaps(firstOf(a), firstOf(b))) return true;
    }
  return alts.some((alt) => alt.some((a) => a.group !== undefined && overlappingAlternation(a.group)));
}

function countUnbounded(alts: Atom[][]): number {
  let n = 0;
  for (const alt of alts)
    for (const a of alt) {
      if (a.quantified && !Number.isFinite(a.max)) n++;
      if (a.group) n += countUnbounded(a.group);
    }
  return n;
}

/**
 * A repeated body whose iterations cannot overlap: one sequence that starts (or ends) with a
 * single-character delimiter nothing else in it can match, like `(-[a-z]+)*` or `([^,]+,)*`, with
 * no alternation, no quantified group and no two quantified atoms that could trade characters.
 * Each iteration then has one way to match, so the repetition backtracks linearly.
 */
function delimited(alts: Atom[][]): boolean {
  if (alts.length !== 1) return false;
  const seq = alts[0] as Atom[];
  if (seq.some((a) => a.group !== undefined && (a.quantified || summarize(a.group).quantifiers > 0 || a.group.length > 1))) return false;
  const isDelimiter = (a: Atom | undefined, rest: Atom[]) =>
    a !== undefined && !a.quantified && !a.zeroWidth && a.group === undefined && !overlaps(a.first, allOf(rest));
  if (!isDelimiter(seq[0], seq.slice(1)) && !isDelimiter(seq[seq.length - 1], seq.slice(0, -1))) return false;
  return !seq.some((a, i) => a.quantified && ambiguousWithNext(seq, i, () => true));
}

/** A quantified atom after the one at `idx`, reachable across optional atoms only, that can take its characters. */
function ambiguousWithNext(seq: Atom[], idx: number, counts: (a: Atom) => boolean): Atom | undefined {
  const atom = seq[idx] as Atom;
  for (let j = idx + 1; j < seq.length; j++) {
    const next = seq[j] as Atom;
    if (next.quantified && counts(next) && overlaps(atom.all, next.first)) return next;
    if (!nullable(next)) return undefined;
  }
  return undefined;
}

const unbounded = (a: Atom) => a.quantified && !Number.isFinite(a.max);

function checkAlternatives(alts: Atom[][]): void {
  for (const seq of alts) {
    for (const [idx, atom] of seq.entries()) {
      if (atom.group && atom.quantified && atom.max > 1) {
        const inner = summarize(atom.group);
        if (!Number.isFinite(atom.max)) {
          if (inner.quantifiers > 0 && !delimited(atom.group))
            throw new Unsafe(
              `nested quantifier: the repeated group "${atom.text}" contains a quantifier, like (a+)+ (allowed only after a delimiter, as in (-[a-z]+)*)`,
            );
          if (atom.emptyBody) throw new Unsafe(`the repeated group "${atom.text}" can match empty text`);
          if (overlappingAlternation(atom.group))
            throw new Unsafe(`the repeated group "${atom.text}" has alternatives that can match the same text, like (a|a)*`);
        } else if (inner.unbounded || inner.choices ** atom.max > REGEX_MAX_CHOICES) {
          throw new Unsafe(
            `nested quantifier: the repeated group "${atom.text}" contains a quantifier or alternation with too many ways to match`,
          );
        }
      }
      if (unbounded(atom)) {
        const next = ambiguousWithNext(seq, idx, unbounded);
        if (next) throw new Unsafe(`adjacent repetitions "${atom.text}" and "${next.text}" can match the same characters, like \\d+\\d+`);
      }
      if (atom.group) checkAlternatives(atom.group);
    }
  }
}

/**
 * Returns why `source` is refused as a policy regex, or undefined when it is accepted.
 * Never throws.
 */
export function checkRegexSafety(source: string): string | undefined {
  if (source.length > REGEX_MAX_LENGTH) return `must be at most ${REGEX_MAX_LENGTH} characters (received ${source.length})`;
  try {
    new RegExp(source);
  } catch (e) {
    return `does not compile: ${(e as Error).message}`;
  }
  try {
    const alts = new Parser(source).parse();
    const unbounded = countUnbounded(alts);
    if (unbounded > REGEX_MAX_UNBOUNDED)
      return `is too complex: ${unbounded} unbounded quantifiers (*, +, {n,}), at most ${REGEX_MAX_UNBOUNDED} allowed`;
    checkAlternatives(alts);
    return undefined;
  } catch (e) {
    if (e instanceof Unsafe) return `could backtrack catastrophically: ${e.message}`;
    if (e instanceof NotAllowed) return e.message;
    return `could not be checked: ${(e as Error).message}`;
  }
}
