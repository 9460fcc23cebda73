import { DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '@novamesh/observability';

export interface LastValuesOptions {
  js: JetStreamClient;
  stream: string;
  /** Subject filter, e.g. `mesh.v1.discovery.endpoints.>`. */
  filterSubject: string;
  /** Called for every message, first the retained last value of each subject, then every new one. */
  onMessage(msg: JsMsg): void;
  logger?: Logger;
  /** Give up waiting for the retained values after this long (ms); default 30 s. */
  loadTimeoutMs?: number;
}

/**
 * Follows a last-value-per-subject stream with an ordered consumer: delivers the current value of
 * every subject, then each change. Resolves once the retained values have been delivered, so a
 * caller starts with a complete view. Survives NATS reconnects (the ordered consumer recreates
 * itself). `stop()` ends it.
 */
export async function followLastValues(opts: LastValuesOptions): Promise<{ stop(): Promise<void> }> {
  const consumer = await opts.js.consumers.get(opts.stream, {
    filter_subjects: opts.filterSubject,
    deliver_policy: DeliverPolicy.LastPerSubject,
  });
  const pending = (await consumer.info(true)).num_pending;
  const messages = await consumer.consume();
  let stopped = false;
  let seen = 0;
  let resolveLoaded!: () => void;
  const loaded = new Promise<void>((r) => {
    resolveLoaded = r;
  });
  if (pending === 0) resolveLoaded();
  void (async () => {
    for await (const m of messages) {
      try {
        opts.onMessage(m);
      } catch (err) {
        opts.logger?.warn({ err, subject: m.subject }, 'unreadable message ignored');
      }
      if (++seen >= pending) resolveLoaded();
    }
  })().catch((err) => {
    if (!stopped) opts.logger?.error({ err, stream: opts.stream }, 'last-value view stopped');
  });
  await Promise.race([loaded, new Promise((r) => setTimeout(r, opts.loadTimeoutMs ?? 30_000))]);
  return {
    stop: async () => {
      stopped = true;
      await messages.close().catch(() => undefined);
    },
  };
}

/** The same as an async iterator of parsed values (for SDK watchers); ends when `signal` aborts. */
export async function* lastValues<T>(js: JetStreamClient, stream: string, filterSubject: string, signal?: AbortSignal): AsyncGenerator<T> {
  const consumer = await js.consumers.get(stream, { filter_subjects: filterSubject, deliver_policy: DeliverPolicy.LastPerSubject });
  const messages = await consumer.consume();
  const onAbort = () => void messages.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted) return;
    for await (const m of messages) yield m.json<T>();
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await messages.close().catch(() => undefined);
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
