import { hostname } from 'node:os';
import { parseDuration } from '@novamesh/contracts';

/** A bad environment: the message names every bad key at once. */
export class ConfigError extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** nats:// (plaintext, or TLS when the server asks for it) and tls:// (TLS required). The Node client has no WebSocket transport. */
const NATS_SCHEMES = ['nats:', 'tls:'];

/** The settings every control-plane service reads the same way. */
export interface CommonConfig {
  natsUrl: string[];
  instance: string;
  logLevel: string;
  /** Stream/KV replicas (3 on a 3-node NATS cluster). */
  replicas: number;
  /** OTLP/HTTP collector for traces; none → trace context still propagates, spans are not recorded. */
  otlpEndpoint?: string;
}

/**
 * Reads typed settings from an environment, collecting every problem instead of stopping at the
 * first; `done()` returns the frozen config or throws one ConfigError listing them all. Each app
 * builds its config with one of these in its `config.ts`; nothing else reads `process.env`.
 */
export class EnvReader {
  private readonly problems: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  raw(key: string): string | undefined {
    const v = this.env[key];
    return v === '' ? undefined : v;
  }

  string(key: string, fallback: string): string {
    return this.raw(key) ?? fallback;
  }

  problem(message: string): void {
    this.problems.push(message);
  }

  /** Comma-separated URLs, each with one of `schemes` (e.g. `['redis:']`). */
  urls(key: string, fallback: string, schemes: string[]): string[] {
    const raw = this.raw(key) ?? fallback;
    const parts = raw.split(',').map((s) => s.trim());
    for (const part of parts) {
      try {
        if (!schemes.includes(new URL(part).protocol)) this.problem(`${key}="${raw}" must use ${schemes.join(' or ')}`);
      } catch {
        this.problem(`${key}="${raw}" is not a URL`);
      }
    }
    return parts;
  }

  url(key: string, fallback: string, schemes: string[]): string {
    return this.urls(key, fallback, schemes).join(',');
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const raw = this.raw(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) this.problem(`${key}="${raw}" must be a whole number from ${min} to ${max}`);
    return n;
  }

  /** A duration (`"500ms"`, `"5s"`, `"1m"` or milliseconds), in milliseconds, greater than 0. */
  duration(key: string, fallback: string): number {
    const raw = this.raw(key) ?? fallback;
    const ms = parseDuration(raw);
    if (ms === undefined || ms <= 0) this.problem(`${key}="${raw}" is not a positive duration (e.g. "500ms", "2s")`);
    return ms ?? 0;
  }

  /** LOG_LEVEL (default info). */
  logLevel(): string {
    const logLevel = this.string('LOG_LEVEL', 'info');
    if (!LOG_LEVELS.includes(logLevel)) this.problem(`LOG_LEVEL="${logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
    return logLevel;
  }

  /** NATS_URL: one or more servers, comma-separated (default nats://127.0.0.1:4222). */
  natsUrls(): string[] {
    return this.urls('NATS_URL', 'nats://127.0.0.1:4222', NATS_SCHEMES);
  }

  /** NATS_URL, NATS_REPLICAS, LOG_LEVEL, OTEL_EXPORTER_OTLP_ENDPOINT and the instance id from `instanceKey`. */
  common(instanceKey: string): CommonConfig {
    const logLevel = this.logLevel();
    const otlp = this.raw('OTEL_EXPORTER_OTLP_ENDPOINT');
    return {
      natsUrl: this.natsUrls(),
      instance: this.string(instanceKey, `${hostname()}-${process.pid}`),
      logLevel,
      replicas: this.int('NATS_REPLICAS', 1, 1, 5),
      ...(otlp ? { otlpEndpoint: this.url('OTEL_EXPORTER_OTLP_ENDPOINT', otlp, ['http:', 'https:']) } : {}),
    };
  }

  /** The frozen config, or a ConfigError naming every problem found while reading it. */
  done<T extends object>(config: T): Readonly<T> {
    if (this.problems.length) throw new ConfigError(`invalid configuration:\n  - ${this.problems.join('\n  - ')}`);
    return Object.freeze(config);
  }
}
