import type { GlobalRateLimitStore, GlobalRateLimitVerdict, GlobalRateLimitWindow } from '@novamesh/dataplane';
import type { Logger } from '@novamesh/observability';
import { createRequestPathRedis, RateLimitStore } from '@novamesh/state';

const NOT_CONNECTED = new Error('not connected to Redis');

/**
 * The sidecar's global rate-limit store: Redis (REDIS_URL), connected only when a snapshot first
 * has a global limit, so a sidecar without one never needs Redis. Concurrent decisions for the same
 * windows share one script call (`RateLimitStore` batches them). While Redis is unreachable every
 * decision fails at once (or after the 100 ms command timeout when Redis hangs, with every request
 * batched or queued behind that call) and the policy's failureMode decides; the outage is logged
 * once, and the end of it once, when the client has reconnected by itself.
 */
export class RedisRateLimits implements GlobalRateLimitStore {
  private client: ReturnType<typeof createRequestPathRedis> | undefined;
  private store: RateLimitStore | undefined;
  private downSince: number | undefined;
  private everReady = false;

  constructor(
    private readonly deps: {
      url: string;
      /** How long a decision waits for Redis (SIDECAR_RATE_LIMIT_TIMEOUT); default 100 ms. */
      timeoutMs?: number;
      service: string;
      sidecarId: string;
      logger: Logger;
      /** Each decision made without Redis. */
      onError: () => void;
    },
  ) {}

  /** Connects on first call (the data plane calls it when it compiles a global limit); returns this store. */
  start(): GlobalRateLimitStore {
    if (!this.client) {
      const client = createRequestPathRedis(this.deps.url, `novamesh-sidecar-${this.deps.sidecarId}`, this.deps.timeoutMs);
      client.on('ready', () => {
        this.everReady = true;
        this.up();
      });
      client.on('error', (err: Error) => this.down(err.message));
      client.on('close', () => {
        if (this.everReady) this.down('connection closed');
      });
      this.client = client;
      this.store = new RateLimitStore(client, this.deps.service);
    }
    return this;
  }

  consume(windows: GlobalRateLimitWindow[]): Promise<GlobalRateLimitVerdict> {
    if (!this.store || this.client?.status !== 'ready') {
      this.deps.onError();
      return Promise.reject(NOT_CONNECTED);
    }
    // Bound once, so a decision allocates no closures here.
    return this.store.consume(windows).then(this.decided, this.failed);
  }

  private readonly decided = (verdict: GlobalRateLimitVerdict): GlobalRateLimitVerdict => {
    if (this.downSince !== undefined) this.up();
    return verdict;
  };

  private readonly failed = (err: unknown): never => {
    this.deps.onError();
    this.down((err as Error).message);
    throw err;
  };

  close(): void {
    this.client?.disconnect();
  }

  private down(reason: string): void {
    if (this.downSince !== undefined) return;
    this.downSince = Date.now();
    this.deps.logger.warn(
      { reason, redis: redactUrl(this.deps.url) },
      'rate limit store (Redis) unreachable: global limits follow their failureMode',
    );
  }

  private up(): void {
    if (this.downSince === undefined) return;
    this.deps.logger.info({ downMs: Date.now() - this.downSince }, 'rate limit store (Redis) reachable again: global limits enforced');
    this.downSince = undefined;
  }
}

/** The URL without credentials, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return 'invalid URL';
  }
}
