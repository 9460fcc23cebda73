/** Timer functions, injectable so tests can drive time. */
export interface SchedulerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** A monotonic clock: a wall-clock step (NTP, a resumed VM) must not hold every rebuild back by its size. */
export const systemClock: SchedulerClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Services to recompile, urgent ones (touched by an endpoint change) first. */
export interface FlushBatch {
  urgent: string[];
  normal: string[];
}

export interface FlushSchedulerOptions {
  /** Quiet time after a service's last mark before it is flushed. */
  debounceMs: number;
  /** Longest time from a service's first mark to its flush, however often it is marked again. */
  maxDelayMs: number;
  /** Runs synchronously with the services due; never concurrently with itself. */
  flush(batch: FlushBatch): void;
  clock?: SchedulerClock;
}

/** A marked service waiting for its flush. */
interface Dirty {
  firstAt: number;
  lastAt: number;
  urgent: boolean;
}

/**
 * Coalesces changes per service: `mark` adds services to a dirty set, and each is flushed once it
 * has not been marked for `debounceMs`, but never later than `maxDelayMs` after its first mark,
 * so a service whose inputs change steadily is still rebuilt regularly. A burst that touches the
 * same services over and over (an endpoint change of a service everybody calls, several in a row)
 * is flushed once, after it ends; a burst of changes to different services (a mesh-wide policy
 * republished service by service) is flushed as it goes, each service `debounceMs` after its own
 * change, so rebuilding overlaps the rest of the burst instead of waiting for all of it. Every
 * service due at once goes in one batch, urgent marks (endpoint changes) first. While `hold()` is
 * in effect (start-up, views still loading) marks accumulate and nothing flushes until
 * `release()`. Single-threaded: call from one event loop.
 */
export class FlushScheduler {
  /** Dirty services in the order of their last mark (a mark moves a service to the end). */
  private byLast = new Map<string, Dirty>();
  /** The same services in the order of their first mark. */
  private byFirst = new Map<string, Dirty>();
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private held = false;
  private readonly clock: SchedulerClock;

  constructor(private readonly opts: FlushSchedulerOptions) {
    if (!(opts.maxDelayMs >= opts.debounceMs)) throw new RangeError('maxDelayMs must not be shorter than debounceMs');
    this.clock = opts.clock ?? systemClock;
  }

  mark(services: Iterable<string>, urgent = false): void {
    let now: number | undefined;
    for (const s of services) {
      now ??= this.clock.now();
      const dirty = this.byLast.get(s);
      if (dirty) {
        dirty.lastAt = now;
        dirty.urgent ||= urgent;
        this.byLast.delete(s);
        this.byLast.set(s, dirty);
      } else {
        const fresh = { firstAt: now, lastAt: now, urgent };
        this.byLast.set(s, fresh);
        this.byFirst.set(s, fresh);
      }
    }
    if (now === undefined || this.held) return;
    // A mark never makes a deadline earlier than the ones already waiting, except the first one.
    if (this.timer === undefined) this.arm();
  }

  /** Services marked and not flushed yet. */
  get pending(): number {
    return this.byLast.size;
  }

  hold(): void {
    this.held = true;
    this.disarm();
  }

  /** Ends a hold; what was marked meanwhile flushes after the usual debounce (bounded by its max delay). */
  release(): void {
    this.held = false;
    const now = this.clock.now();
    for (const d of this.byLast.values()) d.lastAt = now;
    if (this.pending) this.arm();
  }

  /** Flushes every marked service now (unless held). */
  flushNow(): void {
    this.disarm();
    if (this.held || !this.pending) return;
    this.emit([...this.byLast.keys()]);
  }

  /** Cancels the timer; marked services stay marked. */
  stop(): void {
    this.hold();
  }

  /** Flushes the services due now and arms the timer for the next one. */
  private fire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    if (this.held) return;
    const now = this.clock.now();
    const due = new Set<string>();
    for (const [s, d] of this.byLast) {
      if (d.lastAt + this.opts.debounceMs > now) break;
      due.add(s);
    }
    for (const [s, d] of this.byFirst) {
      if (d.firstAt + this.opts.maxDelayMs > now) break;
      due.add(s);
    }
    if (due.size) this.emit(due);
    if (this.pending) this.arm();
  }

  private emit(services: Iterable<string>): void {
    const batch: FlushBatch = { urgent: [], normal: [] };
    for (const s of services) {
      const d = this.byLast.get(s);
      if (!d) continue;
      this.byLast.delete(s);
      this.byFirst.delete(s);
      (d.urgent ? batch.urgent : batch.normal).push(s);
    }
    this.opts.flush(batch);
  }

  /** The earliest deadline of a dirty service: its last mark + debounce, or its first mark + max delay. */
  private nextDeadline(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const d of this.byLast.values()) {
      at = d.lastAt + this.opts.debounceMs;
      break;
    }
    for (const d of this.byFirst.values()) {
      at = Math.min(at, d.firstAt + this.opts.maxDelayMs);
      break;
    }
    return at;
  }

  private arm(): void {
    const at = this.nextDeadline();
    if (this.timer !== undefined && this.timerAt <= at) return;
    this.disarm();
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, at - this.clock.now()));
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }
}
