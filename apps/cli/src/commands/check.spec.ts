import { describe, expect, it } from 'vitest';
import { type CheckFacts, evaluateChecks, renderChecks } from './check';

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

  it('colors the marks only when asked', () => {
    const lines = evaluateChecks(facts(89 * DAY, 365 * DAY), NOW);
    expect(renderChecks(lines, { color: false })).not.toContain('\x1b[');
    const colored = renderChecks(lines, { color: true });
    expect(colored).toContain('\x1b[33m‼\x1b[0m root ');
    expect(colored).toContain('\x1b[32m✔\x1b[0m ');
  });
});
