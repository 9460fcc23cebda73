import { context, propagation, type Tracer, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';

let provider: BasicTracerProvider | undefined;
let configured = false;

export interface TelemetryConfig {
  service: string;
  /** Span exporters (OTLP, console, in-memory for tests). With none, spans still carry ids across NATS. */
  exporters?: SpanExporter[];
}

/**
 * Sets up OpenTelemetry once per process: W3C trace-context propagation (carried in NATS
 * headers by libs/bus), async context, and a tracer provider. Safe to call more than once.
 */
export function setupTelemetry(cfg: TelemetryConfig): Tracer {
  if (!configured) {
    configured = true;
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    // Without an exporter nobody reads spans: the API's non-recording spans still carry the
    // incoming trace context through handlers, logs and onward publishes, for far less CPU.
    if (cfg.exporters?.length) {
      provider = new BasicTracerProvider({ spanProcessors: cfg.exporters.map((e) => new SimpleSpanProcessor(e)) });
      trace.setGlobalTracerProvider(provider);
    }
  }
  return trace.getTracer(cfg.service);
}

/** Flushes and stops the tracer provider (on shutdown). */
export async function shutdownTelemetry(): Promise<void> {
  await provider?.shutdown();
}
