import type { KV } from '@nats-io/kv';
import { Inject, Injectable } from '@nestjs/common';
import { ErrorCode, MeshError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { isCasConflict } from './refusal';
import { CERTS_KV, LOGGER } from './tokens';

/**
 * The key of the root-rotation lock in `mesh_ca_certs` (every other key there is a hex serial, so
 * the two can never collide; the registry skips this key when it reads the bucket).
 */
export const ROTATION_LOCK_KEY = 'root-rotation-lock';

/**
 * A lock older than this, while the CA directory shows no rotation in progress, was left by a
 * `begin` that crashed before it changed the directory (or a `finish` that crashed after it did):
 * the next `begin` takes it over. A `begin` or `finish` runs in well under a second.
 */
export const STALE_LOCK_MS = 2 * 60_000;

/** The lock's value: who began the rotation and, while a `finish` runs, who is finishing it. */
export interface RotationLockRecord {
  instance: string;
  startedAt: string;
  finishing?: { instance: string; at: string };
}

/** A lock this replica wrote, at the revision it wrote. */
export interface HeldLock {
  record: RotationLockRecord;
  revision: number;
}

const conflictMessage = (r: RotationLockRecord) =>
  `a root rotation is already in progress, started by ${r.instance} at ${r.startedAt}: ` +
  'see `meshctl ca rotate status`, then `meshctl ca rotate finish`';

/**
 * Compare-and-set lock in NATS KV that makes root rotation exclusive across CA replicas: exactly
 * one `begin` wins (the key is created, never overwritten), and a `finish` marks the lock before it
 * touches the CA directory, so two replicas never change the directory at once. The lock lives
 * from `begin` to `finish`. Safe to call concurrently from every replica.
 */
@Injectable()
export class RotationLock {
  private readonly log: Logger;

  constructor(
    @Inject(CERTS_KV) private readonly kv: KV,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'rotation-lock' });
  }

  /** The current lock, if any. */
  async read(): Promise<(HeldLock & { age: number }) | undefined> {
    const e = await this.kv.get(ROTATION_LOCK_KEY);
    if (e?.operation !== 'PUT') return undefined;
    const record = e.json<RotationLockRecord>();
    const last = Math.max(Date.parse(record.startedAt), record.finishing ? Date.parse(record.finishing.at) : 0);
    return { record, revision: e.revision, age: Date.now() - last };
  }

  /**
   * Takes the lock for a `begin`. MESH_CONFLICT naming the holder when another rotation holds it,
   * unless that lock is stale: older than {@link STALE_LOCK_MS} while `rotating()` (the CA
   * directory) says no rotation is in progress.
   */
  async acquire(instance: string, rotating: () => Promise<boolean>, now = Date.now()): Promise<HeldLock> {
    const record: RotationLockRecord = { instance, startedAt: new Date(now).toISOString() };
    const value = JSON.stringify(record);
    try {
      return { record, revision: await this.kv.create(ROTATION_LOCK_KEY, value) };
    } catch (e) {
      if (!isCasConflict(e)) throw unavailable(e);
    }
    const held = await this.read();
    if (!held) throw new MeshError(ErrorCode.conflict, 'another root rotation began at the same moment; try again', { retryable: true });
    if (held.age < STALE_LOCK_MS || (await rotating())) throw new MeshError(ErrorCode.conflict, conflictMessage(held.record));
    try {
      const revision = await this.kv.update(ROTATION_LOCK_KEY, value, held.revision);
      this.log.warn({ staleLock: held.record }, 'took over a stale root-rotation lock: the CA directory shows no rotation in progress');
      return { record, revision };
    } catch (e) {
      if (isCasConflict(e)) throw new MeshError(ErrorCode.conflict, conflictMessage((await this.read())?.record ?? held.record));
      throw unavailable(e);
    }
  }

  /**
   * Marks the lock as being finished by `instance` (creating it when a rotation began without one,
   * e.g. before the lock existed). MESH_CONFLICT when another replica is finishing it right now.
   */
  async claimFinish(instance: string, now = Date.now()): Promise<HeldLock> {
    const at = new Date(now).toISOString();
    const held = await this.read();
    if (held?.record.finishing && held.age < STALE_LOCK_MS)
      throw new MeshError(
        ErrorCode.conflict,
        `the root rotation is being finished by ${held.record.finishing.instance} since ${held.record.finishing.at}`,
        { retryable: true },
      );
    const record: RotationLockRecord = { ...(held?.record ?? { instance, startedAt: at }), finishing: { instance, at } };
    try {
      const value = JSON.stringify(record);
      const revision = held
        ? await this.kv.update(ROTATION_LOCK_KEY, value, held.revision)
        : await this.kv.create(ROTATION_LOCK_KEY, value);
      return { record, revision };
    } catch (e) {
      if (isCasConflict(e))
        throw new MeshError(ErrorCode.conflict, 'another replica changed the root rotation at the same moment; try again', {
          retryable: true,
        });
      throw unavailable(e);
    }
  }

  /** Gives up a `finish` claim that did not finish (the rotation is still in progress). Best effort. */
  async unclaimFinish(held: HeldLock): Promise<void> {
    const { finishing: _finishing, ...record } = held.record;
    await this.kv.update(ROTATION_LOCK_KEY, JSON.stringify(record), held.revision).catch((e: unknown) => this.lost(e));
  }

  /** Releases the lock if it is still the one written (a replica that took it over since keeps it). Best effort. */
  async release(held: HeldLock): Promise<void> {
    await this.kv.delete(ROTATION_LOCK_KEY, { previousSeq: held.revision }).catch((e: unknown) => this.lost(e));
  }

  private lost(e: unknown): void {
    if (!isCasConflict(e)) this.log.warn({ err: (e as Error).message }, 'root-rotation lock not updated');
  }
}

const unavailable = (e: unknown) =>
  new MeshError(ErrorCode.unavailable, `root-rotation lock unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
