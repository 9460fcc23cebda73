#!/usr/bin/env node
// After `tsc -b`: make command entry points executable (tsc does not), so `npx meshctl` runs.
import { chmodSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const bin of ['apps/cli/dist/main.js']) if (existsSync(join(root, bin))) chmodSync(join(root, bin), 0o755);
