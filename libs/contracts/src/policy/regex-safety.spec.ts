import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkRegexSafety, REGEX_MAX_LENGTH } from './regex-safety';

describe('checkRegexSafety', () => {
  it.each([
    '/api/v[0-9]+/users/[a-z0-9-]+',
    '^[a-z]+(-[a-z]+)*$',
    '(\\d{1,3}\\.){3}\\d{1,3}',
    '.*foo.*',
    '(foo|bar)+',
    '(.|\\n)*',
    '(\\w|-)+',
    '([^,]*,)+x',
    '^(?<version>v[0-9]+)$',
    'chaos-suite/[0-9.]+',
    '[a-z0-9-]{1,32}',
    'a{2}b{1,3}',
    '\\bword\\b',
  ])('accepts %s', (src) => {
    expect(checkRegexSafety(src)).toBeUndefined();
  });

  it.each([
    ['(a+)+', /nested quantifier: the repeated group "\(a\+\)\+" contains a quantifier/],
    ['(a*)*', /nested quantifier/],
    ['(a?)+b', /nested quantifier/],
    ['(x+x+)+y', /nested quantifier/],
    ['(a|a)*', /alternatives that can match the same text/],
    ['(a|ab)+c', /alternatives that can match the same text/],
    ['(|a)+', /can match empty text|alternatives/],
    ['(a?){30}', /too many ways to match/],
    ['(a+){3}', /too many ways to match|contains a quantifier/],
    // Found by the generated-pattern property below: bounded repetitions nested three deep (45 s on 25 characters).
    ['(?:(?:(?:(?:a)?a){1,3}){1,3}){1,3}', /too many ways to match/],
    ['\\d+\\d+', /adjacent repetitions "\\d\+" and "\\d\+"/],
    ['.*.*x', /adjacent repetitions/],
    ['\\w+\\s*\\w+', /adjacent repetitions/],
    ['(a)\\1', /^must not use backreferences \(\\1\)$/],
    ['(?<x>a)\\k<x>', /must not use backreferences/],
    ['(?=a)b', /must not use lookarounds/],
    ['(?!a)b', /must not use lookarounds/],
    ['(?<=a)b', /must not use lookarounds/],
    ['(?<!a)b', /must not use lookarounds/],
    ['a{1,5000}', /must not repeat more than 1000 times/],
    ['a+b+c+d+e+f+g+', /too complex: 7 unbounded quantifiers/],
    ['(', /^does not compile: .*Unterminated group/],
    ['[a-', /^does not compile/],
    ['a**', /^does not compile: .*Nothing to repeat/],
    ['a'.repeat(REGEX_MAX_LENGTH + 1), /^must be at most 256 characters \(received 257\)$/],
  ])('refuses %s', (src, why) => {
    expect(checkRegexSafety(src)).toMatch(why);
  });

  it('never throws, whatever the source', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[()[\]{}|*+?.\\a-c0-9^$<>=!:,-]{0,40}$/)), (src) => {
        const r = checkRegexSafety(src);
        expect(r === undefined || (typeof r === 'string' && r.length > 0)).toBe(true);
        // whatever it accepts compiles
        if (r === undefined) expect(() => new RegExp(src)).not.toThrow();
      }),
      { numRuns: 5000 },
    );
  });

  it('accepts no pattern that backtracks exponentially on a short input (generated patterns)', () => {
    // Patterns over a tiny alphabet, matched whole against inputs that make bad patterns explode:
    // an accepted exponential pattern would take seconds on these 25-character inputs.
    const atom = fc.constantFrom('a', 'b', '-', '.', '[ab]', '[^-]', '\\w', '\\d');
    const pattern: fc.Arbitrary<string> = fc.letrec<{ p: string }>((tie) => ({
      p: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        atom,
        fc.tuple(tie('p'), tie('p')).map(([x, y]) => x + y),
        fc.tuple(tie('p'), tie('p')).map(([x, y]) => `(${x}|${y})`),
        fc.tuple(tie('p'), fc.constantFrom('*', '+', '?', '{2}', '{1,3}', '{2,}')).map(([x, q]) => `(?:${x})${q}`),
      ),
    })).p;
    const inputs = ['a', 'ab', '-a', 'a-', 'aab', '1'].map((u) => `${u.repeat(Math.ceil(24 / u.length))}!`);
    let accepted = 0;
    fc.assert(
      fc.property(pattern, (src) => {
        if (checkRegexSafety(src) !== undefined) return;
        accepted++;
        const re = new RegExp(`^(?:${src})$`);
        const start = performance.now();
        for (const s of inputs) re.test(s);
        // a generous bound: accepted patterns take microseconds here, exponential ones seconds
        expect(performance.now() - start, src).toBeLessThan(250);
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });
});
