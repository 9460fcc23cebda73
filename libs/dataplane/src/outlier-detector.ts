import type { OutlierDetection } from '@novamesh/contracts';
import type { EjectionSource } from './endpoint-pool';

/**
 * What one request to an endpoint showed. `gateway-error` is a 502/503/504; `local-origin-failure`
 * a failure the sidecar saw itself (connect refused or timed out, reset), which Envoy maps to a
 * 503: both count as gateway errors and as 5xx.
 */
export type OutlierOutcome = 'success' | '5xx' | 'gateway-error' | 'local-origin-failure';

/** Milliseconds; injectable for tests. */
export interface Clock {
  now(): number;
}

/** Envoy's default `max_ejection_time`; a longer baseEjectionTime raises the cap to itself. */
export const DEFAULT_MAX_EJECTION_TIME_MS = 300_000;

/** The outcome an HTTP status stands for. */
export function outcomeOfStatus(status: number): OutlierOutcome {
  if (status === 502 || status === 503 || status === 504) return 'gateway-error';
  return status >= 500 && status <= 599 ? '5xx' : 'success';
}

/** Ejections since the previous sweep and endpoints returned to service. */
export interface OutlierSweepResult {
  ejected: string[];
  returned: string[];
}

/** One endpoint's outlier state, for the admin `/clusters` page. */
export interface OutlierEndpointStatus {
  id: string;
  ejected: boolean;
  /** Epoch ms the ejection ends, while ejected. */
  ejectedUntil?: number;
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  /** Ejections over the endpoint's life. */
  timesEjected: number;
  /** The multiplier of baseEjectionTime the next ejection would start from, minus one; decays by one per healthy interval. */
  backoff: number;
}

interface EndpointState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** 0 while not ejected. */
  ejectedUntil: number;
  backoff: number;
  timesEjected: number;
  /** Returned lazily (by isEjected/record) since the last sweep. */
  returnedSinceSweep: boolean;
}

/**
 * Passive outlier detection with Envoy's semantics for the consecutive-error detectors. An
 * endpoint is ejected when it reaches `consecutive5xx` consecutive 5xx (or, when set,
 * `consecutiveGatewayErrors` consecutive gateway errors), for baseEjectionTime × its backoff
 * (which grows by one per ejection and decays by one per `interval` spent healthy), capped at
 * max(300 s, baseEjectionTime). No new ejection while ejected endpoints already make up
 * `maxEjectionPercent` or more of the known ones (so with any percent above 0 the first one is
 * always allowed). Call `sweep()` every `interval`; ejections end lazily in `isEjected` too.
 * Owns all its state; single-threaded use (one event loop).
 */
export class OutlierDetector implements EjectionSource {
  private readonly endpoints = new Map<string, EndpointState>();
  private readonly maxEjectionTime: number;
  private ejectedCount = 0;
  private pendingEjected: string[] = [];
  private pendingReturned: string[] = [];
  private changes = 0;

  constructor(
    private readonly cfg: OutlierDetection,
    private readonly clock: Clock = { now: Date.now },
    opts: { maxEjectionTime?: number } = {},
  ) {
    this.maxEjectionTime = Math.max(opts.maxEjectionTime ?? DEFAULT_MAX_EJECTION_TIME_MS, cfg.baseEjectionTime);
  }

  /** Bumped on every ejection and return: balancers built before are stale. */
  get version(): number {
    return this.changes;
  }

  /** How often to call {@link sweep}, in ms. */
  get interval(): number {
    return this.cfg.interval;
  }

  /** Endpoints currently ejected (including any whose time is up but that no call has returned yet). */
  get ejectedEndpoints(): number {
    return this.ejectedCount;
  }

