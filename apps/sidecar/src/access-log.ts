import type { Logger } from '@novamesh/observability';
import type { AccessLogMode } from './config';

/** One access-log record; `error` is the stable code of a response the sidecar made itself. */
export interface AccessRecord {
  direction: 'inbound' | 'outbound';
  method: string | undefined;
  path: string;
  status: number;
  ms: number;
  upstream?: string;
  endpoint?: string;
  route?: string;
  peer?: string | undefined;
  error?: string | undefined;
  reason?: string | undefined;
  requestId?: string | undefined;
  /** Tries made when more than one (retries). */
  attempts?: number;
  /** A fault the route injected (`abort`, `delay`). */
  fault?: 'abort' | 'delay';
  [extra: string]: unknown;
}

/**
 * JSON access log through pino (`"msg":"access"`). `errors` (the default) writes what an operator
 * must be able to explain — every response the sidecar made itself, every 5xx, every AUDIT
 * match, every retried request and every injected fault — and `all` every request, at a CPU cost the benchmark shows.
 */
export class AccessLog {
  constructor(
    private readonly logger: Logger,
    private readonly mode: AccessLogMode,
  ) {}

  write(r: AccessRecord): void {
    if (this.mode === 'off') return;
    if (this.mode === 'errors' && !r.error && r.status < 500 && r.audit === undefined && r.attempts === undefined && r.fault === undefined)
      return;
    r.ms = Math.round(r.ms * 1000) / 1000;
    this.logger.info(r, 'access');
  }
}
