import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { ErrorCode, MeshError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { asMeshError } from './dead-letter';
import { withConsumerSpan } from './trace';

export interface ConsumerRunOptions {
  js: JetStreamClient;
  stream: string;
  durable: string;
  /** Deliveries after which a failing message is dead-lettered (match the consumer's max_deliver). */
  maxDeliver: number;
  /** Messages processed at once by this process. */
  maxInFlight?: number;
  handle(msg: JsMsg): Promise<void>;
  /** Records a refused message; when it throws, the message is redelivered instead of dropped. */
  deadLetter(msg: JsMsg, error: MeshError): Promise<void>;
  /** Called before (re)starting the pull loop, e.g. to re-provision after a NATS restart. */
  prepare?(): Promise<void>;
  logger?: Logger;
}

/** Redelivery delay: 250 ms, 500 ms, 1 s, 2 s … capped at 10 s. */
export function redeliveryDelay(deliveryCount: number): number {
  return Math.min(10_000, 250 * 2 ** Math.max(0, deliveryCount - 1));
}

/**
 * Pulls from a durable consumer with explicit acks until stopped. Per message:
 * success → ack; a non-retryable MeshError (bad input) → dead letter, then ack; any other error →
 * nak with backoff, and dead letter + ack once `maxDeliver` is reached. Nothing is dropped
 * silently. The loop restarts itself when NATS goes away and comes back.
 */
export class DurableConsumerRunner {
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: ConsumerRunOptions) {}

  start(): void {
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    const log = this.opts.logger;
    const max = this.opts.maxInFlight ?? 64;
    while (!this.stopped) {
      try {
        await this.opts.prepare?.();
        const consumer = await this.opts.js.consumers.get(this.opts.stream, this.opts.durable);
        this.messages = await consumer.consume({ max_messages: max });
        for await (const msg of this.messages) {
          const p = this.process(msg).finally(() => this.inFlight.delete(p));
          this.inFlight.add(p);
          if (this.inFlight.size >= max) await Promise.race(this.inFlight);
          if (this.stopped) break;
        }
      } catch (e) {
        if (this.stopped) break;
        log?.warn({ err: e, stream: this.opts.stream, durable: this.opts.durable }, 'consumer loop failed; retrying');
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 500));
    }
  }

  private async process(msg: JsMsg): Promise<void> {
    const log = this.opts.logger;
    try {
      await withConsumerSpan(`process ${msg.subject}`, msg.headers, () => this.opts.handle(msg));
      msg.ack();
    } catch (e) {
      const err = asMeshError(e);
      const exhausted = msg.info.deliveryCount >= this.opts.maxDeliver;
      if (!err.retryable || exhausted) {
        // Exhausted: the record keeps the last refusal's code (in the message) and its issues.
        const final = err.retryable
          ? new MeshError(
              ErrorCode.redeliveryExhausted,
              `gave up after ${msg.info.deliveryCount} deliveries: ${err.code}: ${err.message}`,
              { cause: err, issues: err.issues },
            )
          : err;
        try {
          await this.opts.deadLetter(msg, final);
          // The dead letter now holds it: ack (not term) so the work queue releases it on every
          // server version (nats-server 2.9 keeps terminated work-queue messages ack-pending).
          await msg.ackAck();
          log?.warn({ subject: msg.subject, seq: msg.seq, code: final.code, reason: final.message }, 'event refused');
        } catch (dlErr) {
          log?.error({ err: dlErr, subject: msg.subject }, 'dead-letter publish failed; message will be redelivered');
          msg.nak(redeliveryDelay(msg.info.deliveryCount));
        }
        return;
      }
      // A refusal the handler expects to clear up (an event ahead of the one it depends on) is no
      // fault of this process: its code and reason say it all; anything else keeps its stack.
      const why = err.code === ErrorCode.internal ? { err } : { code: err.code, reason: err.message };
      log?.warn({ ...why, subject: msg.subject, deliveryCount: msg.info.deliveryCount }, 'event failed; will be redelivered');
      msg.nak(redeliveryDelay(msg.info.deliveryCount));
    }
  }

  /** Stops pulling and waits for messages in flight to be acked or nak'ed. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
    await this.running;
  }
}
