import type { Redis } from 'ioredis';
import { redisKeys } from './keys';

export type CheckStatus = 'unknown' | 'healthy' | 'unhealthy';

/** Result of active health checks for one endpoint, as stored in Redis. */
export interface CheckState {
  status: CheckStatus;
  /** Consecutive successes / failures of the current streak. */
  ok: number;
  fail: number;
  checkedAt: number;
  detail?: string;
  by?: string;
}

/*
 * Atomically folds one check result into the endpoint's state with Envoy's threshold
 * semantics: `healthyThreshold` consecutive successes turn it healthy, `unhealthyThreshold`
 * consecutive failures turn it unhealthy. An endpoint never checked yet counts as healthy, so
 * its first success confirms it at once. Returns [status, changed].
 */
const RECORD_CHECK = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local s
if cur then s = cjson.decode(cur) else s = { status = 'unknown', ok = 0, fail = 0 } end
local before = s.status
if ARGV[2] == '1' then
  s.ok = s.ok + 1
  s.fail = 0
  if s.status == 'unknown' or (s.status ~= 'healthy' and s.ok >= tonumber(ARGV[3])) then s.status = 'healthy' end
else
  s.fail = s.fail + 1
  s.ok = 0
  if s.status ~= 'unhealthy' and s.fail >= tonumber(ARGV[4]) then s.status = 'unhealthy' end
end
s.checkedAt = tonumber(ARGV[5])
s.detail = ARGV[6]
s.by = ARGV[7]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(s))
local changed = 0
if before ~= s.status and not (before == 'unknown' and s.status == 'healthy') then changed = 1 end
return { s.status, changed }
`;

/**
 * Health state of endpoints in Redis: heartbeats, active-check results, replica membership
 * and per-interval check claims. Safe to share between replicas; every write is atomic.
 * Calls fail fast (no offline queue) when Redis is down, so callers can keep their last view.
 */
export class HealthStore {
  constructor(private readonly redis: Redis) {
    redis.defineCommand('meshRecordCheck', { numberOfKeys: 1, lua: RECORD_CHECK });
  }

  async recordHeartbeat(service: string, endpointIds: string[], now: number): Promise<void> {
    if (endpointIds.length === 0) return;
    const args: (string | number)[] = [];
    for (const id of endpointIds) args.push(id, now);
    await this.redis.hset(redisKeys.heartbeats(service), ...args);
  }

  /**
   * Last heartbeat per endpoint. Endpoints with none recorded (new, or Redis lost its data)
   * get `now` written once, which starts their TTL afresh instead of expiring them at once.
   */
  async heartbeats(service: string, endpointIds: string[], now: number): Promise<Map<string, number>> {
    const key = redisKeys.heartbeats(service);
    const raw = await this.redis.hgetall(key);
    const out = new Map<string, number>();
    const missing: string[] = [];
    for (const id of endpointIds) {
      const v = raw[id];
      if (v === undefined) missing.push(id);
      else out.set(id, Number(v));
    }
    if (missing.length) {
      const pipe = this.redis.pipeline();
      for (const id of missing) pipe.hsetnx(key, id, now);
      await pipe.exec();
      for (const id of missing) out.set(id, now);
    }
    return out;
  }

  async recordCheck(
    service: string,
    endpointId: string,
    result: { ok: boolean; detail: string; healthyThreshold: number; unhealthyThreshold: number; now: number; by: string },
  ): Promise<{ status: CheckStatus; changed: boolean }> {
    const [status, changed] = (await (
      this.redis as unknown as { meshRecordCheck: (...a: unknown[]) => Promise<[string, number]> }
    ).meshRecordCheck(
      redisKeys.health(service),
      endpointId,
      result.ok ? '1' : '0',
      result.healthyThreshold,
      result.unhealthyThreshold,
      result.now,
      result.detail,
      result.by,
    )) as [CheckStatus, number];
    return { status, changed: changed === 1 };
  }

  async checks(service: string): Promise<Map<string, CheckState>> {
    const raw = await this.redis.hgetall(redisKeys.health(service));
    return new Map(Object.entries(raw).map(([id, v]) => [id, JSON.parse(v) as CheckState]));
  }

  /** Forgets endpoints (removed from the registry). */
  async forget(service: string, endpointIds: string[]): Promise<void> {
    if (endpointIds.length === 0) return;
    await this.redis
      .pipeline()
      .hdel(redisKeys.health(service), ...endpointIds)
      .hdel(redisKeys.heartbeats(service), ...endpointIds)
      .exec();
  }

  /** Marks this replica alive; returns the replicas seen within `windowMs`, sorted. */
  async touchMember(group: string, id: string, now: number, windowMs: number): Promise<string[]> {
    const key = redisKeys.members(group);
    const res = await this.redis
      .pipeline()
      .zadd(key, now, id)
      .zremrangebyscore(key, '-inf', now - windowMs * 10)
      .zrangebyscore(key, now - windowMs, '+inf')
      .exec();
    const live = (res?.[2]?.[1] as string[] | undefined) ?? [];
    return [...live].sort();
  }

  async leave(group: string, id: string): Promise<void> {
    await this.redis.zrem(redisKeys.members(group), id);
  }

  /** True for exactly one caller per (endpoint, slot): the replica that runs that check. */
  async claimCheck(service: string, endpointId: string, slot: number, by: string, ttlMs: number): Promise<boolean> {
    const r = await this.redis.set(redisKeys.checkClaim(service, endpointId, slot), by, 'PX', Math.max(1, Math.round(ttlMs)), 'NX');
    return r === 'OK';
  }
}
