import { OutlierDetectionSchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { OutlierDetector, outcomeOfStatus } from './outlier-detector';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `ep-${i}`);

function setup(cfg: Record<string, unknown> = {}, n = 10) {
  const clock = { t: 1_000_000, now: () => clock.t };
  const config = OutlierDetectionSchema.parse({
    consecutive5xx: 3,
    baseEjectionTime: 30_000,
    interval: 10_000,
    maxEjectionPercent: 50,
    ...cfg,
  });
  const d = new OutlierDetector(config, clock);
  d.setEndpoints(ids(n));
  const fail = (id: string, times: number, outcome: '5xx' | 'gateway-error' | 'local-origin-failure' = '5xx') => {
    let ejected = false;
    for (let i = 0; i < times; i++) ejected = d.record(id, outcome) || ejected;
    return ejected;
  };
  return { d, clock, fail };
}

describe('OutlierDetector', () => {
  it('maps HTTP statuses to outcomes', () => {
    expect([200, 404, 500, 502, 503, 504, 599].map(outcomeOfStatus)).toEqual([
      'success',
      'success',
      '5xx',
      'gateway-error',
      'gateway-error',
      'gateway-error',
      '5xx',
    ]);
  });

  it('ejects after consecutive5xx consecutive failures, counting gateway errors and connect failures', () => {
    const { d, fail } = setup();
    expect(fail('ep-0', 2)).toBe(false);
    expect(d.isEjected('ep-0')).toBe(false);
    expect(d.record('ep-0', 'local-origin-failure')).toBe(true);
    expect(d.isEjected('ep-0')).toBe(true);
    expect(fail('ep-1', 3, 'gateway-error')).toBe(true);
  });

  it('restarts the count on a success', () => {
    const { d, fail } = setup();
    fail('ep-0', 2);
    d.record('ep-0', 'success');
    expect(fail('ep-0', 2)).toBe(false);
    expect(d.isEjected('ep-0')).toBe(false);
    expect(fail('ep-0', 1)).toBe(true);
  });

  it('ejects on consecutiveGatewayErrors when set; a plain 500 breaks that streak', () => {
    const { d, fail } = setup({ consecutive5xx: 100, consecutiveGatewayErrors: 2 });
    d.record('ep-0', 'gateway-error');
    d.record('ep-0', '5xx');
    expect(d.record('ep-0', 'gateway-error')).toBe(false);
    expect(d.record('ep-0', 'gateway-error')).toBe(true);
    const { fail: failOff } = setup({ consecutive5xx: 100 });
    expect(failOff('ep-0', 50, 'gateway-error')).toBe(false); // not enforced unless configured
    expect(fail('ep-1', 1)).toBe(false);
  });

  it('returns an endpoint after baseEjectionTime, lazily and in sweep events', () => {
    const { d, clock, fail } = setup();
    fail('ep-3', 3);
    expect(d.sweep()).toEqual({ ejected: ['ep-3'], returned: [] });
    clock.t += 29_999;
    expect(d.isEjected('ep-3')).toBe(true);
    expect(d.sweep()).toEqual({ ejected: [], returned: [] });
    clock.t += 1;
    expect(d.sweep()).toEqual({ ejected: [], returned: ['ep-3'] });
    expect(d.isEjected('ep-3')).toBe(false);

    fail('ep-4', 3);
    clock.t += 30_000;
    expect(d.isEjected('ep-4')).toBe(false); // isEjected ends it without waiting for the sweep...
    expect(d.sweep()).toEqual({ ejected: ['ep-4'], returned: ['ep-4'] }); // ...which still reports both events
  });

  it('ejects for longer each time it is ejected again soon after returning, capped at 300 s', () => {
    const { d, clock, fail } = setup();
    const durations: number[] = [];
    for (let i = 0; i < 13; i++) {
      fail('ep-0', 3);
      const until = d.snapshot().find((s) => s.id === 'ep-0')?.ejectedUntil as number;
      durations.push(until - clock.t);
      clock.t = until;
      d.sweep();
    }
    expect(durations.slice(0, 4)).toEqual([30_000, 60_000, 90_000, 120_000]);
    expect(Math.max(...durations)).toBe(300_000);
    expect(durations.at(-1)).toBe(300_000);
  });

  it('shortens the next ejection again after healthy intervals (Envoy backoff decay)', () => {
    const { d, clock, fail } = setup();
    fail('ep-0', 3);
    clock.t += 30_000;
    d.sweep(); // returned
    fail('ep-0', 3); // second ejection right away: 2 × base
    expect(d.snapshot()[0]?.ejectedUntil).toBe(clock.t + 60_000);
    clock.t += 60_000;
    d.sweep(); // returned, backoff 2
    d.sweep(); // healthy interval: backoff 1
    d.sweep(); // backoff 0
    fail('ep-0', 3);
    expect(d.snapshot()[0]?.ejectedUntil).toBe(clock.t + 30_000);
  });

  it('never ejects more than maxEjectionPercent, but always allows the first ejection', () => {
    const { d, fail } = setup({ maxEjectionPercent: 20 }, 10);
    expect(fail('ep-0', 3)).toBe(true);
    expect(fail('ep-1', 3)).toBe(true);
    expect(fail('ep-2', 3)).toBe(false); // 2 of 10 ejected = 20 %: no more
    expect(d.isEjected('ep-2')).toBe(false);
    expect(d.ejectedEndpoints).toBe(2);

    const small = setup({ maxEjectionPercent: 10 }, 3);
    expect(small.fail('ep-0', 3)).toBe(true); // 0 % < 10 %: Envoy ejects one even if it is 33 %
    expect(small.fail('ep-1', 3)).toBe(false);

    const off = setup({ maxEjectionPercent: 0 }, 3);
    expect(off.fail('ep-0', 3)).toBe(false);
  });

  it('needs a fresh streak after the cap refused an ejection', () => {
    const { d, clock, fail } = setup({ maxEjectionPercent: 10 }, 2);
    fail('ep-0', 3);
    fail('ep-1', 3); // refused: 1 of 2 already out
    clock.t += 30_000;
    d.sweep();
    expect(fail('ep-1', 2)).toBe(false);
    expect(fail('ep-1', 1)).toBe(true);
  });

  it('forgets removed endpoints, frees their ejection, and reports state for the admin page', () => {
    const { d, clock, fail } = setup({ maxEjectionPercent: 10 }, 4);
    fail('ep-0', 3);
    fail('ep-1', 2);
    d.setEndpoints(['ep-1', 'ep-2', 'ep-3', 'ep-9']);
    expect(d.ejectedEndpoints).toBe(0);
    expect(d.snapshot()).toEqual([
      { id: 'ep-1', ejected: false, consecutive5xx: 2, consecutiveGatewayErrors: 0, timesEjected: 0, backoff: 0 },
      { id: 'ep-2', ejected: false, consecutive5xx: 0, consecutiveGatewayErrors: 0, timesEjected: 0, backoff: 0 },
      { id: 'ep-3', ejected: false, consecutive5xx: 0, consecutiveGatewayErrors: 0, timesEjected: 0, backoff: 0 },
      { id: 'ep-9', ejected: false, consecutive5xx: 0, consecutiveGatewayErrors: 0, timesEjected: 0, backoff: 0 },
    ]);
    expect(fail('ep-2', 3)).toBe(true);
    expect(d.snapshot()[1]).toEqual({
      id: 'ep-2',
      ejected: true,
      ejectedUntil: clock.t + 30_000,
      consecutive5xx: 0,
      consecutiveGatewayErrors: 0,
      timesEjected: 1,
      backoff: 1,
    });
  });

  it('changes its version on every ejection and return, so pools know to rebuild', () => {
    const { d, clock, fail } = setup();
    const v0 = d.version;
    fail('ep-0', 3);
    expect(d.version).toBe(v0 + 1);
    d.record('ep-0', '5xx'); // ignored while ejected
    expect(d.version).toBe(v0 + 1);
    clock.t += 30_000;
    d.sweep();
    expect(d.version).toBe(v0 + 2);
  });
});
