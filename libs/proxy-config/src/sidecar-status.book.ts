import type { ProxyAckV1, ProxyStatusEntryV1 } from '@novamesh/contracts';

/** Sidecars silent this long are reported stale (the contract's 30 s). */
export const DEFAULT_STALE_AFTER_MS = 30_000;

export interface SidecarStatusBookOptions {
  /** Default {@link DEFAULT_STALE_AFTER_MS}. */
  staleAfterMs?: number;
  /** Sidecars silent this long are forgotten (default 20 × staleAfterMs): gone for good. */
  forgetAfterMs?: number;
  /** (version, createdAt) pairs kept per service to compute lag (default 64). */
  historyPerService?: number;
}

interface Published {
  version: number;
  hash: string;
  createdAtMs: number;
}

interface Seen {
  ack: ProxyAckV1;
  receivedAtMs: number;
}

/**
 * What proxy-config knows about sidecars: the latest acknowledgement of each (service, sidecar)
 * and, per service, the snapshot versions published recently with their creation times. Answers
 * `mesh.v1.proxy.status`. In memory, one per replica (every replica hears every ack; acks repeat
 * every 10 s, so a restarted replica catches up within one period). Single-threaded.
 */
export class SidecarStatusBook {
  private readonly acks = new Map<string, Map<string, Seen>>();
  private readonly history = new Map<string, Published[]>();
  private readonly staleAfterMs: number;
  private readonly forgetAfterMs: number;
  private readonly historyPerService: number;

  constructor(opts: SidecarStatusBookOptions = {}) {
    this.staleAfterMs = opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
    this.forgetAfterMs = opts.forgetAfterMs ?? this.staleAfterMs * 20;
    this.historyPerService = opts.historyPerService ?? 64;
  }

  /** A snapshot version of `service` was published (by any replica). Older or repeated versions are ignored. */
  recordSnapshot(service: string, version: number, hash: string, createdAt: string, nowMs: number): void {
    let list = this.history.get(service);
    if (!list) {
      list = [];
      this.history.set(service, list);
    }
    const last = list[list.length - 1];
    if (last && version <= last.version) return;
    const parsed = Date.parse(createdAt);
    list.push({ version, hash, createdAtMs: Number.isNaN(parsed) ? nowMs : parsed });
    if (list.length > this.historyPerService) list.splice(0, list.length - this.historyPerService);
  }

  /** The latest acknowledgement of a sidecar; one that says it is leaving removes the sidecar. */
  recordAck(ack: ProxyAckV1, nowMs: number): void {
    if (ack.leaving) {
      const sidecars = this.acks.get(ack.service);
      sidecars?.delete(ack.sidecar);
      if (sidecars?.size === 0) this.acks.delete(ack.service);
      return;
    }
    let sidecars = this.acks.get(ack.service);
    if (!sidecars) {
      sidecars = new Map();
      this.acks.set(ack.service, sidecars);
    }
    sidecars.set(ack.sidecar, { ack, receivedAtMs: nowMs });
  }

  /** Latest published version of `service`, if any. */
  latest(service: string): { version: number; hash: string; createdAtMs: number } | undefined {
    const list = this.history.get(service);
    return list?.[list.length - 1];
  }

  /** Every known sidecar (of `service` when given), sorted by service then sidecar id. Forgets long-silent ones. */
  entries(nowMs: number, service?: string): ProxyStatusEntryV1[] {
    this.prune(nowMs);
    const out: ProxyStatusEntryV1[] = [];
    const services = service === undefined ? [...this.acks.keys()].sort() : this.acks.has(service) ? [service] : [];
    for (const svc of services) {
      const sidecars = this.acks.get(svc) as Map<string, Seen>;
      for (const id of [...sidecars.keys()].sort()) out.push(this.entry(svc, sidecars.get(id) as Seen, nowMs));
    }
    return out;
  }

  private entry(service: string, seen: Seen, nowMs: number): ProxyStatusEntryV1 {
    const { ack } = seen;
    const latest = this.latest(service);
    const latestVersion = latest?.version ?? 0;
    const inSync = ack.version === latestVersion && ack.hash === (latest?.hash ?? '');
    let lagMs = 0;
    if (!inSync && latest && ack.version <= latestVersion) {
      // Behind since the first version it has not applied was published; when that one is no
      // longer in the history, the oldest kept newer version is the best bound we have.
      const firstMissed = this.history.get(service)?.find((p) => p.version > ack.version) ?? latest;
      lagMs = Math.max(0, nowMs - firstMissed.createdAtMs);
    }
    const lastSeenMs = Math.max(0, nowMs - seen.receivedAtMs);
    return {
      service,
      sidecar: ack.sidecar,
      ...(ack.address !== undefined ? { address: ack.address } : {}),
      version: ack.version,
      latestVersion,
      inSync,
      lagMs,
      lastSeenMs,
      stale: lastSeenMs > this.staleAfterMs,
      ...(ack.rejected ? { rejected: ack.rejected } : {}),
    };
  }

  private prune(nowMs: number): void {
    for (const [svc, sidecars] of this.acks) {
      for (const [id, seen] of sidecars) if (nowMs - seen.receivedAtMs > this.forgetAfterMs) sidecars.delete(id);
      if (sidecars.size === 0) this.acks.delete(svc);
    }
  }
}
