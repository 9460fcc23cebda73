import type { Bucket, KV } from '@nats-io/kv';
import { Inject, Injectable } from '@nestjs/common';
import { type CaCertRecordV1, type CaCertsListRequestV1, type CaCertV1, ErrorCode, MeshError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { isCasConflict } from './refusal';
import { ROTATION_LOCK_KEY } from './rotation-lock';
import { CERTS_KV, LOGGER } from './tokens';

const MAX_CAS_ATTEMPTS = 10;

/** The state of a stored certificate at `now`: revoked wins, then expiry. */
export function stateAt(record: CaCertRecordV1, now: number): CaCertV1['state'] {
  if (record.state === 'revoked') return 'revoked';
  return now > Date.parse(record.notAfter) ? 'expired' : 'issued';
}

/** A stored record with the revision it was read at (for compare-and-set). */
export interface StoredCertRecord {
  record: CaCertRecordV1;
  revision: number;
}

/**
 * Owns `mesh_ca_certs`: one entry per issued certificate (key = serial), written once at issue, once
 * more at revocation or renewal (compare-and-set, so concurrent writers agree), and deleted some time
 * after it expired (see CertPruneService). The bucket also holds the root-rotation lock under
 * {@link ROTATION_LOCK_KEY}, which every read of "all records" skips. Safe to call concurrently.
 */
@Injectable()
export class CertRegistryService {
  private readonly log: Logger;

  constructor(
    @Inject(CERTS_KV) private readonly kv: KV,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'cert-registry' });
  }

  async record(record: CaCertRecordV1): Promise<void> {
    try {
      await this.kv.create(record.serial, JSON.stringify(record));
    } catch (e) {
      throw new MeshError(ErrorCode.unavailable, `certificate store unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
    }
  }

  async get(serial: string): Promise<CaCertRecordV1 | undefined> {
    const e = await this.kv.get(serial);
    return e?.operation === 'PUT' ? e.json<CaCertRecordV1>() : undefined;
  }

  /** Marks a certificate revoked. Idempotent: a second call reports `alreadyRevoked`. MESH_NOT_FOUND for an unknown serial. */
  async revoke(serial: string, reason: string | undefined, now = Date.now()): Promise<{ record: CaCertRecordV1; alreadyRevoked: boolean }> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(serial);
      if (e?.operation !== 'PUT')
        throw new MeshError(ErrorCode.notFound, `no certificate with serial ${serial} was issued by this CA`, {
          issues: [{ path: 'serial', message: 'unknown serial' }],
        });
      const current = e.json<CaCertRecordV1>();
      if (current.state === 'revoked') return { record: current, alreadyRevoked: true };
      const record: CaCertRecordV1 = {
        ...current,
        state: 'revoked',
        revokedAt: new Date(now).toISOString(),
        ...(reason ? { revocationReason: reason } : {}),
      };
      try {
        await this.kv.update(serial, JSON.stringify(record), e.revision);
        this.log.info({ serial, spiffeId: record.spiffeId, reason }, 'certificate revoked');
        return { record, alreadyRevoked: false };
      } catch (err) {
        if (!isCasConflict(err)) throw new MeshError(ErrorCode.unavailable, `certificate store unavailable: ${(err as Error).message}`);
      }
    }
    throw new MeshError(ErrorCode.conflict, `certificate ${serial} is changing too fast to revoke; try again`, { retryable: true });
  }

  /**
   * Notes that the holder of `serial` renewed with it as proof and got `successor`: it presents the
   * successor from then on, so `serial` no longer counts as live for root rotation. Best effort
   * (a lost race or a store outage is logged): an unmarked certificate only delays a rotation's finish.
   */
  async markSuperseded(serial: string, successor: string): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      try {
        const e = await this.kv.get(serial);
        if (e?.operation !== 'PUT') return;
        const current = e.json<CaCertRecordV1>();
        if (current.supersededBy) return;
        await this.kv.update(serial, JSON.stringify({ ...current, supersededBy: successor }), e.revision);
        return;
      } catch (err) {
        if (!isCasConflict(err)) {
          this.log.warn({ serial, successor, err: (err as Error).message }, 'renewed certificate not marked superseded');
          return;
        }
      }
    }
  }

  /** Certificates still in use: not expired, not revoked, not superseded by a renewal. */
  async live(now = Date.now()): Promise<CaCertRecordV1[]> {
    return (await this.records()).filter((r) => stateAt(r, now) === 'issued' && !r.supersededBy);
  }

  private async records(): Promise<CaCertRecordV1[]> {
    return (await this.entries()).map((e) => e.record);
  }

  /** Every stored certificate record with its revision. Reads the whole bucket, 64 keys at a time. */
  async entries(): Promise<StoredCertRecord[]> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) if (k !== ROTATION_LOCK_KEY) keys.push(k);
    const out: StoredCertRecord[] = [];
    for (let i = 0; i < keys.length; i += 64) {
      const batch = await Promise.all(keys.slice(i, i + 64).map((k) => this.kv.get(k)));
      for (const e of batch) if (e?.operation === 'PUT') out.push({ record: e.json<CaCertRecordV1>(), revision: e.revision });
    }
    return out;
  }

  /**
   * Deletes these records unless they changed since they were read (compare-and-set on the
   * revision: a concurrent write wins and the record waits for the next prune), then clears the
   * delete markers older than 30 minutes so the bucket does not grow with them. Idempotent, safe on
   * every replica at once. Returns how many this call deleted.
   */
  async remove(entries: readonly StoredCertRecord[]): Promise<number> {
    let removed = 0;
    for (let i = 0; i < entries.length; i += 64) {
      const results = await Promise.allSettled(
        entries.slice(i, i + 64).map((e) => this.kv.delete(e.record.serial, { previousSeq: e.revision })),
      );
      for (const r of results) {
        if (r.status === 'fulfilled') removed++;
        else if (!isCasConflict(r.reason)) throw r.reason;
      }
    }
    // The bucket Kvm opens is a Bucket; KV (the interface) does not declare purgeDeletes.
    await (this.kv as Partial<Pick<Bucket, 'purgeDeletes'>>).purgeDeletes?.();
    return removed;
  }

  /** Every stored certificate matching the filter, newest first, with its state now. Reads the whole bucket. */
  async list(filter: CaCertsListRequestV1, now = Date.now()): Promise<CaCertV1[]> {
    const out: CaCertV1[] = [];
    for (const r of await this.records()) {
      const cert: CaCertV1 = { ...r, state: stateAt(r, now) };
      if (filter.service && cert.service !== filter.service) continue;
      if (filter.namespace && cert.namespace !== filter.namespace) continue;
      if (filter.state && cert.state !== filter.state) continue;
      out.push(cert);
    }
    return out.sort((a, b) => b.issuedAt.localeCompare(a.issuedAt) || a.serial.localeCompare(b.serial));
  }
}
