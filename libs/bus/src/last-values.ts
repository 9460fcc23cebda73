import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstreamManager,
  type MsgRequest,
} from '@nats-io/jetstream';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@novamesh/observability';
import { createMeshStream, type TopologyOptions } from './provision';

export interface LastValuesOptions {
  js: JetStreamClient;
  stream: string;
  /** Subject filter, e.g. `mesh.v1.discovery.endpoints.>`. */
  filterSubject: string;
  /** Called for every message, first the retained last value of each subject, then every new one. */
  onMessage(msg: JsMsg): void;
  /**
   * Called when the stream turned out to have been deleted and created again (its sequences start
   * over), before its retained values are delivered again: what was learned from the old one
   * (stream sequences above all) no longer holds.
   */
  onReset?(): void;
  logger?: Logger;
  /** Give up waiting for the retained values after this long (ms); default 30 s. */
  loadTimeoutMs?: number;
  /**
   * Never go on with part of the retained values: when they take longer than `loadTimeoutMs`, say so
   * (again every `loadTimeoutMs`) and keep waiting. For a caller whose work from half a view does
   * harm (proxy-config would take upstreams and authorization rules away from sidecars).
   */
  waitForAll?: boolean;
  /** Ends the follow, as `stop()` does, also while it is still loading (before `stop()` exists). */
  signal?: AbortSignal;
  /** How often the stream is checked for having been created again (ms, ±10 %); default 10 s. */
  recheckMs?: number;
  /** Called once when the follow ends by itself (the connection closed), never after `stop()`. */
  onEnd?(err: unknown): void;
  /**
   * Set by the stream's owner (the service that publishes into it): a check that finds the stream
   * missing creates it again with its mesh configuration (`createMeshStream`, these replicas) and
   * follows the new stream at once — `onReset`, then its last values (none yet) — instead of
   * waiting for someone to create it. Without it, a missing stream is only waited for.
   */
  provision?: TopologyOptions;
}

/** How often a load that has not reached its count asks the server whether anything is left (ms). */
const LOAD_CHECK_MS = 1_000;

/**
 * Whether the stream holds nothing under `filter` after `last`, the last message handed on (nothing
 * at all when none was): then every retained value has been delivered. Asked of the stream, not of
 * the consumer, whose sequences start over each time an ordered consumer is recreated. False when
 * the server cannot say.
 */
async function caughtUp(jsm: JetStreamManager, stream: string, filter: string, last: JsMsg | undefined): Promise<boolean> {
  try {
    // STREAM.MSG.GET takes next_by_subj (the first message at or after seq under a subject filter,
    // wildcards included) since nats-server 2.9; the client types it for direct gets only.
    const next = { next_by_subj: filter, seq: (last?.seq ?? 0) + 1 } as unknown as MsgRequest;
    return !(await jsm.streams.getMessage(stream, next)); // null when there is none
  } catch {
    return false;
  }
}

/**
 * Messages an ordered consumer may have pulled and not delivered yet. A follow with no pull
 * outstanding misses a message that is replaced (one per subject) before it asks for more, so the
 * budget is large enough for a mesh-wide burst to arrive as it is stored. (The client takes a
 * message or a byte budget, not both: a follow that falls behind holds at most this many.)
 */
const PULL_BUDGET = {
  max_messages: 4_096,
  // Each pull lasts 5 s, so nats-server heartbeats every 2.5 s and a consumer gone from under the
  // follow (deleted, or lost with a restarted server) is noticed and made again within about 5 s;
  // the client's default (30 s pulls) took about 30 s, a load held up all that while.
  expires: 5_000,
};

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

/** The connection is closed or draining: nothing this follow does can work again. */
function isConnectionClosed(err: unknown): boolean {
  return err instanceof Error && (err.name === 'ClosedConnectionError' || err.name === 'DrainingConnectionError');
}

/**
 * Follows a last-value-per-subject stream with an ordered consumer: delivers the current value of
 * every subject, then each change. Resolves once the retained values have been delivered, so a
 * caller starts with a complete view. Survives NATS reconnects (the ordered consumer recreates
 * itself), a consumer that ends by itself (it is started again) and the stream being deleted and
 * created again (an ordered consumer would wait for sequences the new stream reaches only much
 * later, if ever): every `recheckMs` (±10 %) the stream's creation time is compared, and on a
 * change the follow starts over from the last values, after `onReset` — once per new stream,
 * however many tries starting the new follow takes. `stop()` ends it; a closed connection ends it
 * by itself, with `onEnd`.
 */
