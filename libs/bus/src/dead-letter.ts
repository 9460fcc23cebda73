import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { type DeadLetterV1, ErrorCode, headers, MeshError, parseRegistrySubject, subjects } from '@novamesh/contracts';
import { publishJson } from './publish';

const MAX_PAYLOAD_ECHO = 4096;

/** Wraps anything thrown by a handler into a MeshError (unknown errors are internal and retryable). */
export function asMeshError(e: unknown): MeshError {
  if (e instanceof MeshError) return e;
  return new MeshError(ErrorCode.internal, (e as Error)?.message ?? String(e), { cause: e, retryable: true });
}

/** Builds the dead-letter record for a refused JetStream message. */
export function deadLetterRecord(msg: JsMsg, error: MeshError, by: string): DeadLetterV1 {
  const text = Buffer.from(msg.data.subarray(0, MAX_PAYLOAD_ECHO)).toString('utf8');
  return {
    error: error.toJSON(),
    subject: msg.subject,
    stream: msg.info.stream,
    streamSeq: msg.seq,
    msgId: msg.headers?.get(headers.msgId) || undefined,
    deliveryCount: msg.info.deliveryCount,
    payload: text,
    payloadBytes: msg.data.byteLength,
    rejectedAt: new Date().toISOString(),
    rejectedBy: by,
  };
}

/**
 * Publishes a refused registry event to `mesh.v1.deadletter.registry.<service>`, where clients
 * (meshctl, the SDK, operators) read why it was refused. Deduplicated per stream sequence, so a
 * redelivered refusal is recorded once.
 */
export async function publishDeadLetter(js: JetStreamClient, source: string, msg: JsMsg, error: MeshError, by: string): Promise<void> {
  const service = parseRegistrySubject(msg.subject)?.service ?? msg.subject.split('.')[3];
  await publishJson(js, subjects.deadLetter(source, service), deadLetterRecord(msg, error, by), {
    msgId: `dl:${msg.info.stream}:${msg.seq}`,
  });
}
