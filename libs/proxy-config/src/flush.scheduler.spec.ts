import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type FlushBatch, FlushScheduler } from './flush.scheduler';
import { PublishQueue } from './publish.queue';

describe('FlushScheduler', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const make = (debounceMs = 10, maxDelayMs = 100) => {
    const batches: (FlushBatch & { at: number })[] = [];
    const start = Date.now();
    const s = new FlushScheduler({ debounceMs, maxDelayMs, flush: (b) => batches.push({ ...b, at: Date.now() - start }) });
    return { s, batches };
  };

  it('flushes once, debounce after the last mark of a burst', () => {
    const { s, batches } = make();
    for (let i = 0; i < 5; i++) {
      s.mark(['a', 'b']);
      vi.advanceTimersByTime(5);
    }
    expect(batches).toHaveLength(0);
    vi.advanceTimersByTime(5);
    expect(batches).toEqual([{ urgent: [], normal: ['a', 'b'], at: 30 }]);
    expect(s.pending).toBe(0);
  });

  it('never holds a batch longer than maxDelay from its first mark, however busy the input', () => {
    const { s, batches } = make(10, 100);
    for (let t = 0; t < 350; t += 5) {
      s.mark([`svc-${t}`]);
      vi.advanceTimersByTime(5);
    }
    vi.advanceTimersByTime(20);
    expect(batches.map((b) => b.at)).toEqual([100, 200, 300, 355]);
    expect(batches.reduce((n, b) => n + b.normal.length, 0)).toBe(70);
  });

  it('lists services touched by endpoint changes first, each service once', () => {
    const { s, batches } = make();
    s.mark(['p1', 'shared', 'p2']);
    s.mark(['e1', 'shared'], true);
    s.mark(['shared']);
    vi.advanceTimersByTime(10);
    expect(batches).toEqual([{ urgent: ['e1', 'shared'], normal: ['p1', 'p2'], at: 10 }]);
  });

  it('holds everything while loading and flushes it after release', () => {
    const { s, batches } = make();
    s.hold();
    s.mark(['a']);
    vi.advanceTimersByTime(1_000);
    expect(batches).toHaveLength(0);
    s.release();
    vi.advanceTimersByTime(10);
    expect(batches.map((b) => b.normal)).toEqual([['a']]);
  });

  it('refuses a max delay shorter than the debounce', () => {
    expect(() => make(50, 10)).toThrow(/maxDelayMs/);
  });
});

describe('PublishQueue', () => {
  const deferred = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    return { promise, resolve };
  };

  it('runs at most maxInFlight at once and starts urgent keys before normal ones', async () => {
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const q = new PublishQueue<number>({
      maxInFlight: 2,
      run: (key) => {
        started.push(key);
        const g = deferred();
        gates.set(key, g);
        return g.promise;
      },
    });
    for (const k of ['p1', 'p2', 'p3', 'p4']) q.submit(k, 1);
    q.submit('e1', 1, true);
    expect(started).toEqual(['p1', 'p2']);
    expect(q.inFlight).toBe(2);
    gates.get('p1')?.resolve();
    await vi.waitFor(() => expect(started).toEqual(['p1', 'p2', 'e1']));
    q.submit('p3', 2, true); // an endpoint change for a waiting service moves it up
    gates.get('p2')?.resolve();
    await vi.waitFor(() => expect(started).toEqual(['p1', 'p2', 'e1', 'p3']));
    for (const k of ['e1', 'p3']) gates.get(k)?.resolve();
    await vi.waitFor(() => expect(started).toHaveLength(5));
    gates.get('p4')?.resolve();
    await q.idle();
  });

  it('keeps only the latest value per key, never runs a key twice at once, and does not wait on other keys', async () => {
    const runs: [string, number][] = [];
    const slow = deferred();
    let active = 0;
    let maxActiveForA = 0;
    const q = new PublishQueue<number>({
      maxInFlight: 4,
      run: async (key, v) => {
        runs.push([key, v]);
        if (key === 'a') {
          active++;
          maxActiveForA = Math.max(maxActiveForA, active);
          if (v === 1) await slow.promise;
          active--;
        }
      },
    });
    q.submit('a', 1);
    q.submit('a', 2);
    q.submit('a', 3);
    q.submit('b', 1);
    await vi.waitFor(() =>
      expect(runs).toEqual([
        ['a', 1],
        ['b', 1],
      ]),
    );
    slow.resolve();
    await q.idle();
    expect(runs).toEqual([
      ['a', 1],
      ['b', 1],
      ['a', 3],
    ]);
    expect(maxActiveForA).toBe(1);
  });

  it('reports failures and carries on', async () => {
    const errors: string[] = [];
    const q = new PublishQueue<number>({
      maxInFlight: 1,
      run: async (key) => {
        if (key === 'bad') throw new Error('nope');
      },
      onError: (key, _v, err) => errors.push(`${key}: ${(err as Error).message}`),
    });
    q.submit('bad', 1);
    q.submit('good', 1);
    await q.idle();
    expect(errors).toEqual(['bad: nope']);
  });
});
