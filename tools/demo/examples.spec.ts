import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePolicyDocuments, validatePolicy } from '@novamesh/policy';
import { describe, expect, it } from 'vitest';

// The demo applies examples/demo/traffic.yaml and its "what to try" list tells users to apply the
// others: each must be a valid policy, or the newcomer's first `meshctl apply` is an error.
const dir = join(__dirname, '..', '..', 'examples', 'demo');

describe('examples/demo', () => {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    it(`${file} holds valid policies without warnings`, () => {
      const docs = parsePolicyDocuments(readFileSync(join(dir, file), 'utf8'));
      expect(docs.length).toBeGreaterThan(0);
      for (const doc of docs) {
        expect(doc.error).toBeUndefined();
        const r = validatePolicy(doc.value);
        expect(r.ok ? [] : r.issues, file).toEqual([]);
        expect(r.ok && r.warnings, file).toEqual([]);
      }
    });
  }
});
