// Finds a command-line tool a suite needs and installs its Debian package when it is missing and
// this process may (root, apt-get present). Never fails: returns why a tool is unavailable.
import { spawnSync } from 'node:child_process';
import { note } from './progress.mjs';

function which(bin) {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * `{ path, installed }` when `bin` is on PATH (installing `pkg` with apt-get first when needed and
 * possible), else `{ missing: reason }`. `installed` says the suite installed it during this run.
 */
export function ensureTool(bin, pkg = bin) {
  const found = which(bin);
  if (found) return { path: found, installed: false };
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return { missing: `${bin} is not installed and installing it needs root (\`apt-get install -y ${pkg}\`)` };
  if (!which('apt-get')) return { missing: `${bin} is not installed and there is no apt-get to install it with` };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { encoding: 'utf8', env, timeout: 300_000 });
  note(`  ${bin} is missing: installing the ${pkg} package with apt-get…`);
  let r = install();
  if (r.status !== 0) {
    spawnSync('apt-get', ['update'], { encoding: 'utf8', env, timeout: 300_000 });
    r = install();
  }
  const path = which(bin);
  if (path) {
    note(`  installed ${pkg} (${path})`);
    return { path, installed: true };
  }
  const why = `${r.error?.message ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-2).join(' ');
  return { missing: `${bin} is not installed and \`apt-get install -y ${pkg}\` failed${why ? `: ${why}` : ''}` };
}
