import { context, propagation, type Tracer, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';

let provider: BasicTracerProvider | undefined;
let configured = false;

export interface TelemetryConfig {
  service: string;
  instance?: string;
  /** OTLP/HTTP collector base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); spans go to `<url>/v1/traces` in batches. */
  otlpEndpoint?: string;
  /** Further span exporters (tests use an in-memory one); each exports span by span. */
  exporters?: SpanExporter[];
}

/**
 * Sets up OpenTelemetry once per process: W3C trace-context propagation (carried in NATS
 * headers by libs/bus), async context, and — when there is somewhere to send spans — a tracer
 * provider. Safe to call more than once; later calls change nothing.
 */
export function setupTelemetry(cfg: TelemetryConfig): Tracer {
  if (!configured) {
    configured = true;
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const processors: SpanProcessor[] = (cfg.exporters ?? []).map((e) => new SimpleSpanProcessor(e));
    if (cfg.otlpEndpoint)
      processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: `${cfg.otlpEndpoint.replace(/\/$/, '')}/v1/traces` })));
    // Without an exporter nobody reads spans: the API's non-recording spans still carry the
    // incoming trace context through handlers, logs and onward publishes, for far less CPU.
    if (processors.length) {
      provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': cfg.service, ...(cfg.instance ? { 'service.instance.id': cfg.instance } : {}) }),
        spanProcessors: processors,
      });
      trace.setGlobalTracerProvider(provider);
    }
  }
  return trace.getTracer(cfg.service);
}

/** Flushes and stops the tracer provider (on shutdown). */
export async function shutdownTelemetry(): Promise<void> {
  await provider?.shutdown();
}