export async function followLastValues(opts: LastValuesOptions): Promise<{ stop(): Promise<void> }> {
  let stopped = false;
  let current: { close(): Promise<unknown> } | undefined;
  /** Creation time of the stream being followed (the one `onReset` was last called for). */
  let created: string | undefined;
  /** The follow ended (a reset, a consumer that stopped by itself) and a new one has not started yet. */
  let needFollow = false;
  let missing = false;
  let checking = false;
  let recheck: NodeJS.Timeout | undefined;
  const jsm = await opts.js.jetstreamManager(false);
  const log = opts.logger;

  const reset = () => {
    log?.warn({ stream: opts.stream }, 'the stream was created again; following it from its last values');
    try {
      opts.onReset?.();
    } catch (err) {
      log?.error({ err, stream: opts.stream }, 'reset handler failed; following the new stream anyway');
    }
  };

  const end = (err: unknown) => {
    if (stopped) return;
    stopped = true;
    clearTimeout(recheck);
    void current?.close().catch(() => undefined);
    opts.onEnd?.(err);
  };

  /**
   * Starts an ordered consumer from the last values of the stream as it is now (a stream created
   * anew since the last follow is reset first); resolves once they were delivered (or the load
   * timeout passed).
   */
  const follow = async (): Promise<void> => {
    const now = (await jsm.streams.info(opts.stream)).created;
    if (created !== undefined && now !== created) reset();
    created = now;
    const consumer = await opts.js.consumers.get(opts.stream, {
      filter_subjects: opts.filterSubject,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const pending = (await consumer.info(true)).num_pending;
    const messages = await consumer.consume(PULL_BUDGET);
    if (stopped) {
      await messages.close().catch(() => undefined);
      return;
    }
    current = messages;
    needFollow = false;
    let seen = 0;
    /** The last message handed to onMessage. */
    let last: JsMsg | undefined;
    let resolveLoaded!: () => void;
    const loaded = new Promise<void>((r) => {
      resolveLoaded = r;
    });
    if (pending === 0) resolveLoaded();
    const ended = (err?: unknown) => {
      resolveLoaded();
      if (stopped || current !== messages) return; // stopped, or closed for a reset
      current = undefined;
      if (isConnectionClosed(err)) return end(err);
      log?.warn({ err, stream: opts.stream }, 'the follow ended; starting it again');
      needFollow = true;
      void check();
    };
    void (async () => {
      for await (const m of messages) {
        if (current !== messages && !stopped) break; // replaced by the follow of a new stream
        try {
          opts.onMessage(m);
        } catch (err) {
          log?.warn({ err, subject: m.subject }, 'unreadable message ignored');
        }
        last = m;
        if (++seen >= pending) resolveLoaded();
      }
    })().then(() => ended(), ended);
    // Values counted at the start may be deleted before they arrive (a subject purged), so the count
    // is not always reached: every second the stream is asked whether it holds anything after the
    // last value handed on (LastPerSubject delivers in stream order).
    const loadTimeoutMs = opts.loadTimeoutMs ?? 30_000;
    const startedAt = Date.now();
    let warnings = 0;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((r) => {
        timer = setTimeout(() => r('tick'), Math.min(loadTimeoutMs, LOAD_CHECK_MS)).unref();
      });
      const outcome = await Promise.race([loaded, tick]);
      clearTimeout(timer);
      if (outcome !== 'tick' || stopped || current !== messages) return;
      if (await caughtUp(jsm, opts.stream, opts.filterSubject, last)) return;
      const waited = Date.now() - startedAt;
      if (waited < loadTimeoutMs * (warnings + 1)) continue;
      warnings++;
      const at = { stream: opts.stream, filter: opts.filterSubject, delivered: seen, retained: pending, ms: waited };
      if (!opts.waitForAll) {
        log?.warn(at, 'not every retained value arrived in time; going on with what did (the rest follows as it arrives)');
        return;
      }
      log?.warn(at, 'not every retained value has arrived yet; waiting for the rest before going on');
    }
  };

  /** Follows the stream anew if it was created again since (or the follow ended); throws what reading it throws. */
  const followIfNew = async (): Promise<void> => {
    if (!needFollow) {
      const now = (await jsm.streams.info(opts.stream)).created;
      if (missing) log?.info({ stream: opts.stream }, 'the stream is there again');
      missing = false;
      if (now === created || stopped) return;
      // Created again: the old follow stops here; `follow` resets and starts the new one. Its close
      // is not waited for: an ordered consumer whose stream vanished may be busy recreating itself
      // (JetStream requests that time out), and the new follow must not wait behind that.
      const old = current;
      current = undefined;
      needFollow = true;
      void old?.close().catch(() => undefined);
    }
    if (!stopped) await follow();
  };

  /**
   * The owner's part (see `provision`): creates the missing stream again; true when the stream
   * exists now (created here, or by someone else meanwhile), false when creating it failed.
   */
  const provisionAgain = async (): Promise<boolean> => {
    if (stopped) return false;
    try {
      if (await createMeshStream(jsm, opts.stream, opts.provision))
        log?.warn({ stream: opts.stream }, 'the stream was missing; created it again');
      else
        log?.warn(
          { stream: opts.stream },
          'the stream was missing; someone created it again meanwhile, with another configuration, which is left as it is',
        );
      return true;
    } catch (err) {
      if (isConnectionClosed(err)) end(err);
      else log?.warn({ err, stream: opts.stream }, 'the stream is missing and could not be created again; trying again at the next check');
      return false;
    }
  };

  const check = async (): Promise<void> => {
    if (checking || stopped) return;
    checking = true;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await followIfNew();
          return;
        } catch (err) {
          if (isConnectionClosed(err)) return end(err);
          // The stream is missing (deleted, not created again yet) or NATS is unreachable: next time,
          // unless this follower owns the stream and creates it again now.
          const notFound = isStreamNotFound(err);
          if (!missing && notFound && !opts.provision)
            log?.warn({ stream: opts.stream }, 'the stream is missing; following it again once it is created');
          missing ||= notFound;
          if (!(notFound && opts.provision && attempt === 1 && (await provisionAgain()))) return;
        }
      }
    } finally {
      checking = false;
    }
  };

  const stop = async () => {
    stopped = true;
    clearTimeout(recheck);
    await current?.close().catch(() => undefined);
  };
  if (opts.signal?.aborted) return { stop };
  opts.signal?.addEventListener('abort', () => void stop(), { once: true });
  await follow();
  const every = opts.recheckMs ?? 10_000;
  const schedule = () => {
    if (stopped) return;
    recheck = setTimeout(
      () => {
        void check().finally(schedule);
      },
      every * (0.9 + Math.random() * 0.2),
    );
    recheck.unref();
  };
  schedule();
  return { stop };
}

