import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Inject, Injectable } from '@nestjs/common';
import { followLastValues, publishJson } from '@novamesh/bus';
import { type EffectivePolicyV1, type Policy, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { computeEffective } from '@novamesh/policy';
import { JETSTREAM, LOGGER } from './tokens';

/** Hash of what a service's sidecars would do differently: everything but revision and time. */
export function effectiveHash(e: Omit<EffectivePolicyV1, 'revision' | 'updatedAt'> | EffectivePolicyV1): string {
  const { revision: _r, updatedAt: _u, ...content } = e as EffectivePolicyV1;
  return createHash('sha256').update(JSON.stringify(content)).digest('base64url').slice(0, 22);
}

/**
 * Publishes each service's effective policy on `mesh.v1.config.policy.<service>` when — and
 * only when — it differs from the last one in the stream. Every replica runs this from the same
 * KV watch; identical publications carry the same `Nats-Msg-Id` and the stream keeps one.
 */
@Injectable()
export class EffectivePublisherService {
  private readonly published = new Map<string, string>();
  private stopFn: (() => Promise<void>) | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'effective-publisher' });
  }

  /** Loads what the stream already holds, so a restart republishes nothing that did not change. */
  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.config,
      filterSubject: subjects.effectivePolicyAll,
      logger: this.log,
      onMessage: (m) => {
        const e = m.json<EffectivePolicyV1>();
        this.published.set(e.service, effectiveHash(e));
      },
    });
    this.stopFn = view.stop;
  }

  /** Recomputes one service's effective policy and publishes it if it changed. */
  async refresh(service: string, policies: { policy: Policy; revision: number }[], changeRevision: number): Promise<boolean> {
    const effective = computeEffective(service, policies);
    const hash = effectiveHash(effective);
    if (this.published.get(service) === hash) return false;
    const event: EffectivePolicyV1 = { ...effective, revision: changeRevision, updatedAt: new Date().toISOString() };
    await publishJson(this.js, subjects.effectivePolicy(service), event, { msgId: `${service}:${changeRevision}:${hash}` });
    this.published.set(service, hash);
    this.log.info({ meshService: service, revision: changeRevision, sources: effective.sources.length }, 'effective policy published');
    return true;
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
  }
}
