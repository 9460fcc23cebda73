import { Redis } from 'ioredis';

/**
 * A Redis client that fails fast while Redis is down (no offline queue, one retry per call)
 * and reconnects by itself every half second, so health work pauses and resumes cleanly.
 */
export function createRedis(url: string, name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    lazyConnect: false,
    retryStrategy: () => 500,
  });
}

/**
 * A Redis client for a request path (a sidecar's global rate limits): a call fails at once while
 * disconnected (no offline queue, no retry, nothing resent after a reconnect) and after
 * `commandTimeoutMs` when Redis hangs; it reconnects by itself every 250 ms.
 */
export function createRequestPathRedis(url: string, name: string, commandTimeoutMs = 100): Redis {
  return new Redis(url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 1_000,
    lazyConnect: false,
    retryStrategy: () => 250,
    // No enableAutoPipelining: measured with `npm run bench -- resilience`, it left throughput
    // unchanged and raised the decision p99 at 32 in flight from ~1.2 ms to ~4.8 ms.
  });
}
