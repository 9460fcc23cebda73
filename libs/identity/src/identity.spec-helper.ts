// Test-only helpers shared by this library's specs (excluded from the build by tsconfig).
import { ErrorCode, MeshError, type RevocationListV1, type TrustBundleV1 } from '@novamesh/contracts';
import type { CertificateRequest, WorkloadCertificate } from '@novamesh/sdk';
import type { Clock } from './clock';
import type { CertificateClient } from './workload-identity';

/** A clock whose time moves only through `advance`, running due timers in order and letting promises settle between them. */
export class FakeClock implements Clock {
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  constructor(public t = Date.parse('2030-01-01T00:00:00Z')) {}
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.nextId++;
    this.timers.push({ at: this.t + Math.max(0, ms), fn, id });
    return id;
  };
  clearTimeout = (id: unknown) => {
    this.timers = this.timers.filter((x) => x.id !== id);
  };
  /** When the next timer is due (epoch ms), or undefined. */
  next(): number | undefined {
    return this.timers.length ? Math.min(...this.timers.map((x) => x.at)) : undefined;
  }
  pending(): number {
    return this.timers.length;
  }
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await settle();
    for (;;) {
      const due = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
      await settle();
    }
    this.t = target;
  }
  /** Advances to the next timer and runs it. */
  async tick(): Promise<void> {
    await settle();
    const n = this.next();
    if (n !== undefined) await this.advance(n - this.t);
  }
}

/** Lets pending promise chains run (several macrotask turns: requests resolve through a few awaits). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A last-value feed that an async generator hands out until its signal aborts. */
export class Feed<T> {
  private waiting: ((v: T) => void)[] = [];
  private last: T | undefined;
  push(v: T): void {
    this.last = v;
    for (const w of this.waiting.splice(0)) w(v);
  }
  async *watch(signal?: AbortSignal): AsyncGenerator<T> {
    let seen: T | undefined;
    while (!signal?.aborted) {
      const v =
        this.last !== undefined && this.last !== seen
          ? this.last
          : await new Promise<T | undefined>((resolve) => {
              this.waiting.push(resolve);
              signal?.addEventListener('abort', () => resolve(undefined), { once: true });
            });
      if (v === undefined || signal?.aborted) return;
      seen = v;
      yield v;
    }
  }
}

/**
 * A fake CA behind the CertificateClient port: answers with numbered certificates valid for
 * `lifetimeMs` from the clock's now, or fails while `failWith` is set. Records every request.
 */
export class FakeCa implements CertificateClient {
  requests: CertificateRequest[] = [];
  failWith: MeshError | undefined;
  /** Refuses requests that prove identity with a certificate (not those with the join token) while set. */
  refuseCertificatesWith: MeshError | undefined;
  lifetimeMs = 100_000;
  private n = 0;
  readonly bundles = new Feed<TrustBundleV1>();
  readonly revocations = new Feed<RevocationListV1>();
  constructor(private readonly clock: FakeClock) {}

  async requestCertificate(req: CertificateRequest): Promise<WorkloadCertificate> {
    this.requests.push(req);
    await Promise.resolve();
    if (this.failWith) throw this.failWith;
    if (this.refuseCertificatesWith && 'certificatePem' in req) throw this.refuseCertificatesWith;
    this.n++;
    return {
      certificatePem: `cert-${this.n}`,
      chainPem: `chain-${this.n}`,
      keyPem: `key-${this.n}`,
      serial: `0A${this.n}`,
      notAfter: new Date(this.clock.now() + this.lifetimeMs).toISOString(),
      spiffeId: `spiffe://novamesh.local/ns/${req.namespace ?? 'default'}/svc/${req.service}`,
      trustBundlePem: 'bundle-1',
    };
  }
  watchTrustBundle(opts: { signal?: AbortSignal } = {}) {
    return this.bundles.watch(opts.signal);
  }
  watchRevocations(opts: { signal?: AbortSignal } = {}) {
    return this.revocations.watch(opts.signal);
  }
  /** How each request proved identity, in order. */
  proofs(): ('token' | 'certificate')[] {
    return this.requests.map((r) => ('token' in r ? 'token' : 'certificate'));
  }
}

export const unavailable = () =>
  new MeshError(ErrorCode.unavailable, 'nobody answers on mesh.v1.ca.sign: is the service running?', { retryable: true });
