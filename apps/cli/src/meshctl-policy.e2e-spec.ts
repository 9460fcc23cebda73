import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { buckets, type StoredPolicy, validService } from '@novamesh/contracts';
import { policyKey, validatePolicy } from '@novamesh/policy';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, runMeshctl, startDiscovery, startPolicy, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

// Drives the compiled meshctl (`npx tsc -b` first) against real NATS, Redis, one discovery and
// one policy replica: the policy commands as a user runs them, asserting on exit codes, the
// lines printed and what the policy service stored.

const fixture = (name: string) => join(__dirname, '__fixtures__', 'policies', name);
const STACK_FRAME = /^\s+at /m;

let nats: TestNats;
let redis: TestRedis;
const procs: ManagedProcess[] = [];
let mesh: MeshManager;
let env: NodeJS.ProcessEnv;

const meshctl = (...args: string[]) => runMeshctl(args, env);

async function stored(): Promise<StoredPolicy[]> {
  const r = await meshctl('get', 'policies', '-o', 'json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StoredPolicy[];
}

const keys = (policies: StoredPolicy[]) => policies.map((s) => `${s.policy.kind}/${s.policy.name}`);

/** Stores a policy straight into the policy bucket, past the policy service's checks (as an older version could have). */
async function putPolicyDirectly(input: Record<string, unknown>): Promise<void> {
  const v = validatePolicy(input);
  if (!v.ok) throw new Error(JSON.stringify(v.issues));
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).open(buckets.policies);
    await kv.put(policyKey(v.policy), JSON.stringify(v.policy));
  } finally {
    await nc.close();
  }
  await waitFor(async () => keys(await stored()).includes(`${v.policy.kind}/${v.policy.name}`), { what: 'the policy service to see it' });
}

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  procs.push(await startDiscovery({ natsUrl: nats.url, redisUrl: redis.url, instance: 'd1' }));
  procs.push(await startPolicy({ natsUrl: nats.url, instance: 'p1' }));
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
  await mesh.registerService(validService('payment'), { wait: true });
  env = { NATS_URL: nats.url };
});

afterAll(async () => {
  await mesh?.close();
  for (const p of procs.reverse()) await p.stop();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
});

describe('meshctl apply', () => {
  it('creates every document of a multi-document file, in order, like kubectl', async () => {
    const r = await meshctl('apply', '-f', fixture('payment.yaml'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^trafficpolicy\/payment-traffic created \(revision \d+\)$/),
      expect.stringMatching(/^routerule\/payment-canary created \(revision \d+\)$/),
      expect.stringMatching(/^mutualtlspolicy\/payment-mtls created \(revision \d+\)$/),
    ]);
    // The seed's string form was normalized: numbers, lists, durations in milliseconds.
    const traffic = (await stored()).find((s) => s.policy.name === 'payment-traffic')?.policy;
    expect(traffic).toMatchObject({
      loadBalancing: { algorithm: 'least-request' },
      circuitBreaking: { maxConnections: 100, maxPendingRequests: 50 },
      timeouts: { connect: 5_000, request: 30_000 },
      retries: { attempts: 3, retryOn: ['5xx', 'reset'], perTryTimeout: 2_000 },
    });
  });

  it('changes nothing when the same file is applied again (also from stdin)', async () => {
    const before = await stored();
    const r = await runMeshctl(['apply', '-f', '-'], env, readFileSync(fixture('payment.yaml'), 'utf8'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^trafficpolicy\/payment-traffic unchanged \(revision \d+\)$/),
      expect.stringMatching(/^routerule\/payment-canary unchanged \(revision \d+\)$/),
      expect.stringMatching(/^mutualtlspolicy\/payment-mtls unchanged \(revision \d+\)$/),
    ]);
    expect(await stored()).toEqual(before);
  });

  it('--dry-run shows the diff of a changed file and stores nothing', async () => {
    const before = await stored();
    const r = await meshctl('apply', '-f', fixture('payment-random.yaml'), '--dry-run');
    expect(r.code, r.stderr).toBe(0);
    // The diff is the policy as YAML, each line marked '  ' (same), '- ' (removed) or '+ ' (added), indented.
    expect(r.stdout).toMatch(/^trafficpolicy\/payment-traffic configured \(dry run\)\n {4}kind: TrafficPolicy\n/);
    expect(r.stdout).toMatch(/^ {2}- {3}algorithm: least-request$/m);
    expect(r.stdout).toMatch(/^ {2}\+ {3}algorithm: random$/m);
    expect(r.stdout).toMatch(/^routerule\/payment-canary unchanged \(dry run\)$/m);
    expect(r.stdout).toMatch(/^mutualtlspolicy\/payment-mtls unchanged \(dry run\)$/m);
    expect(await stored()).toEqual(before);
  });

  it('applies nothing of a file with an invalid document: every problem with its path, no half-applied file', async () => {
    const r = await meshctl('apply', '-f', fixture('invalid.yaml'));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: TrafficPolicy "payment-broken" \(document 2\): /m);
    expect(r.stderr).toMatch(/^ {2}loadBalancing\.hashKey: /m);
    expect(r.stderr).toMatch(/^ {2}timeouts\.connect: "soon" is not a duration/m);
    expect(r.stderr).toMatch(/^note: nothing applied: 1 of 3 documents refused \(a file is applied whole or not at all\)$/m);
    expect(r.stderr).not.toMatch(STACK_FRAME);
    const names = keys(await stored());
    expect(names).not.toContain('RateLimitPolicy/payment-limits');
    expect(names).not.toContain('TrafficPolicy/payment-broken');
    expect(names).not.toContain('MutualTLSPolicy/payment-never-applied');
    // Its first document alone applies (the tests below use it).
    const first = readFileSync(fixture('invalid.yaml'), 'utf8').split('\n---\n')[0] ?? '';
    const alone = await runMeshctl(['apply', '-f', '-'], env, first);
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stdout).toMatch(/^ratelimitpolicy\/payment-limits created \(revision \d+\)\n$/);
  });

  it('applies nothing of a file that does not parse, naming the broken document', async () => {
    const before = await stored();
    const r = await meshctl('apply', '-f', fixture('unparsable.yaml'));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/is not valid YAML or JSON/);
    expect(r.stderr).toMatch(/^ {2}document 2: /m);
    expect(await stored()).toEqual(before);
  });
});

