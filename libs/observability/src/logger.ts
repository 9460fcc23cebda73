import { hostname } from 'node:os';
import { trace } from '@opentelemetry/api';
import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Keys whose values never reach a log line, wherever they appear. */
export const REDACTED_PATHS = [
  'password',
  'passphrase',
  'token',
  'secret',
  'privateKey',
  'authorization',
  '*.password',
  '*.passphrase',
  '*.token',
  '*.secret',
  '*.privateKey',
  '*.authorization',
  'headers.authorization',
  'headers.cookie',
];

export interface LoggerConfig {
  service: string;
  instance?: string;
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to read them back. */
  destination?: pino.DestinationStream;
}

/**
 * The one way Novamesh processes log: JSON lines with `service` and `instance`, the active
 * trace and span ids, and secrets redacted. Components take `logger.child({ component })`.
 */
export function createLogger(cfg: LoggerConfig): Logger {
  const options: LoggerOptions = {
    level: cfg.level ?? 'info',
    base: { service: cfg.service, instance: cfg.instance ?? `${hostname()}-${process.pid}` },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const ctx = span.spanContext();
      return { traceId: ctx.traceId, spanId: ctx.spanId };
    },
  };
  return cfg.destination ? pino(options, cfg.destination) : pino(options);
}