export interface LastValueOptions {
  nc: NatsConnection;
  /** The last-value-per-subject stream that keeps `subject`'s value. */
  stream: string;
  /** One subject (no wildcards). */
  subject: string;
  /**
   * Each value: `live` as it is published (core NATS, the fast path), `stored` when read back from
   * the stream (at start, after a reconnect, and every `reconcileMs`). A live message is not yet
   * known to be stored: a conditional publish that lost still reaches subscribers, so a reader
   * takes a live value only when it is newer than what it has, and lets a stored one overrule.
   */
  onValue(data: Uint8Array, source: 'live' | 'stored'): void;
  /** How often the stored value is read back to catch anything the live path missed; default 30 s. */
  reconcileMs?: number;
  /**
   * After a reconnect the stored value is read back within this long, at a random moment, so a
   * mesh of sidecars reconnecting together after a NATS restart does not ask at once; default 1 s.
   */
  reconnectJitterMs?: number;
  logger?: Logger;
}

/**
 * Follows one subject of a last-value stream without a consumer on the server: a core NATS
 * subscription delivers each change the moment it is published, and the stream's stored last value
 * is read (`STREAM.MSG.GET` by subject) after subscribing, after every reconnect (at a random
 * moment within `reconnectJitterMs`) and every `reconcileMs`. nats-server signals every consumer of a stream for each message it stores, so
 * one consumer per sidecar made publishing a mesh-wide change O(sidecars²); subscriptions cost
 * nothing per stored message. The stream missing (not created yet) is retried on the reconcile
 * period. Returns at once; `stop()` ends it.
 */
