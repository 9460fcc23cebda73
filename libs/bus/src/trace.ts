import { type MsgHdrs, headers as natsHeaders } from '@nats-io/transport-node';
import { type Context, context, propagation, type Span, SpanKind, trace } from '@opentelemetry/api';

const setter = { set: (h: MsgHdrs, k: string, v: string) => h.set(k, v) };
const getter = {
  get: (h: MsgHdrs | undefined, k: string) => h?.get(k) || undefined,
  keys: (h: MsgHdrs | undefined) => (h ? [...h.keys()] : []),
};

/** Adds the active trace context (W3C `traceparent`/`tracestate`) to NATS headers. */
export function injectTrace(h: MsgHdrs = natsHeaders(), ctx: Context = context.active()): MsgHdrs {
  propagation.inject(ctx, h, setter);
  return h;
}

/** Reads the trace context a publisher put into NATS headers. */
export function extractTrace(h: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), h, getter);
}

/**
 * Runs `fn` inside a consumer span that continues the publisher's trace, so logs and
 * anything published by `fn` carry the same trace id.
 */
export async function withConsumerSpan<T>(name: string, h: MsgHdrs | undefined, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = extractTrace(h);
  const span = trace.getTracer('novamesh-bus').startSpan(name, { kind: SpanKind.CONSUMER }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } finally {
    span.end();
  }
}
