import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { ArgumentsHost, Catch, type RpcExceptionFilter } from '@nestjs/common';
import { BaseRpcContext, type CustomTransportStrategy, type MessageHandler, Server } from '@nestjs/microservices';
import { ErrorCode, MeshError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { isObservable, lastValueFrom, type Observable, throwError } from 'rxjs';
import { DurableConsumerRunner } from './consumer';
import { asMeshError } from './dead-letter';
import { encodeJson } from './publish';
import { withConsumerSpan } from './trace';

/** What a handler receives besides the raw payload bytes. */
export class JetStreamContext extends BaseRpcContext<[JsMsg]> {
  get message(): JsMsg {
    return this.args[0];
  }
  get subject(): string {
    return this.args[0].subject;
  }
}

export class NatsRequestContext extends BaseRpcContext<[Msg]> {
  get message(): Msg {
    return this.args[0];
  }
  get subject(): string {
    return this.args[0].subject;
  }
}

/** True when `subject` matches a NATS pattern with `*` and `>` wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

export interface DurableBinding {
  stream: string;
  durable: string;
  maxDeliver: number;
  maxInFlight?: number;
}

export interface JetStreamServerOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  /** Durable consumers to pull from; each message goes to the `@EventPattern` whose subject pattern matches. */
  durables: DurableBinding[];
  /** Queue group for `@MessagePattern` request/reply subjects, so one replica answers each request. */
  queueGroup: string;
  deadLetter(msg: JsMsg, error: MeshError): Promise<void>;
  prepare?(): Promise<void>;
  logger?: Logger;
}

/**
 * NestJS transport over NATS JetStream. `@EventPattern('mesh.v1.registry.*.register')` methods
 * receive `(data: Uint8Array, ctx: JetStreamContext)` from shared durable consumers with explicit
 * ack, bounded redelivery and dead letters; `@MessagePattern('subject')` methods answer core NATS
 * requests in a queue group and their return value (or MeshError) is the JSON reply.
 */
export class JetStreamServer extends Server implements CustomTransportStrategy {
  private runners: DurableConsumerRunner[] = [];
  private subs: Subscription[] = [];

  constructor(private readonly options: JetStreamServerOptions) {
    super();
  }

  /** A server that only answers requests (`@MessagePattern`): no durable consumers, so nothing to dead-letter. */
  static requestReply(opts: Pick<JetStreamServerOptions, 'nc' | 'js' | 'queueGroup' | 'logger'>): JetStreamServer {
    return new JetStreamServer({ ...opts, durables: [], deadLetter: async () => undefined });
  }

  listen(callback: (...optionalParams: unknown[]) => unknown): void {
    for (const b of this.options.durables) {
      const runner = new DurableConsumerRunner({
        js: this.options.js,
        stream: b.stream,
        durable: b.durable,
        maxDeliver: b.maxDeliver,
        maxInFlight: b.maxInFlight,
        handle: (msg) => this.dispatchEvent(msg),
        deadLetter: this.options.deadLetter,
        prepare: this.options.prepare,
        logger: this.options.logger,
      });
      runner.start();
      this.runners.push(runner);
    }
    for (const [pattern, handler] of this.getHandlers()) {
      if (handler.isEventHandler) continue;
      const sub = this.options.nc.subscribe(pattern, {
        queue: this.options.queueGroup,
        callback: (err, msg) => {
          if (!err) void this.answer(handler, msg);
        },
      });
      this.subs.push(sub);
    }
    callback();
  }

  private handlerFor(subject: string): MessageHandler | undefined {
    for (const [pattern, handler] of this.getHandlers()) {
      if (handler.isEventHandler && subjectMatches(pattern, subject)) return handler;
    }
    return undefined;
  }

  private async dispatchEvent(msg: JsMsg): Promise<void> {
    const handler = this.handlerFor(msg.subject);
    if (!handler) throw new MeshError(ErrorCode.unknownSubject, `no handler for subject "${msg.subject}"`);
    await resolve(await handler(msg.data, new JetStreamContext([msg])));
  }

  private async answer(handler: MessageHandler, msg: Msg): Promise<void> {
    let reply: unknown;
    try {
      reply = await withConsumerSpan(`answer ${msg.subject}`, msg.headers, async () =>
        resolve(await handler(msg.data, new NatsRequestContext([msg]))),
      );
    } catch (e) {
      const err = asMeshError(e);
      if (err.code === ErrorCode.internal) this.options.logger?.error({ err: e, subject: msg.subject }, 'request handler failed');
      reply = { ok: false, error: err.toJSON() };
    }
    if (!msg.reply) return;
    try {
      msg.respond(encodeJson(reply));
    } catch (e) {
      // The reply cannot be sent (over the server's max_payload, the connection closing): the
      // caller learns why instead of waiting for its timeout, and this process stays up.
      this.options.logger?.error({ err: e, subject: msg.subject }, 'reply not sent');
      const tooLarge = /max_payload/.test((e as Error).message);
      const err = new MeshError(
        tooLarge ? ErrorCode.tooLarge : ErrorCode.unavailable,
        `the reply to ${msg.subject} could not be sent${tooLarge ? ': it is larger than the NATS server’s max_payload' : ''} (${(e as Error).message})`,
      );
      try {
        msg.respond(encodeJson({ ok: false, error: err.toJSON() }));
      } catch {
        // nothing more to tell: the connection is gone
      }
    }
  }

  on(): void {
    throw new Error('JetStreamServer does not emit events; read connection status from the NatsConnection');
  }

  unwrap<T>(): T {
    return this.options.nc as T;
  }

  /** Stops pulling, lets in-flight messages finish and unsubscribes request handlers. */
  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    await Promise.all(this.runners.map((r) => r.stop()));
    this.runners = [];
  }
}

async function resolve(result: unknown): Promise<unknown> {
  return isObservable(result) ? lastValueFrom(result as Observable<unknown>, { defaultValue: undefined }) : result;
}

/**
 * Nest's default RPC filter turns every error into "Internal server error"; this one passes
 * errors through unchanged so the transport can ack, dead-letter or reply with the real code.
 */
@Catch()
export class PassThroughRpcFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => exception);
  }
}
