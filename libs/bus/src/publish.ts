import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { ErrorCode, MeshError } from '@novamesh/contracts';
import { injectTrace } from './trace';

const encoder = new TextEncoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export interface PublishOptions {
  /** Sets `Nats-Msg-Id`: the stream drops a second message with the same id within its duplicate window. */
  msgId?: string;
  /** Fails unless the last message on this subject has this sequence (optimistic concurrency). */
  expectLastSubjectSequence?: number;
  timeout?: number;
}

/** Publishes JSON to a JetStream subject with trace context; resolves with the stream's ack. */
export async function publishJson(js: JetStreamClient, subject: string, payload: unknown, opts: PublishOptions = {}): Promise<PubAck> {
  return publishRaw(js, subject, encodeJson(payload), opts);
}

export async function publishRaw(js: JetStreamClient, subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<PubAck> {
  return js.publish(subject, data, {
    msgID: opts.msgId,
    headers: injectTrace(natsHeaders()),
    timeout: opts.timeout,
    expect: opts.expectLastSubjectSequence === undefined ? undefined : { lastSubjectSequence: opts.expectLastSubjectSequence },
  });
}

/**
 * Publishes JSON to a stream subject over core NATS, without waiting for the stream's ack.
 * For derived, last-value data whose loss the owner repairs itself (discovery's reconcile):
 * it saves a round trip per message. `msgId` still deduplicates in the stream.
 */
export function publishJsonNoAck(nc: NatsConnection, subject: string, payload: unknown, opts: { msgId?: string } = {}): void {
  const h = injectTrace(natsHeaders());
  if (opts.msgId) h.set('Nats-Msg-Id', opts.msgId);
  nc.publish(subject, encodeJson(payload), { headers: h });
}

/**
 * Core NATS request with a JSON body and JSON reply. Maps "no responders" and timeouts to
 * `MESH_UNAVAILABLE` / `MESH_TIMEOUT` so callers can explain what is down.
 */
export async function requestJson<T>(
  nc: NatsConnection,
  subject: string,
  payload: unknown,
  opts: { timeout?: number; signal?: AbortSignal } = {},
): Promise<T> {
  opts.signal?.throwIfAborted();
  const request = nc.request(subject, encodeJson(payload), { timeout: opts.timeout ?? 5_000, headers: injectTrace(natsHeaders()) });
  const aborted = opts.signal
    ? new Promise<never>((_, reject) =>
        opts.signal?.addEventListener('abort', () => reject(new MeshError(ErrorCode.aborted, `request to ${subject} aborted`)), {
          once: true,
        }),
      )
    : undefined;
  try {
    const msg = await (aborted ? Promise.race([request, aborted]) : request);
    return msg.json<T>();
  } catch (e) {
    if (e instanceof MeshError) throw e;
    const text = String((e as Error).message ?? e);
    if (/no responders/i.test(text) || (e as { code?: string }).code === '503')
      throw new MeshError(ErrorCode.unavailable, `nobody answers on ${subject}: is the service running?`, { cause: e, retryable: true });
    if (/timeout/i.test(text)) throw new MeshError(ErrorCode.timeout, `no reply on ${subject} in time`, { cause: e, retryable: true });
    throw new MeshError(ErrorCode.unavailable, `request to ${subject} failed: ${text}`, { cause: e, retryable: true });
  }
}
