import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '@novamesh/testing';
import { describe, expect, it } from 'vitest';

// `npx meshctl`, as the README and the demo tell a newcomer to run it: the link npm makes at
// install time must exist in a fresh checkout (its target is in the repository, not built) and run the CLI.
describe('the meshctl command npm links', () => {
  it('exists after install and runs the compiled CLI', () => {
    const link = join(repoRoot, 'node_modules/.bin/meshctl');
    expect(existsSync(link)).toBe(true);
    expect(realpathSync(link)).toBe(join(repoRoot, 'apps/cli/bin/meshctl.js'));
    const version = execFileSync(link, ['--version'], { encoding: 'utf8', timeout: 30_000 }).trim();
    expect(version).toBe((require(join(repoRoot, 'apps/cli/package.json')) as { version: string }).version);
  });
});
