#!/usr/bin/env node
// Writes docs/asyncapi.yaml from libs/contracts (build first: `npm run asyncapi` does).
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { renderAsyncApiYaml } = createRequire(import.meta.url)(join(root, 'libs/contracts/dist/asyncapi.js'));
writeFileSync(join(root, 'docs/asyncapi.yaml'), renderAsyncApiYaml());
process.stdout.write('docs/asyncapi.yaml written\n');
