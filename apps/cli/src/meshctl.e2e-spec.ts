import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { EndpointSetV1 } from '@novamesh/contracts';
import { type ManagedProcess, repoRoot, runMeshctl, startDiscovery, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

// Drives the compiled meshctl (`npx tsc -b` first) against real NATS, Redis and one discovery
// replica, and asserts on what a user sees: exit codes, tables, documents, error messages.

const fixture = (name: string) => join(__dirname, '__fixtures__', name);
const meshctlBin = resolve(repoRoot, 'apps/cli/dist/main.js');
const STACK_FRAME = /^\s+at /m;

let nats: TestNats;
let redis: TestRedis;
let discovery: ManagedProcess;
let env: NodeJS.ProcessEnv;

const meshctl = (...args: string[]) => runMeshctl(args, env);

const meshctlWithStdin = (args: string[], input: string) => runMeshctl(args, env, input);

async function serviceNames(): Promise<string[]> {
  const r = await meshctl('get', 'services', '-o', 'json');
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as EndpointSetV1[]).map((s) => s.service);
}

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  discovery = await startDiscovery({ natsUrl: nats.url, redisUrl: redis.url, instance: 'd1' });
  env = { NATS_URL: nats.url };
});

afterAll(async () => {
  await discovery?.stop();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
});

