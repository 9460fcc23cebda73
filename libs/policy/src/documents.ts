import { parseAllDocuments } from 'yaml';

/** Largest manifest accepted, in characters. */
const MAX_TEXT = 1024 * 1024;

/**
 * Splits multi-document YAML (kubectl style, '---'), returns each parsed document or a parse
 * error with its document index (0-based, counting every document in the stream). Empty
 * documents (a trailing '---', comments only, `null`) are skipped. JSON is YAML, so JSON works too.
 * Never throws.
 */
export function parsePolicyDocuments(text: string): { index: number; value?: unknown; error?: string }[] {
  if (text.length > MAX_TEXT) return [{ index: 0, error: `is ${text.length} characters, more than the ${MAX_TEXT} allowed` }];
  let docs: ReturnType<typeof parseAllDocuments>;
  try {
    docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    return [{ index: 0, error: (e as Error).message }];
  }
  const list = Array.isArray(docs) ? docs : [docs];
  const out: { index: number; value?: unknown; error?: string }[] = [];
  list.forEach((doc, index) => {
    if (doc.errors.length) {
      out.push({ index, error: doc.errors.map((e) => e.message).join('; ') });
      return;
    }
    try {
      const value: unknown = doc.toJS({ maxAliasCount: 100 });
      if (value !== null && value !== undefined) out.push({ index, value });
    } catch (e) {
      out.push({ index, error: (e as Error).message });
    }
  });
  return out;
}