  /** The upstream's endpoint ids: new ones start clean, removed ones are forgotten. */
  setEndpoints(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const [id, s] of this.endpoints)
      if (!keep.has(id)) {
        if (s.ejectedUntil) this.ejectedCount--;
        this.endpoints.delete(id);
      }
    for (const id of keep) if (!this.endpoints.has(id)) this.endpoints.set(id, newState());
  }

  /**
   * Counts a request's outcome; true when it ejected the endpoint (rebuild balancers now). An
   * endpoint not seen before is added. Outcomes of an ejected endpoint's last requests are ignored.
   */
  record(id: string, outcome: OutlierOutcome): boolean {
    let s = this.endpoints.get(id);
    if (!s) {
      s = newState();
      this.endpoints.set(id, s);
    }
    if (s.ejectedUntil && !this.returnIfDue(id, s, this.clock.now())) return false;
    if (outcome === 'success') {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
      return false;
    }
    s.consecutive5xx++;
    if (outcome === '5xx') s.consecutiveGateway = 0;
    else s.consecutiveGateway++;
    const gatewayLimit = this.cfg.consecutiveGatewayErrors;
    if (s.consecutive5xx >= this.cfg.consecutive5xx) {
      // As Envoy, the triggering counter restarts whether or not the cap let the ejection happen.
      s.consecutive5xx = 0;
      return this.eject(id, s);
    }
    if (gatewayLimit !== undefined && s.consecutiveGateway >= gatewayLimit) {
      s.consecutiveGateway = 0;
      return this.eject(id, s);
    }
    return false;
  }

  /** Whether the endpoint is out of the load-balancing set now; returns it when its time is up. */
  isEjected(id: string, now = this.clock.now()): boolean {
    const s = this.endpoints.get(id);
    if (!s?.ejectedUntil) return false;
    return !this.returnIfDue(id, s, now);
  }

  /**
   * The periodic pass (every `interval`): returns endpoints whose ejection is over, decays the
   * backoff of those that stayed healthy, and reports what changed since the previous sweep.
   */
  sweep(now = this.clock.now()): OutlierSweepResult {
    for (const [id, s] of this.endpoints) {
      if (s.ejectedUntil) {
        // Returned by this pass: its healthy intervals start counting from the next one.
        if (this.returnIfDue(id, s, now)) s.returnedSinceSweep = false;
      } else if (s.returnedSinceSweep) s.returnedSinceSweep = false;
      else if (s.backoff > 0) s.backoff--;
    }
    const result = { ejected: this.pendingEjected, returned: this.pendingReturned };
    this.pendingEjected = [];
    this.pendingReturned = [];
    return result;
  }

  /** Every known endpoint's state, sorted by id. */
  snapshot(now = this.clock.now()): OutlierEndpointStatus[] {
    return [...this.endpoints]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, s]) => {
        const ejected = s.ejectedUntil > 0 && now < s.ejectedUntil;
        return {
          id,
          ejected,
          ...(ejected ? { ejectedUntil: s.ejectedUntil } : {}),
          consecutive5xx: s.consecutive5xx,
          consecutiveGatewayErrors: s.consecutiveGateway,
          timesEjected: s.timesEjected,
          backoff: s.backoff,
        };
      });
  }

  private eject(id: string, s: EndpointState): boolean {
    if ((100 * this.ejectedCount) / this.endpoints.size >= this.cfg.maxEjectionPercent) return false;
    const base = this.cfg.baseEjectionTime;
    if (s.backoff * base < this.maxEjectionTime + base) s.backoff++;
    s.ejectedUntil = this.clock.now() + Math.min(base * s.backoff, this.maxEjectionTime);
    s.timesEjected++;
    s.returnedSinceSweep = false;
    this.ejectedCount++;
    this.changes++;
    this.pendingEjected.push(id);
    return true;
  }

  /** Ends the ejection when it is due; true when the endpoint is (now) in service. */
  private returnIfDue(id: string, s: EndpointState, now: number): boolean {
    if (now < s.ejectedUntil) return false;
    s.ejectedUntil = 0;
    // Envoy restarts the counters so a few new errors do not eject it again at once.
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    s.returnedSinceSweep = true;
    this.ejectedCount--;
    this.changes++;
    this.pendingReturned.push(id);
    return true;
  }
}

function newState(): EndpointState {
  return { consecutive5xx: 0, consecutiveGateway: 0, ejectedUntil: 0, backoff: 0, timesEjected: 0, returnedSinceSweep: false };
}
