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

  it('never holds a service longer than maxDelay from its first mark, however often it is marked again', () => {
    const { s, batches } = make(10, 100);
    for (let t = 0; t < 350; t += 5) {
      s.mark(['hot']);
      vi.advanceTimersByTime(5);
    }
    vi.advanceTimersByTime(20);
    expect(batches.map((b) => b.at)).toEqual([100, 200, 300, 355]);
    expect(batches.every((b) => b.normal.length === 1 && b.normal[0] === 'hot')).toBe(true);
  });

  it('flushes each service debounce after its own last mark, so a burst over many services is rebuilt as it goes', () => {
    const { s, batches } = make(10, 100);
    for (let t = 0; t < 50; t += 5) {
      s.mark([`svc-${t}`]);
      vi.advanceTimersByTime(5);
    }
    vi.advanceTimersByTime(10);
    expect(batches).toEqual(Array.from({ length: 10 }, (_, i) => ({ urgent: [], normal: [`svc-${i * 5}`], at: i * 5 + 10 })));
    expect(s.pending).toBe(0);
  });

  it('keeps a service that is marked again waiting while the others flush, and flushes what is due at once in one batch', () => {
    const { s, batches } = make(10, 100);
    s.mark(['a', 'b', 'shared']);
    vi.advanceTimersByTime(6);
    s.mark(['shared', 'c']);
    vi.advanceTimersByTime(4);
    expect(batches).toEqual([{ urgent: [], normal: ['a', 'b'], at: 10 }]);
    vi.advanceTimersByTime(6);
    expect(batches.slice(1)).toEqual([{ urgent: [], normal: ['shared', 'c'], at: 16 }]);
  });

  it('flushNow flushes every marked service at once', () => {
    const { s, batches } = make(10, 100);
    s.mark(['a']);
    vi.advanceTimersByTime(5);
    s.mark(['b'], true);
    s.flushNow();
    expect(batches).toEqual([{ urgent: ['b'], normal: ['a'], at: 5 }]);
    vi.advanceTimersByTime(100);
    expect(batches).toHaveLength(1);
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

  /** A queue whose runs wait for their gate: `started` lists the keys in the order they started. */
  const gatedQueue = (maxInFlight: number) => {
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const q = new PublishQueue<number>({
      maxInFlight,
      run: (key) => {
        started.push(key);
        const g = deferred();
        gates.set(key, g);
        return g.promise;
      },
    });
    return { started, gates, q };
  };

  it('runs at most maxInFlight at once and starts urgent keys before normal ones', async () => {
    const { started, gates, q } = gatedQueue(2);
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

  it('tells the value a key runs with while it runs, and nothing otherwise', async () => {
    const { gates, q } = gatedQueue(1);
    q.submit('a', 1);
    q.submit('b', 7);
    expect([q.runningValue('a'), q.runningValue('b')]).toEqual([1, undefined]); // b waits
    q.submit('a', 2); // waits for a's run: the running value stays 1
    expect(q.runningValue('a')).toBe(1);
    gates.get('a')?.resolve();
    await vi.waitFor(() => expect(q.runningValue('b')).toBe(7));
    gates.get('b')?.resolve();
    await vi.waitFor(() => expect(q.runningValue('a')).toBe(2));
    gates.get('a')?.resolve();
    await q.idle();
    expect(q.runningValue('a')).toBeUndefined();
  });

  it('starts the work that finished runs freed in one go, after the I/O that finished them', async () => {
    const { started, gates, q } = gatedQueue(2);
    for (const k of ['a', 'b', 'c', 'd']) q.submit(k, 1);
    expect(started).toEqual(['a', 'b']);
    gates.get('a')?.resolve();
    gates.get('b')?.resolve();
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(started).toEqual(['a', 'b']); // not one by one as each run settles…
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(['a', 'b', 'c', 'd']); // …but together, so their publications share a write
    for (const k of ['c', 'd']) gates.get(k)?.resolve();
    await q.idle();
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
