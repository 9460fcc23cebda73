export interface PublishQueueOptions<T> {
  /** Most `run` calls in progress at once (over all keys). */
  maxInFlight: number;
  /** Does the work for one key; never called twice at once for the same key. */
  run(key: string, value: T): Promise<void>;
  /** A rejected `run`; the value is dropped (the caller decides whether to submit it again). */
  onError?(key: string, value: T, err: unknown): void;
}

/**
 * Runs keyed work (one publish per service) with bounded concurrency and two lanes: urgent keys
 * (endpoint changes) are always started before normal ones, so they never wait behind a backlog of
 * policy-driven work. Per key, only the latest submitted value matters: a value submitted while an
 * older one waits replaces it, and one submitted while the key runs waits for that run to end.
 * Nothing waits on another key's run. `submit` starts work at once; the work that finished runs
 * frees is started in one go, once the I/O that finished them has been handled (`setImmediate`),
 * so the publications it sends leave in one socket write instead of one write each. Single-threaded:
 * call from one event loop.
 */
export class PublishQueue<T> {
  private readonly waiting = new Map<string, T>();
  private readonly urgentLane = new Set<string>();
  private readonly normalLane = new Set<string>();
  /** Keys whose `run` is in progress, with the value it runs with. */
  private readonly running = new Map<string, T>();
  private pumpScheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: PublishQueueOptions<T>) {
    if (!(opts.maxInFlight >= 1)) throw new RangeError('maxInFlight must be at least 1');
  }

  submit(key: string, value: T, urgent = false): void {
    this.waiting.set(key, value);
    if (urgent) {
      this.normalLane.delete(key);
      this.urgentLane.add(key);
    } else if (!this.urgentLane.has(key)) this.normalLane.add(key);
    this.pump();
  }

  /** Drops what waits for `key` (running work finishes). */
  cancel(key: string): void {
    this.waiting.delete(key);
    this.urgentLane.delete(key);
    this.normalLane.delete(key);
    this.settle();
  }

  /** The value `key`'s run in progress was started with; undefined when it has none. */
  runningValue(key: string): T | undefined {
    return this.running.get(key);
  }

  get inFlight(): number {
    return this.running.size;
  }

  get queued(): number {
    return this.waiting.size;
  }

  /** Resolves once nothing runs or waits. */
  idle(): Promise<void> {
    if (!this.running.size && !this.waiting.size) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private next(): string | undefined {
    for (const lane of [this.urgentLane, this.normalLane])
      for (const key of lane)
        if (!this.running.has(key)) {
          lane.delete(key);
          return key;
        }
    return undefined;
  }

  private pump(): void {
    while (this.running.size < this.opts.maxInFlight) {
      const key = this.next();
      if (key === undefined) break;
      const value = this.waiting.get(key) as T;
      this.waiting.delete(key);
      this.running.set(key, value);
      void this.opts
        .run(key, value)
        .catch((err: unknown) => this.opts.onError?.(key, value, err))
        .finally(() => {
          this.running.delete(key);
          this.schedulePump();
          this.settle();
        });
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled || !this.waiting.size) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private settle(): void {
    if (this.running.size || this.waiting.size) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
