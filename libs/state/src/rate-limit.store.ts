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
  /** Index of the window that refused (-1 when allowed). */
  refused: number;
  /** When refused: ms until a request would be admitted again, and until the refusing window's count is spent (0 when allowed). */
  retryAfterMs: number;
  resetMs: number;
  /** Per window, in order: the requests it would still admit after this one (0 in the refusing window). */
  remaining: number[];
  /** The clock of the decision (Redis's TIME, ms): window `i` ends `windowMs - now % windowMs` ms later. */
  now: number;
}

/*
 * Sliding-window counters (Cloudflare's approximation): a request at `elapsed` ms into window
 * `idx` counts as floor(prev * (win - elapsed) / win) + cur, where prev is the previous window's
 * count. Under steady load that admits `limit` per window, spread over it (rounding the previous
 * window's share down, or the last ms of a window would always leave one request unused).
 *
 * One call decides `n` identical requests (the same windows) as if they came one after another at
 * the same instant, each all or nothing: every window has room for limit - weighted - cur more, so
 * the first k = min(n, every window's room) are admitted and counted in every window, and the rest
 * are refused by the first window whose room is k (a request refused by one limit costs none of the
 * others). Retry and reset of the refusal are computed with that window's count after the k.
 * Time is Redis's own (TIME) unless ARGV[1] gives it, so sidecars' clocks do not matter.
 * ARGV: now | '', n, then (limit, windowMs) per key. Returns {k, refused index | -1, retryMs,
 * resetMs, now, then per window the requests it still admits after the k}.
 */
const SLIDING_WINDOW = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local k = tonumber(ARGV[2])
local refused = 0
local st = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i + 1])
  local win = tonumber(ARGV[2 * i + 2])
  local idx = math.floor(now / win)
  local s = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if w ~= idx then
    if w == idx - 1 then p = c else p = 0 end
    c = 0
  end
  local elapsed = now - idx * win
  local room = math.max(limit - math.floor(p * (win - elapsed) / win) - c, 0)
  if room < k then
    k = room
    refused = i
  end
  st[i] = { idx, c, p, win, limit, elapsed, room }
end
if k > 0 then
  for i = 1, #KEYS do
    local s = st[i]
    redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2] + k, 'p', s[3])
    redis.call('PEXPIRE', KEYS[i], s[4] * 2)
  end
end
local out = { k, -1, 0, 0, now }
if refused > 0 then
  local s = st[refused]
  local c, p, win, limit, elapsed = s[2] + k, s[3], s[4], s[5], s[6]
  local retry
  if c < limit then
    retry = math.floor(win - (limit - c) * win / p) + 1 - elapsed
  else
    retry = win - elapsed + math.floor(win - limit * win / c) + 1
  end
  out[2] = refused - 1
  out[3] = math.max(retry, 1)
  out[4] = math.max(retry, win - elapsed)
end
for i = 1, #KEYS do
  out[5 + i] = st[i][7] - k
