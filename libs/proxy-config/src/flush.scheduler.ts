/** Timer functions, injectable so tests can drive time. */
export interface SchedulerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: SchedulerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Services to recompile, urgent ones (touched by an endpoint change) first. */
export interface FlushBatch {
  urgent: string[];
  normal: string[];
}

export interface FlushSchedulerOptions {
  /** Quiet time after the last mark before flushing. */
  debounceMs: number;
  /** Longest time from the first mark of a batch to its flush, however busy the input. */
  maxDelayMs: number;
  /** Runs synchronously with the services marked since the previous flush; never concurrently with itself. */
  flush(batch: FlushBatch): void;
  clock?: SchedulerClock;
}

/**
 * Coalesces bursts of changes: `mark` adds services to a dirty set and (re)arms a timer that fires
 * `debounceMs` after the last mark, but never later than `maxDelayMs` after the first mark of the
 * batch, so a steady stream of changes still flushes regularly. Urgent marks (endpoint changes)
 * are handed to `flush` first. While `hold()` is in effect (start-up, views still loading) marks
 * accumulate and nothing flushes until `release()`. Single-threaded: call from one event loop.
 */
export class FlushScheduler {
  private urgent = new Set<string>();
  private normal = new Set<string>();
  private firstMarkAt: number | undefined;
  private timer: unknown;
  private held = false;
  private readonly clock: SchedulerClock;

  constructor(private readonly opts: FlushSchedulerOptions) {
    if (!(opts.maxDelayMs >= opts.debounceMs)) throw new RangeError('maxDelayMs must not be shorter than debounceMs');
    this.clock = opts.clock ?? systemClock;
  }

  mark(services: Iterable<string>, urgent = false): void {
    let added = false;
    for (const s of services) {
      added = true;
      if (urgent) {
        this.normal.delete(s);
        this.urgent.add(s);
      } else if (!this.urgent.has(s)) this.normal.add(s);
    }
    if (!added) return;
    this.firstMarkAt ??= this.clock.now();
    if (!this.held) this.arm();
  }

  /** Services marked and not flushed yet. */
  get pending(): number {
    return this.urgent.size + this.normal.size;
  }

  hold(): void {
    this.held = true;
    this.disarm();
  }

  /** Ends a hold; what was marked meanwhile flushes after the usual debounce. */
  release(): void {
    this.held = false;
    if (this.pending) this.arm();
  }

  /** Flushes what is marked now (unless held). */
  flushNow(): void {
    this.disarm();
    if (this.held || !this.pending) return;
    const batch: FlushBatch = { urgent: [...this.urgent], normal: [...this.normal] };
    this.urgent = new Set();
    this.normal = new Set();
    this.firstMarkAt = undefined;
    this.opts.flush(batch);
  }

  /** Cancels the timer; marked services stay marked. */
  stop(): void {
    this.hold();
  }

  private arm(): void {
    this.disarm();
    const now = this.clock.now();
    const deadline = (this.firstMarkAt ?? now) + this.opts.maxDelayMs;
    const wait = Math.max(0, Math.min(this.opts.debounceMs, deadline - now));
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.flushNow();
    }, wait);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
