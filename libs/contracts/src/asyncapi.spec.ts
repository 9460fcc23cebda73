import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { renderAsyncApiYaml } from './asyncapi';

const docPath = join(__dirname, '..', '..', '..', 'docs', 'asyncapi.yaml');

describe('docs/asyncapi.yaml', () => {
  it('matches the contract lib (run `npm run asyncapi` after changing a schema)', () => {
    expect(readFileSync(docPath, 'utf8')).toBe(renderAsyncApiYaml());
  });

  it('is an AsyncAPI 3 document whose channels and operations resolve', () => {
    const doc = parse(readFileSync(docPath, 'utf8'));
    expect(doc.asyncapi).toBe('3.0.0');
    for (const [name, op] of Object.entries<{ channel: { $ref: string } }>(doc.operations)) {
      const ch = op.channel.$ref.replace('#/channels/', '');
      expect(doc.channels[ch], `operation ${name}`).toBeDefined();
    }
    for (const ch of Object.values<{ messages: Record<string, { $ref: string }> }>(doc.channels)) {
      for (const m of Object.values(ch.messages)) expect(doc.components.messages[m.$ref.split('/').pop() as string]).toBeDefined();
    }
    expect(doc.channels.register.address).toBe('mesh.v1.registry.{service}.register');
  });
});
