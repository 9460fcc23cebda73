// Parses every script under tools/ with `node --check` (syntax only, nothing runs). TypeScript is
// checked by `tsc -b` and the tests; the plain .mjs scripts (the benchmarks, the demo, the
// launchers) are not, and a benchmark run is the first thing that would notice a syntax error.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');

function* scripts(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* scripts(path);
    else if (/\.(mjs|cjs|js)$/.test(entry.name)) yield path;
  }
}

let failed = 0;
let checked = 0;
for (const file of scripts(join(root, 'tools'))) {
  checked++;
  const r = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`check-syntax: ${relative(root, file)}\n${r.stderr}\n`);
  }
}
if (failed) {
  process.stderr.write(`check-syntax: ${failed} of ${checked} scripts under tools/ do not parse\n`);
  process.exit(1);
}
process.stdout.write(`check-syntax: ${checked} scripts under tools/ parse\n`);