end
return out
`;

/** The script's reply: admitted, refused index, retryMs, resetMs, now, then room left per window. */
type RateLimitReply = number[];
type RateLimitCommand = (numKeys: number, ...args: (string | number)[]) => Promise<RateLimitReply>;

interface Waiting {
  resolve: (o: RateLimitOutcome) => void;
  reject: (err: unknown) => void;
}

/** Requests for the same windows: what one script call decides together. */
interface Group {
  readonly id: string;
  /** The Redis keys, then the script's ARGV after now and n: (limit, windowMs) per window. */
  readonly keys: string[];
  readonly params: number[];
  queue: Waiting[];
  /** A script call of this group is out; new requests wait for it. */
  inFlight: boolean;
}

/**
 * Global rate limits of one service in Redis, atomic across every sidecar of the service. Keys
 * expire two windows after their last admitted request. How fast it fails while Redis is down is
 * the client's setting (see `createRequestPathRedis` and the sidecar's client). Safe to call
 * concurrently.
 *
 * Batching: `consume` queues the request by its windows (limit ids, key values, limits), and one
 * script call (EVALSHA, reloaded by ioredis after a Redis restart) decides each group's queue:
 * the first k in queue order are admitted (k as many as every window still admits), the rest
 * refused with the refusing window's retry; the same answers as one call per request made one after
 * another at the same instant. A group's queue is sent on `setImmediate` after its first request
 * (so every request read in one event-loop turn goes together) unless a call of that group is in
 * flight; then it waits and goes on the next `setImmediate` after that call completes. So at most
 * one call per group is in flight, and under load a call carries what arrived during the last
 * round trip. Groups do not wait for each other. A failed call (Redis down, command timeout)
 * rejects every request of its batch and those queued behind it. (In a closed-loop test with 32
 * decisions in flight over 1 and 8 keys, neither sending the queue at once when a call returns nor
 * holding every group until all the store's calls returned gave a lower p99 than this.)
 */
export class RateLimitStore {
  private readonly command: RateLimitCommand;
  private readonly groups = new Map<string, Group>();
  /** Groups with queued requests and no call in flight, sent on the next `setImmediate`. */
  private ready: Group[] = [];
  private scheduled = false;
  private readonly flushReady = () => this.flush();

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

  consume(windows: RateLimitWindow[]): Promise<RateLimitOutcome> {
    let id = '';
    for (const w of windows) id += `${w.limit}\n${w.requests}/${w.windowMs}\n${w.key.length}:${w.key}\n`;
    let g = this.groups.get(id);
    if (!g) {
      g = { id, keys: [], params: [], queue: [], inFlight: false };
      for (const w of windows) {
        g.keys.push(redisKeys.rateLimit(this.service, w.limit, w.key));
        g.params.push(w.requests, w.windowMs);
      }
      this.groups.set(id, g);
    }
    const group = g;
    return new Promise((resolve, reject) => {
      if (group.queue.push({ resolve, reject }) === 1 && !group.inFlight) this.schedule(group);
    });
  }

  private schedule(g: Group): void {
    this.ready.push(g);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushReady);
  }

  private flush(): void {
    this.scheduled = false;
    const ready = this.ready;
    this.ready = [];
    for (const g of ready) this.send(g);
  }

  private send(g: Group): void {
    const batch = g.queue;
    g.queue = [];
    g.inFlight = true;
    const failed = (err: unknown) => {
      const behind = g.queue;
      g.queue = [];
      this.done(g);
      for (const w of batch) w.reject(err);
      for (const w of behind) w.reject(err);
    };
    try {
      const now = this.clock ? Math.floor(this.clock.now()) : '';
      this.command(g.keys.length, ...g.keys, now, batch.length, ...g.params).then((reply) => {
        this.done(g);
        settle(batch, reply, g.keys.length);
      }, failed);
    } catch (err) {
      failed(err); // a client that throws instead of rejecting must not take the process down from setImmediate
    }
  }

  /** The group's call is over: send what queued meanwhile, or forget the group. */
  private done(g: Group): void {
    g.inFlight = false;
    if (g.queue.length) this.schedule(g);
    else this.groups.delete(g.id);
  }
}

/** Each request of a batch its verdict from the script's reply: the first k admitted, in queue order. */
function settle(batch: Waiting[], reply: RateLimitReply, windows: number): void {
  const [k = 0, refused = -1, retryAfterMs = 0, resetMs = 0, now = 0] = reply;
  const left = reply.slice(5, 5 + windows);
  for (let j = 0; j < batch.length; j++) {
    const w = batch[j] as Waiting;
    if (j < k) {
      const after = k - 1 - j;
      w.resolve({ allowed: true, refused: -1, retryAfterMs: 0, resetMs: 0, remaining: left.map((r) => r + after), now });
    } else w.resolve({ allowed: false, refused, retryAfterMs, resetMs, remaining: left, now });
  }
}