export function followLastValue(opts: LastValueOptions): { stop(): void; refresh(): Promise<void> } {
  const { nc, stream, subject } = opts;
  let stopped = false;
  const deliver = (data: Uint8Array, source: 'live' | 'stored') => {
    try {
      opts.onValue(data, source);
    } catch (err) {
      opts.logger?.warn({ err, subject }, 'unreadable message ignored');
    }
  };
  const sub = nc.subscribe(subject, {
    callback: (err, m) => {
      if (!err) deliver(m.data, 'live');
    },
  });
  let reading: Promise<void> | undefined;
  let manager: ReturnType<typeof jetstreamManager> | undefined;
  const refresh = (): Promise<void> => {
    reading ??= (async () => {
      try {
        manager ??= jetstreamManager(nc, { checkAPI: false });
        const jsm = await manager;
        const stored = await jsm.streams.getMessage(stream, { last_by_subj: subject });
        if (stored && !stopped) deliver(stored.data, 'stored');
      } catch (err) {
        manager = undefined;
        if (!stopped) opts.logger?.debug({ err: (err as Error).message, stream, subject }, 'stored value not read; trying again later');
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  };
  void refresh();
  const timer = setInterval(() => void refresh(), opts.reconcileMs ?? 30_000);
  timer.unref();
  const statuses = nc.status();
  let afterReconnect: NodeJS.Timeout | undefined;
  void (async () => {
    for await (const s of statuses) {
      if (s.type !== 'reconnect' || afterReconnect) continue;
      afterReconnect = setTimeout(
        () => {
          afterReconnect = undefined;
          void refresh();
        },
        Math.random() * (opts.reconnectJitterMs ?? 1_000),
      );
      afterReconnect.unref();
    }
  })().catch(() => undefined);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
      clearTimeout(afterReconnect);
      sub.unsubscribe();
      (statuses as { stop?: () => void }).stop?.();
    },
    refresh,
  };
}

/** How often an SDK watcher checks its stream for having been created again: every sidecar has two. */
const WATCH_RECHECK_MS = 60_000;

/**
 * The same as an async iterator of parsed values (for SDK watchers): the retained value of each
 * subject, then every change, also across the stream being deleted and created again (the new
 * stream's values follow, noticed within `recheckMs`, default 60 s). A caller that falls behind
 * gets each subject's newest value (older ones it has not taken yet are dropped). A message that
 * is not JSON is skipped. Ends when `signal` aborts or the connection closes.
 */
export async function* lastValues<T>(
  js: JetStreamClient,
  stream: string,
  filterSubject: string,
  signal?: AbortSignal,
  opts: { recheckMs?: number } = {},
): AsyncGenerator<T> {
  if (signal?.aborted) return;
  const waiting = new Map<string, T>();
  let ended = false;
  let wake: (() => void) | undefined;
  const view = await followLastValues({
    js,
    stream,
    filterSubject,
    recheckMs: opts.recheckMs ?? WATCH_RECHECK_MS,
    onMessage: (m) => {
      const value = m.json<T>();
      waiting.delete(m.subject); // re-inserted last: subjects keep the order of their newest change
      waiting.set(m.subject, value);
      wake?.();
    },
    onEnd: () => {
      ended = true;
      wake?.();
    },
  });
  const onAbort = () => wake?.();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    while (!signal?.aborted) {
      const first = waiting.entries().next();
      if (!first.done) {
        const [subject, value] = first.value;
        waiting.delete(subject);
        yield value;
        continue;
      }
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await view.stop();
  }
}

/**
 * Follows every key of a KV bucket: first the current value of each key (`initial` true), then
 * each change (`initial` false), one entry at a time (an async handler is awaited). Resolves once
 * the current values have been delivered, so a caller starts with a complete view.
 */
export async function followKv(
  kv: KV,
  onEntry: (entry: KvWatchEntry, initial: boolean) => void | Promise<void>,
  opts: { logger?: Logger; loadTimeoutMs?: number } = {},
): Promise<{ stop(): void }> {
  const status = await kv.status();
  const watcher = await kv.watch({ ignoreDeletes: false });
  let initial = status.values > 0;
  let resolveLoaded!: () => void;
  const loaded = new Promise<void>((r) => {
    resolveLoaded = r;
  });
  if (!initial) resolveLoaded();
  void (async () => {
    for await (const e of watcher) {
      await onEntry(e, initial);
      if (initial && e.delta === 0) {
        initial = false;
        resolveLoaded();
      }
    }
  })().catch((err) => opts.logger?.error({ err, bucket: status.bucket }, 'KV watch ended'));
  await Promise.race([loaded, new Promise((r) => setTimeout(r, opts.loadTimeoutMs ?? 30_000))]);
  initial = false;
  return { stop: () => watcher.stop() };
}
