import type { CaCertV1, CaRotateResultV1, ProxyStatusEntryV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { type CheckFacts, evaluateChecks, inUseCertificates, MESH_STREAM_OWNERS, renderChecks } from './check';

const NOW = Date.parse('2026-06-01T00:00:00.000Z');
const DAY = 86_400_000;
const iso = (t: number) => new Date(t).toISOString();
const FP = 'a'.repeat(64);

function facts(rootLeft: number, intermediateLeft: number): CheckFacts {
  const ca = { subject: 'CN=x', serial: '01', notBefore: iso(NOW - DAY) };
  return {
    servers: ['nats://127.0.0.1:4222'],
    nats: { ok: true, server: 'nats-server 2.10.0' },
    discovery: { ok: true, ms: 1, reply: {} },
    policy: { ok: true, ms: 1, reply: {} },
    ca: {
      ok: true,
      ms: 1,
      reply: {
        ok: true,
        trustDomain: 'novamesh.local',
        instance: 'ca1',
        certTtlMs: DAY,
        root: { ...ca, fingerprint256: FP, notAfter: iso(NOW + rootLeft) },
        intermediate: { ...ca, fingerprint256: 'b'.repeat(64), notAfter: iso(NOW + intermediateLeft) },
      },
    },
    bundle: {
      ok: true,
      bundle: {
        trustDomain: 'novamesh.local',
        updatedAt: iso(NOW),
        roots: [{ pem: '', fingerprint256: FP, notAfter: iso(NOW + rootLeft) }],
      },
    },
    certs: { ok: true, ms: 1, reply: { ok: true, certs: [] } },
    revoked: { serials: [], updatedAt: iso(NOW) },
    proxyConfig: { ok: true, ms: 1, reply: { ok: true, sidecars: [] } },
    streams: MESH_STREAM_OWNERS.map((o, i) => ({ stream: o.stream, ok: true, messages: i })),
  };
}

const statusOf = (f: CheckFacts, what: RegExp) => evaluateChecks(f, NOW).find((l) => what.test(l.text))?.status;

describe('meshctl check thresholds', () => {
  it('warns for a root within 90 days and fails for an expired one', () => {
    expect(statusOf(facts(91 * DAY, 365 * DAY), /^root /)).toBe('ok');
    expect(statusOf(facts(89 * DAY, 365 * DAY), /^root /)).toBe('warn');
    expect(statusOf(facts(-DAY, 365 * DAY), /^root /)).toBe('fail');
  });

  it('warns for an intermediate within 30 days and fails for an expired one', () => {
    expect(statusOf(facts(3650 * DAY, 31 * DAY), /^intermediate /)).toBe('ok');
    expect(statusOf(facts(3650 * DAY, 29 * DAY), /^intermediate /)).toBe('warn');
    expect(statusOf(facts(3650 * DAY, -1), /^intermediate /)).toBe('fail');
  });

  it('fails when the CA signs under a root that is not in the bundle', () => {
    const f = facts(3650 * DAY, 365 * DAY);
    if (f.bundle?.ok) f.bundle.bundle.roots[0]!.fingerprint256 = 'c'.repeat(64);
    expect(statusOf(f, /not in the trust bundle/)).toBe('fail');
  });

  it('treats "no responders" as a failure and skips everything else when NATS is down', () => {
    const f = { ...facts(3650 * DAY, 365 * DAY), discovery: { ok: false as const, error: 'no responders' } };
    expect(statusOf(f, /^discovery/)).toBe('fail');
    const down = evaluateChecks({ servers: ['nats://x:1'], nats: { ok: false, error: 'ECONNREFUSED' } }, NOW);
    expect(down).toHaveLength(1);
    expect(down[0]?.status).toBe('fail');
  });

  it('warns about a nats-server older than 2.10, naming its version, and says nothing about a newer one', () => {
    const old = evaluateChecks(
      { ...facts(3650 * DAY, 365 * DAY), nats: { ok: true, server: 'nats-server 2.9.10', version: '2.9.10' } },
      NOW,
    );
    const line = old.find((l) => l.section === 'NATS' && l.status === 'warn');
    expect(line?.text).toMatch(/^nats-server 2\.9\.10 is older than 2\.10\.0/);
    const current = evaluateChecks(
      { ...facts(3650 * DAY, 365 * DAY), nats: { ok: true, server: 'nats-server 2.10.27', version: '2.10.27' } },
      NOW,
    );
    expect(current.filter((l) => l.section === 'NATS').map((l) => l.status)).toEqual(['ok']);
  });

  it('colors the marks only when asked', () => {
    const lines = evaluateChecks(facts(89 * DAY, 365 * DAY), NOW);
    expect(renderChecks(lines, { color: false })).not.toContain('\x1b[');
    const colored = renderChecks(lines, { color: true });
    expect(colored).toContain('\x1b[33m‼\x1b[0m root ');
    expect(colored).toContain('\x1b[32m✔\x1b[0m ');
  });
});

const HOUR = 3_600_000;
const OLD_FP = 'c'.repeat(64);

/** A certificate of `service` issued `issuedAgo` before NOW, valid for 24 h. */
function cert(serial: string, service: string, issuedAgo: number, extra: Partial<CaCertV1> = {}): CaCertV1 {
  const issued = NOW - issuedAgo;
  const notAfter = issued + DAY;
  return {
    serial,
    spiffeId: `spiffe://novamesh.local/ns/default/svc/${service}`,
    namespace: 'default',
    service,
    notBefore: iso(issued - 5 * 60_000),
    notAfter: iso(notAfter),
    issuedAt: iso(issued),
    proof: 'token',
    rootFingerprint256: FP,
    state: notAfter < NOW ? 'expired' : 'issued',
    ...extra,
  };
}

function withCerts(certs: CaCertV1[]): CheckFacts {
  return { ...facts(3650 * DAY, 365 * DAY), certs: { ok: true, ms: 1, reply: { ok: true, certs } } };
}

const texts = (f: CheckFacts) => evaluateChecks(f, NOW).map((l) => `${l.status} ${l.text}`);

describe('meshctl check: workload certificates', () => {
  it('counts as in use only the latest certificate of each identity, and not once it was renewed', () => {
    const certs = [
      cert('01', 'payment', 30 * HOUR, { supersededBy: '02', proof: 'token' }), // renewed, then expired
      cert('02', 'payment', 12 * HOUR, { proof: 'certificate', renewedFrom: '01' }),
      cert('03', 'orders', 30 * HOUR), // expired, a newer one exists (another token)
      cert('04', 'orders', 2 * HOUR),
      cert('05', 'legacy', 30 * HOUR), // expired, never renewed
    ];
    expect(inUseCertificates(certs).map((c) => c.serial)).toEqual(['02', '04', '05']);
  });

  it('does not warn about expired or expiring certificates that were renewed', () => {
    const renewed = withCerts([
      cert('01', 'payment', 30 * HOUR, { supersededBy: '02' }),
      cert('02', 'payment', 23.5 * HOUR, { proof: 'certificate', renewedFrom: '01', supersededBy: '03' }), // expires in 30 min
      cert('03', 'payment', HOUR, { proof: 'certificate', renewedFrom: '02' }),
    ]);
    expect(texts(renewed).filter((t) => t.startsWith('warn'))).toEqual([]);
    expect(texts(renewed)).toContain('ok 3 issued by this CA: 2 valid, 1 expired');
    expect(texts(renewed)).toContain('ok no certificate in use has expired or expires within 1 hour');
  });

  it('warns about the latest certificate of an identity that expired or expires within 1 hour without a renewal', () => {
    const stale = withCerts([cert('05', 'legacy', 30 * HOUR), cert('06', 'payment', 23.5 * HOUR), cert('07', 'payment', 40 * HOUR)]);
    const lines = evaluateChecks(stale, NOW).filter((l) => l.status === 'warn');
    expect(lines.map((l) => [l.text, l.details])).toEqual([
      [
        '1 certificate has expired without being renewed',
        [`05  spiffe://novamesh.local/ns/default/svc/legacy  not after ${iso(NOW - 6 * HOUR)}`],
      ],
      [
        '1 certificate expires within 1 hour and has not been renewed',
        [`06  spiffe://novamesh.local/ns/default/svc/payment  not after ${iso(NOW + 30 * 60_000)}`],
      ],
    ]);
  });

  it('counts revoked certificates, noting the expired ones the CA pruned from the published list', () => {
    const f = withCerts([cert('08', 'a', HOUR, { state: 'revoked' }), cert('09', 'b', 30 * HOUR, { state: 'revoked' })]);
    f.revoked = { serials: ['08'], updatedAt: iso(NOW) };
    expect(texts(f)).toContain('ok 2 revoked (1 not expired yet, 1 on the published revocation list)');
  });
});

describe('meshctl check: root rotation', () => {
  function rotating(previousLive: number, opts: { probe?: boolean } = {}): CheckFacts {
    const f = withCerts([cert('02', 'payment', HOUR), cert('04', 'orders', 2 * HOUR, { rootFingerprint256: OLD_FP })]);
    if (f.bundle?.ok) f.bundle.bundle.roots.push({ pem: '', fingerprint256: OLD_FP, notAfter: iso(NOW + 3000 * DAY) });
    const reply: CaRotateResultV1 = {
      ok: true,
      phase: 'status',
      rotating: true,
      instance: 'ca2',
      startedBy: 'ca1',
      startedAt: iso(NOW - HOUR),
      roots: [
        { role: 'current', subject: 'CN=new', fingerprint256: FP, notAfter: iso(NOW + 3650 * DAY), liveCertificates: 1 },
        { role: 'previous', subject: 'CN=old', fingerprint256: OLD_FP, notAfter: iso(NOW + 3000 * DAY), liveCertificates: previousLive },
      ],
    };
    f.rotation = opts.probe === false ? { ok: false, error: 'no answer within 5000 ms' } : { ok: true, ms: 2, reply };
    return f;
  }
  const rotationLine = (f: CheckFacts) => evaluateChecks(f, NOW).find((l) => l.text.startsWith('root rotation'));

  it('warns with the live certificates per root and says to wait, then to finish', () => {
    expect(rotationLine(rotating(1))).toEqual({
      section: 'certificate authority',
      status: 'warn',
      text: `root rotation in progress: 1 live certificate under the new root ${'a'.repeat(16)}, 1 under the old root ${'c'.repeat(16)}`,
      details: [
        `begun by ca1 at ${iso(NOW - HOUR)}`,
        'workloads re-issue under the new root on their own; follow with `meshctl ca rotate status`,',
        'then run `meshctl ca rotate finish` once the old root has no live certificates (it is refused until then)',
      ],
    });
    expect(rotationLine(rotating(0))?.details).toEqual([
      `begun by ca1 at ${iso(NOW - HOUR)}`,
      'no live certificate uses the old root any more: run `meshctl ca rotate finish` to drop it from the trust bundle',
    ]);
  });

  it('still warns when the bundle holds two roots but the rotation status is unavailable', () => {
    expect(rotationLine(rotating(1, { probe: false }))).toMatchObject({
      status: 'warn',
      text: 'root rotation in progress: the trust bundle holds 2 roots',
      details: [expect.stringContaining('no answer within 5000 ms'), expect.stringContaining('meshctl ca rotate status')],
    });
  });

  it('says nothing about rotation with one root', () => {
    expect(rotationLine(withCerts([]))).toBeUndefined();
  });

  it('lists the streams of the mesh in one line, and fails for each one missing, naming who creates it again', () => {
    const f = facts(365 * DAY, 300 * DAY);
    const lines = evaluateChecks(f, NOW).filter((l) => l.section === 'streams');
    expect(lines).toEqual([
      {
        section: 'streams',
        status: 'ok',
        text: '6 of 6 streams of the mesh exist: MESH_REGISTRY (0 messages), MESH_ENDPOINTS (1 message), MESH_DEADLETTER (2 messages), MESH_CONFIG (3 messages), MESH_CA (4 messages), MESH_PROXY (5 messages)',
      },
    ]);
    f.streams = (f.streams ?? []).map((s) =>
      s.stream === 'MESH_PROXY'
        ? { stream: s.stream, ok: false, missing: true, error: 'not found' }
        : s.stream === 'MESH_DEADLETTER'
          ? { stream: s.stream, ok: false, missing: true, error: 'not found' }
          : s.stream === 'MESH_CA'
            ? { stream: s.stream, ok: false, missing: false, error: 'no answer within 5000 ms' }
            : s,
    );
    const failed = evaluateChecks(f, NOW).filter((l) => l.section === 'streams');
    expect(failed.map((l) => [l.status, l.text, l.details])).toEqual([
      [
        'ok',
        '3 of 6 streams of the mesh exist: MESH_REGISTRY (0 messages), MESH_ENDPOINTS (1 message), MESH_CONFIG (3 messages)',
        undefined,
      ],
      ['fail', 'stream MESH_DEADLETTER is missing', ['discovery creates it again when it starts: restart a discovery replica']],
      ['fail', 'stream MESH_CA could not be read: no answer within 5000 ms', undefined],
      [
        'fail',
        'stream MESH_PROXY is missing',
        ['proxy-config creates it again within its stream recheck (10 s by default) and publishes into it anew: is proxy-config running?'],
      ],
    ]);
  });

  it('shows the sidecars in sync, and warns or fails, listing them, for those behind, silent or refusing the latest snapshot', () => {
    const f = facts(365 * DAY, 300 * DAY);
    const dataPlane = () => evaluateChecks(f, NOW).filter((l) => l.section === 'data plane');
    expect(dataPlane()).toEqual([{ section: 'data plane', status: 'ok', text: 'no sidecar has reported yet' }]);
    const entry = (sidecar: string, over: Partial<ProxyStatusEntryV1> = {}): ProxyStatusEntryV1 => ({
      service: 'orders',
      sidecar,
      version: 7,
      latestVersion: 7,
      inSync: true,
      lagMs: 0,
      lastSeenMs: 2_000,
      stale: false,
      ...over,
    });
    const sidecars = [entry('o1'), entry('o2')];
    f.proxyConfig = { ok: true, ms: 1, reply: { ok: true, sidecars } };
    expect(dataPlane()).toEqual([
      { section: 'data plane', status: 'ok', text: "2 of 2 sidecars in sync with their service's latest snapshot" },
    ]);
    sidecars.push(
      entry('o3', { version: 6, inSync: false, lagMs: 1_500 }),
      entry('o4', { version: 5, inSync: false, lagMs: 45_000, lastSeenMs: 41_000, stale: true }),
      entry('o5', {
        version: 6,
        inSync: false,
        lagMs: 3_000,
        rejected: { version: 7, hash: 'h', reason: 'content hash x does not match' },
      }),
      // A refusal of an older version, since superseded by one it applied: in sync, nothing to report.
      entry('o6', { rejected: { version: 6, hash: 'h', reason: 'old' } }),
      // A refusal of a stray message numbered like the latest, while running the latest: in sync too (as proxy-status says).
      entry('o7', { rejected: { version: 7, hash: 'x', reason: 'not JSON' } }),
    );
    expect(dataPlane().map((l) => [l.status, l.text, l.details])).toEqual([
      ['ok', "4 of 7 sidecars in sync with their service's latest snapshot", undefined],
      [
        'fail',
        "1 sidecar refused its service's latest snapshot and keeps serving an older one",
        ['orders/o5  refused v7: content hash x does not match'],
      ],
      ['warn', '1 sidecar has not acknowledged the latest snapshot yet', ['orders/o3  v6 of v7, behind for 1.5 s']],
      ['warn', '1 sidecar has been silent for 30 s or more (gone, or cut off from NATS)', ['orders/o4  last seen 41 s ago, at v5 of v7']],
    ]);
    f.proxyConfig = { ok: false, error: 'no responders' };
    expect(dataPlane()).toEqual([]);
  });

  it('fails when proxy-config does not answer', () => {
    const f = facts(365 * DAY, 300 * DAY);
    f.proxyConfig = { ok: false, error: 'no responders' };
    const line = evaluateChecks(f, NOW).find((l) => l.text.startsWith('proxy-config'));
    expect(line).toEqual({
      section: 'control plane',
      status: 'fail',
      text: 'proxy-config is not answering on mesh.v1.proxy.status: no responders',
      details: ['start a proxy-config replica'],
    });
  });

  it('renders the whole checklist during a rotation (golden file)', async () => {
    const out = renderChecks(evaluateChecks(rotating(1), NOW), { color: false });
    await expect(out).toMatchFileSnapshot('../__golden__/check-rotation.txt');
  });
});
