import type { Redis } from 'ioredis';
import { redisKeys } from './keys';

/** One window to count a request in: `requests` per `windowMs` for one key value of one limit. */
export interface RateLimitWindow {
  /** `<policy>/<limit>`. */
  limit: string;
  key: string;
  requests: number;
  windowMs: number;
}

/** Admitted in every window, or refused by one (its index), with when to come back (ms). */
export interface RateLimitOutcome {
  allowed: boolean;
  refused: number;
  retryAfterMs: number;
  resetMs: number;
}

/*
 * Sliding-window counters (Cloudflare's approximation): a request at `elapsed` ms into window
 * `idx` counts as floor(prev * (win - elapsed) / win) + cur, where prev is the previous window's
 * count. Under steady load that admits `limit` per window, spread over it (rounding the previous
 * window's share down, or the last ms of a window would always leave one request unused). Every window is checked first
 * and all are counted only when all admit, so a request refused by one limit costs none of the
 * others. Time is Redis's own (TIME) unless ARGV[1] gives it, so sidecars' clocks do not matter.
 * ARGV: now | '', then (limit, windowMs) per key. Returns {allowed, refused index, retryMs, resetMs}.
 */
const SLIDING_WINDOW = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local counted = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local win = tonumber(ARGV[2 * i + 1])
  local idx = math.floor(now / win)
  local s = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if w ~= idx then
    if w == idx - 1 then p = c else p = 0 end
    c = 0
  end
  local elapsed = now - idx * win
  if math.floor(p * (win - elapsed) / win) + c + 1 > limit then
    local retry
    if c < limit then
      retry = math.floor(win - (limit - c) * win / p) + 1 - elapsed
    else
      retry = win - elapsed + math.floor(win - limit * win / c) + 1
    end
    return { 0, i - 1, math.max(retry, 1), math.max(retry, win - elapsed) }
  end
  counted[i] = { idx, c + 1, p, win * 2 }
end
for i = 1, #KEYS do
  local s = counted[i]
  redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2], 'p', s[3])
  redis.call('PEXPIRE', KEYS[i], s[4])
end
return { 1, -1, 0, 0 }
`;

type RateLimitCommand = (numKeys: number, ...args: (string | number)[]) => Promise<[number, number, number, number]>;

/**
 * Global rate limits of one service in Redis: one script call (EVALSHA, reloaded by ioredis after
 * a Redis restart) per request, atomic across every sidecar of the service. Keys expire two windows
 * after their last admitted request. How fast it fails while Redis is down is the client's
 * setting (see `createRedis` and the sidecar's client). Safe to call concurrently.
 */
export class RateLimitStore {
  private readonly command: RateLimitCommand;

  constructor(
    redis: Redis,
    private readonly service: string,
    /** Tests pass a clock; otherwise Redis's TIME is the clock. */
    private readonly clock?: { now(): number },
  ) {
    redis.defineCommand('meshRateLimit', { lua: SLIDING_WINDOW });
    const r = redis as unknown as { meshRateLimit: RateLimitCommand };
    this.command = (...a) => r.meshRateLimit(...a);
  }

  async consume(windows: RateLimitWindow[]): Promise<RateLimitOutcome> {
    const args: (string | number)[] = windows.map((w) => redisKeys.rateLimit(this.service, w.limit, w.key));
    args.push(this.clock ? Math.floor(this.clock.now()) : '');
    for (const w of windows) args.push(w.requests, w.windowMs);
    const [allowed, refused, retryAfterMs, resetMs] = await this.command(windows.length, ...args);
    return { allowed: allowed === 1, refused, retryAfterMs, resetMs };
  }
}
