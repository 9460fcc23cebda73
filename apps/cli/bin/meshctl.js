#!/usr/bin/env node
// `meshctl` as npm links it (node_modules/.bin/meshctl): this file is in the repository, so the
// link exists right after `npm ci`, before anything is built; it runs the compiled CLI.
try {
  require('../dist/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/main.js')) {
    process.stderr.write('meshctl: not built yet: run `npx tsc -b` (or `npm run build`) first\n');
    process.exit(1);
  }
  throw e;
}
