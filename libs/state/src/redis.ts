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