describe('meshctl', () => {
  it('registers a service from a YAML manifest once discovery has applied it', async () => {
    const r = await meshctl('register', '-f', fixture('checkout.yaml'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('service/checkout registered (http port 8080, 2 endpoints)\n');
  });

  it('lists it in the services table with healthy/total endpoints', async () => {
    const r = await meshctl('get', 'services');
    expect(r.code, r.stderr).toBe(0);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'TYPE', 'PORT', 'ENDPOINTS', 'REVISION']);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/^checkout\s+http\s+8080\s+2\/2\s+\d+$/);
  });

  it('prints the same services as JSON with -o json', async () => {
    const r = await meshctl('get', 'services', '-o', 'json');
    expect(r.code, r.stderr).toBe(0);
    const sets = JSON.parse(r.stdout) as EndpointSetV1[];
    expect(sets.map((s) => s.service)).toEqual(['checkout']);
    expect(sets[0]?.endpoints.map((e) => [e.id, e.address, e.port, e.weight, e.status])).toEqual([
      ['checkout-v1-a', '10.0.1.11', 9201, 1, 'healthy'],
      ['checkout-v2-a', '10.0.1.12', 9202, 3, 'healthy'],
    ]);
  });

  it('filters endpoints by label, as a table and as YAML', async () => {
    const table = await meshctl('get', 'endpoints', 'checkout', '-l', 'version=v2');
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['ID', 'ADDRESS', 'PORT', 'WEIGHT', 'STATUS', 'REASON', 'LABELS']);
    expect(rows).toEqual([expect.stringMatching(/^checkout-v2-a\s+10\.0\.1\.12\s+9202\s+3\s+healthy\s+-\s+version=v2,zone=eu-west-1b$/)]);

    const yaml = await meshctl('get', 'endpoints', 'checkout', '-l', 'version=v1', '-o', 'yaml');
    expect(yaml.code, yaml.stderr).toBe(0);
    const set = parseYaml(yaml.stdout) as EndpointSetV1;
    expect(set.service).toBe('checkout');
    expect(set.endpoints.map((e) => e.id)).toEqual(['checkout-v1-a']);
  });

  it('watches endpoint sets as they change, one JSON line each, until Ctrl-C', async () => {
    const watch: ChildProcessWithoutNullStreams = spawn(process.execPath, [meshctlBin, 'watch', 'endpoints', 'checkout', '-o', 'json'], {
      env: { ...process.env, NO_COLOR: '1', ...env },
    });
    const exited = new Promise<number | null>((r) => watch.on('exit', (code) => r(code)));
    let out = '';
    let err = '';
    watch.stdout.on('data', (b) => {
      out += b;
    });
    watch.stderr.on('data', (b) => {
      err += b;
    });
    const sets = () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as EndpointSetV1);
    try {
      const first = await waitFor(() => sets()[0], { timeoutMs: 10_000, what: 'the first endpoint set' });
      expect(first.endpoints.map((e) => e.id)).toEqual(['checkout-v1-a', 'checkout-v2-a']);

      // Scale out by piping a JSON manifest into a second meshctl.
      const scaled = await meshctlWithStdin(['register', '-f', '-'], readFileSync(fixture('checkout-scaled.json'), 'utf8'));
      expect(scaled.code, scaled.stderr).toBe(0);
      expect(scaled.stdout).toBe('service/checkout registered (http port 8080, 3 endpoints)\n');

      const changed = await waitFor(() => sets().find((s) => s.endpoints.length === 3), { timeoutMs: 10_000, what: 'the scaled set' });
      expect(changed.endpoints.map((e) => e.id)).toEqual(['checkout-v1-a', 'checkout-v2-a', 'checkout-v2-b']);
      expect(changed.revision).toBeGreaterThan(first.revision);

      // NATS goes away and comes back: the watch says so on stderr (stdout stays one JSON line per set).
      expect(err).toBe('');
      await nats.stop();
      await waitFor(() => /lost the connection to NATS/.test(err), { timeoutMs: 20_000, what: 'the watch to say it lost NATS' });
      await nats.restart();
      await waitFor(() => /reconnected to NATS/.test(err), { timeoutMs: 20_000, what: 'the watch to say it reconnected' });
      expect(err).toMatch(/^meshctl: lost the connection to NATS \(.+\); reconnecting — what is shown may be stale until then$/m);
      expect(err).toMatch(/^meshctl: reconnected to NATS \(.+\); following checkout again$/m);
    } finally {
      watch.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(sets().length).toBeGreaterThanOrEqual(2);
  });

  it('refuses an invalid manifest with every problem and its path, registering nothing', async () => {
    const before = await serviceNames();
    const r = await meshctl('register', '-f', fixture('invalid-service.yaml'));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('is not a valid service');
    expect(r.stderr).toContain("  name: must be 1-63 lowercase letters, digits or '-'");
    expect(r.stderr).toContain('  endpoints[1].port: must be between 1 and 65535');
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(await serviceNames()).toEqual(before);
  });

  it('refuses a manifest claiming a sidecar (the label a sidecar sets itself), registering nothing', async () => {
    const before = await serviceNames();
    const manifest = JSON.stringify({
      name: 'claims-sidecar',
      type: 'http',
      port: 80,
      endpoints: [
        { id: 'e1', address: '127.0.0.1', port: 8081 },
        { id: 'e2', address: '127.0.0.1', port: 8082, labels: { 'novamesh.io/sidecar': 'made-up' } },
      ],
    });
    const r = await meshctlWithStdin(['register', '-f', '-'], manifest);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: <stdin> is not a valid service\n {2}endpoints\[1\]\.labels\["novamesh\.io\/sidecar"\]: is set by a sidecar/,
    );
    expect(r.stderr).toContain('meshctl run or meshctl sidecar');
    expect(await serviceNames()).toEqual(before);
  });

  it('refuses a file that is not one UTF-8 manifest (several YAML documents, invalid UTF-8, endless input) with exit 1, saying why', async () => {
    const two = await meshctlWithStdin(['register', '-f', '-'], 'name: a\ntype: http\nport: 80\n---\nname: b\ntype: http\nport: 80\n');
    expect([two.code, two.stderr]).toEqual([1, 'error: <stdin> holds 2 YAML documents: register takes one service per file\n']);
    // A trailing `---` is no second document.
    const trailing = await meshctlWithStdin(['register', '-f', '-'], 'name: trailing\ntype: http\nport: 80\n---\n');
    expect(trailing.code, trailing.stderr).toBe(0);
    expect(await meshctl('deregister', 'trailing', '--drain', '0s')).toMatchObject({ code: 0 });
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-bad-'));
    try {
      const latin1 = join(dir, 'latin1.yaml');
      writeFileSync(latin1, Buffer.concat([Buffer.from('name: caf'), Buffer.from([0xe9]), Buffer.from('\ntype: http\nport: 80\n')]));
      const bad = await meshctl('register', '-f', latin1);
      expect([bad.code, bad.stderr]).toEqual([1, `error: ${latin1} is not UTF-8 text (an invalid byte at offset 9)\n`]);
      const endless = await meshctl('apply', '-f', '/dev/zero');
      expect(endless.code).toBe(1);
      expect(endless.stderr).toBe('error: /dev/zero is larger than 16 MiB: not a manifest or policy file\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a manifest too large for one registry event (exit 1, the size and the limit), registering nothing', async () => {
    const before = await serviceNames();
    const labels = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`label-${i}`, 'v'.repeat(60)]));
    // About 1.4 MB: beyond NATS's max_payload too, which used to be reported as an unreachable mesh (exit 3).
    const endpoints = Array.from({ length: 1000 }, (_, i) => ({ id: `e${i}`, address: '10.0.0.1', port: 1000 + i, labels }));
    const r = await meshctlWithStdin(['register', '-f', '-'], JSON.stringify({ name: 'huge', type: 'http', port: 80, endpoints }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/register of "huge" is \d+ bytes, more than the 262144 a registry event may be/);
    expect(r.stderr).not.toMatch(/unreachable|check --nats/);
    expect(await serviceNames()).toEqual(before);
  });

  it('deregisters a service, after which it is gone', async () => {
    const r = await meshctl('deregister', 'checkout', '--drain', '0s');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('service/checkout deregistered\n');
    expect(await serviceNames()).not.toContain('checkout');
    const table = await meshctl('get', 'services');
    expect(table.code).toBe(0);
    expect(table.stdout).not.toMatch(/^checkout\s/m);
  });

  it('exits 4 for a service that is not registered', async () => {
    for (const args of [
      ['get', 'endpoints', 'checkout'],
      ['deregister', 'no-such-service'],
    ]) {
      const r = await meshctl(...args);
      expect(r.code, args.join(' ')).toBe(4);
      expect(r.stderr).toMatch(/^error: service "(checkout|no-such-service)" is not registered$/m);
      expect(r.stderr).not.toMatch(STACK_FRAME);
    }
  });

  it('exits 3 with a clear message when NATS is unreachable', async () => {
    const r = await meshctl('get', 'services', '--nats', 'nats://127.0.0.1:1');
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error: cannot reach NATS at nats:\/\/127\.0\.0\.1:1/m);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('exits 2 for usage errors', async () => {
    const missing = await meshctl('register');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '-f, --file <path>' not specified");
    const badFormat = await meshctl('get', 'services', '-o', 'xml');
    expect(badFormat.code).toBe(2);
    // A service name that cannot be one is refused before asking anything, naming the argument or flag.
    for (const args of [
      ['deregister', 'BAD!'],
      ['get', 'endpoints', 'Not-A-Name'],
      ['watch', 'endpoints', 'x_y'],
      ['get', 'policies', '--service', 'BAD!'],
    ]) {
      const r = await meshctl(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/(argument '(name|service)'|option '--service <name>').*must be a service name/);
    }
  });
});