describe('meshctl get / describe / diff', () => {
  it('lists policies as a table, filtered by kind and service', async () => {
    const r = await meshctl('get', 'policies');
    expect(r.code, r.stderr).toBe(0);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'KIND', 'SERVICE', 'REVISION', 'UPDATED']);
    expect(rows).toContainEqual(expect.stringMatching(/^payment-traffic\s+TrafficPolicy\s+payment\s+\d+\s+\d+[smhd] ago$/));
    expect(rows).toContainEqual(expect.stringMatching(/^payment-canary\s+RouteRule\s+payment\s+\d+\s+/));
    expect(rows).toHaveLength(4);

    const onlyRoutes = await meshctl('get', 'policies', '--kind', 'rr');
    expect(onlyRoutes.stdout.trimEnd().split('\n').slice(1)).toEqual([expect.stringMatching(/^payment-canary\s+RouteRule\s/)]);
    const other = await meshctl('get', 'policies', '--service', 'catalog');
    expect(other.code).toBe(0);
    expect(other.stderr).toBe('No policies match.\n');
    const badKind = await meshctl('get', 'policies', '--kind', 'pod');
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toMatch(/"pod" is not a policy kind/);
  });

  it('describes a policy with its revision and the effective policy of its service', async () => {
    const r = await meshctl('describe', 'policy', 'tp/payment-traffic');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Kind: +TrafficPolicy$/m);
    expect(r.stdout).toMatch(/^Name: +payment-traffic$/m);
    expect(r.stdout).toMatch(/^Revision: +\d+$/m);
    expect(r.stdout).toMatch(/^Updated: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
    expect(r.stdout).toMatch(/^ {2}loadBalancing:\n {4}algorithm: least-request$/m);
    expect(r.stdout).toMatch(/^Effective policy of payment \(revision \d+, updated .+\):$/m);
    expect(r.stdout).toMatch(/^ {2}Traffic: +payment-traffic \(load balancing least-request\)$/m);
    expect(r.stdout).toMatch(/^ {2}Routes: +payment-canary \(2 routes\)$/m);
    expect(r.stdout).toMatch(/^ {2}mTLS: +strict \(from /m);

    const twoArgs = await meshctl('describe', 'policy', 'TrafficPolicy', 'payment-traffic', '-o', 'yaml');
    expect(twoArgs.code, twoArgs.stderr).toBe(0);
    const doc = parseYaml(twoArgs.stdout) as { stored: StoredPolicy; effective: Record<string, { service: string }> };
    expect(doc.stored.policy.name).toBe('payment-traffic');
    expect(doc.effective.payment?.service).toBe('payment');

    const missing = await meshctl('describe', 'policy', 'tp/nope');
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/^error: TrafficPolicy "nope" does not exist$/m);
    const usage = await meshctl('describe', 'policy', 'pod/nope');
    expect(usage.code).toBe(2);
  });

  it('diff exits 0 when nothing would change, 1 with the differences, 2 for an invalid file', async () => {
    const same = await meshctl('diff', '-f', fixture('payment.yaml'));
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toBe('');

    const changed = await meshctl('diff', '-f', fixture('payment-random.yaml'));
    expect(changed.code, changed.stderr).toBe(1);
    expect(changed.stdout).toMatch(
      /^--- trafficpolicy\/payment-traffic \(stored\)\n\+\+\+ trafficpolicy\/payment-traffic \(document 1\)\n/,
    );
    expect(changed.stdout).toMatch(/random/);
    expect(changed.stdout).not.toMatch(/routerule/);

    const invalid = await meshctl('diff', '-f', fixture('invalid.yaml'));
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/^error: TrafficPolicy "payment-broken" \(document 2\): /m);
    const unparsable = await meshctl('diff', '-f', fixture('unparsable.yaml'));
    expect(unparsable.code).toBe(2);
  });
});

