import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from './logger';

export interface EventLoopWatchOptions {
  /** A delay above this is logged (ms, default 1,000). */
  thresholdMs?: number;
  /** How often the delays seen are judged (ms, default 5,000). */
  intervalMs?: number;
}

/**
 * Logs a warning when the event loop was blocked longer than `thresholdMs` in the last interval:
 * the longest delay and the p99, from node's event-loop delay histogram. A process whose loop is
 * blocked answers no request, acknowledges no message and fires no timer meanwhile; the log says
 * when that happened. Returns a function that stops watching. The timer does not keep the process alive.
 */
export function watchEventLoop(logger: Logger, opts: EventLoopWatchOptions = {}): () => void {
  const thresholdMs = opts.thresholdMs ?? 1_000;
  const histogram = monitorEventLoopDelay({ resolution: 20 });
  histogram.enable();
  const timer = setInterval(() => {
    const maxMs = histogram.max / 1e6;
    if (maxMs > thresholdMs)
      logger.warn(
        { maxMs: Math.round(maxMs), p99Ms: Math.round(histogram.percentile(99) / 1e6), thresholdMs },
        'event loop blocked: nothing was answered meanwhile',
      );
    histogram.reset();
  }, opts.intervalMs ?? 5_000);
  timer.unref();
  return () => {
    clearInterval(timer);
    histogram.disable();
  };
}
