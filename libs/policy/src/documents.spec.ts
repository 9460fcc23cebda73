import { describe, expect, it } from 'vitest';
import { parsePolicyDocuments } from './documents';

describe('parsePolicyDocuments', () => {
  it('splits kubectl-style multi-document YAML and skips empty documents', () => {
    const text = ['---', 'kind: A', 'n: 1', '---', '# only a comment', '---', 'kind: B', '---', ''].join('\n');
    expect(parsePolicyDocuments(text)).toEqual([
      { index: 0, value: { kind: 'A', n: 1 } },
      { index: 2, value: { kind: 'B' } },
    ]);
  });

  it('reports a broken document with its index and keeps the others', () => {
    const docs = parsePolicyDocuments('kind: A\n---\nkind: [unclosed\n---\nkind: C\n');
    expect(docs[0]).toEqual({ index: 0, value: { kind: 'A' } });
    expect(docs[1]?.index).toBe(1);
    expect(docs[1]?.error).toMatch(/flow sequence|unclosed|Missing/i);
    expect(docs[2]).toEqual({ index: 2, value: { kind: 'C' } });
  });

  it('refuses duplicate keys and alias bombs instead of expanding them', () => {
    expect(parsePolicyDocuments('a: 1\na: 2\n')[0]?.error).toMatch(/unique/i);
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      ...Array.from(
        { length: 8 },
        (_, i) =>
          `${'b'.repeat(i + 1)}: &${'b'.repeat(i + 1)} [${Array(9)
            .fill(i === 0 ? '*a' : `*${'b'.repeat(i)}`)
            .join(', ')}]`,
      ),
    ].join('\n');
    expect(parsePolicyDocuments(bomb)[0]?.error).toMatch(/alias/i);
  });

  it('reads JSON too, and returns nothing for empty text', () => {
    expect(parsePolicyDocuments('{"kind": "RouteRule"}')).toEqual([{ index: 0, value: { kind: 'RouteRule' } }]);
    expect(parsePolicyDocuments('')).toEqual([]);
  });
});