describe('meshctl history / rollback / delete / analyze', () => {
  it('shows the history of a policy and rolls back to an earlier revision', async () => {
    const applied = await meshctl('apply', '-f', fixture('payment-random.yaml'));
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/^trafficpolicy\/payment-traffic configured \(revision \d+\)$/m);

    const history = await meshctl('history', 'policy', 'trafficpolicy/payment-traffic');
    expect(history.code, history.stderr).toBe(0);
    const [header, ...rows] = history.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['REVISION', 'OPERATION', 'UPDATED', 'SUMMARY']);
    expect(rows).toEqual([
      expect.stringMatching(/^\d+\s+applied\s+\S+Z\s+created$/),
      expect.stringMatching(/^\d+\s+applied\s+\S+Z\s+changed loadBalancing$/),
    ]);
    const first = Number(rows[0]?.split(/\s+/)[0]);
    const second = Number(rows[1]?.split(/\s+/)[0]);

    const rolled = await meshctl('rollback', 'policy', 'tp', 'payment-traffic', '--to', String(first));
    expect(rolled.code, rolled.stderr).toBe(0);
    const m = /^trafficpolicy\/payment-traffic rolled back to revision (\d+) \(now revision (\d+)\)\n$/.exec(rolled.stdout);
    expect(m?.[1]).toBe(String(first));
    expect(Number(m?.[2])).toBeGreaterThan(second);
    const now = (await stored()).find((s) => s.policy.name === 'payment-traffic');
    expect(now?.policy).toMatchObject({ loadBalancing: { algorithm: 'least-request' } });

    const after = await meshctl('history', 'policy', 'tp/payment-traffic');
    expect(after.stdout).toMatch(new RegExp(`changed loadBalancing \\(same as revision ${first}\\)$`, 'm'));

    const unknown = await meshctl('rollback', 'policy', 'tp/payment-traffic', '--to', '999999');
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/has no stored revision 999999/);
    // What there is instead: the revisions kept.
    expect(unknown.stderr).toMatch(new RegExp(`has no stored revision 999999 \\(known revisions: .*\\b${first}\\b.*\\)`));
    const noTo = await meshctl('rollback', 'policy', 'tp/payment-traffic');
    expect(noTo.code).toBe(2);
  });

  it('deletes by kind and name, and by file, reporting what does not exist', async () => {
    const one = await meshctl('delete', 'RateLimitPolicy', 'payment-limits');
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^ratelimitpolicy\/payment-limits deleted \(last revision \d+\)\n$/);

    const again = await meshctl('delete', 'rl/payment-limits');
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/^error: RateLimitPolicy "payment-limits" does not exist$/m);

    const mtls = await meshctl('delete', 'mtls', 'payment-mtls');
    expect(mtls.code, mtls.stderr).toBe(0);
    // The file names payment-mtls too, gone already: reported, the others are still deleted.
    const byFile = await meshctl('delete', '-f', fixture('payment.yaml'));
    expect(byFile.code).toBe(4);
    expect(byFile.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^trafficpolicy\/payment-traffic deleted/),
      expect.stringMatching(/^routerule\/payment-canary deleted/),
    ]);
    expect(byFile.stderr).toMatch(/^error: MutualTLSPolicy "payment-mtls" does not exist$/m);
    expect(await stored()).toEqual([]);
    const ignored = await meshctl('delete', '-f', fixture('payment.yaml'), '--ignore-not-found');
    expect(ignored.code, ignored.stderr).toBe(0);
  });

  it('analyze lists findings and exits 1 only for error-level ones', async () => {
    const empty = await meshctl('analyze');
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stderr).toBe('No problems found.\n');

    const applied = await runMeshctl(
      ['apply', '-f', '-'],
      env,
      'kind: MutualTLSPolicy\nname: ghost-mtls\nserviceName: ghost\nmode: strict\n',
    );
    expect(applied.code, applied.stderr).toBe(0);
    const warned = await meshctl('analyze');
    expect(warned.code, warned.stderr).toBe(0);
    const [header, ...rows] = warned.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['LEVEL', 'CODE', 'POLICY', 'MESSAGE']);
    expect(rows).toContainEqual(
      expect.stringMatching(
        /^warning\s+ServiceNotRegistered\s+mutualtlspolicy\/ghost-mtls\s+serviceName: service "ghost" is not registered/,
      ),
    );

    // A second TrafficPolicy for the same service is refused (one per service), in one file or two.
    const both =
      'kind: TrafficPolicy\nname: payment-a\nserviceName: payment\n---\nkind: TrafficPolicy\nname: payment-b\nserviceName: payment\n';
    const two = await runMeshctl(['apply', '-f', '-'], env, both);
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(
      /^error: TrafficPolicy "payment-b" \(document 2\): serviceName: TrafficPolicy "payment-a" \(document 1\) already configures "payment"/m,
    );
    expect(two.stderr).toMatch(/^note: nothing applied/m);
    const a = await runMeshctl(['apply', '-f', '-'], env, both.split('---\n')[0] ?? '');
    expect(a.code, a.stderr).toBe(0);
    const b = await runMeshctl(['apply', '-f', '-'], env, both.split('---\n')[1] ?? '');
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(
      /TrafficPolicy "payment-a" already configures "payment" \(one TrafficPolicy per service\): change that one, or delete it first/,
    );
    expect(keys(await stored())).not.toContain('TrafficPolicy/payment-b');
    // Nor can one come to configure it by an update (a rollback is an update too).
    const elsewhere = 'kind: TrafficPolicy\nname: payment-c\nserviceName: payment-legacy\n';
    expect((await runMeshctl(['apply', '-f', '-'], env, elsewhere)).code).toBe(0);
    const moved = await runMeshctl(['apply', '-f', '-'], env, elsewhere.replace('payment-legacy', 'payment'));
    expect(moved.code).toBe(1);
    expect(moved.stderr).toMatch(/TrafficPolicy "payment-a" already configures "payment" \(one TrafficPolicy per service\)/);
    expect((await stored()).find((s) => s.policy.name === 'payment-c')?.policy).toMatchObject({ serviceName: 'payment-legacy' });
    // One policy twice in a file is refused whole, dry run or not: it would write two revisions at every apply.
    const twice =
      'kind: MutualTLSPolicy\nname: same\nserviceName: payment\nmode: strict\n---\nkind: MutualTLSPolicy\nname: same\nserviceName: payment\nmode: disable\n';
    for (const args of [
      ['apply', '-f', '-'],
      ['apply', '-f', '-', '--dry-run'],
    ]) {
      const dup = await runMeshctl(args, env, twice);
      expect(dup.code, args.join(' ')).toBe(1);
      expect(dup.stderr).toMatch(
        /^error: MutualTLSPolicy "same" \(document 2\): the same policy as MutualTLSPolicy "same" \(document 1\)/m,
      );
    }
    expect(keys(await stored())).not.toContain('MutualTLSPolicy/same');
    // Two stored before this rule (or by replicas racing): analyze calls it an error.
    await putPolicyDirectly({ kind: 'TrafficPolicy', name: 'payment-b', serviceName: 'payment' });
    const failed = await meshctl('analyze');
    expect(failed.code).toBe(1);
    expect(failed.stdout.split('\n')[1]).toMatch(/^error\s+MultipleTrafficPolicies\s+trafficpolicy\/payment-a\s+serviceName: /);
    const json = await meshctl('analyze', '-o', 'json');
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as { level: string }[]).filter((f) => f.level === 'error')).toHaveLength(2);
  });
});
