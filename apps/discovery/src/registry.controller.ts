import { Controller, Inject } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import type { JetStreamContext } from '@novamesh/bus/nest';
import { decodeRegistryEvent, ErrorCode, MeshError, SUBJECT_ROOT } from '@novamesh/contracts';
import { activeEndpointIds, applyDeregister, applyEndpointAdd, applyEndpointRemove, applyRegister, isLive } from '@novamesh/discovery';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import { RegistryService } from './registry.service';
import { HEALTH_STORE, LOGGER } from './tokens';

/**
 * Registry events from workloads, meshctl and any NATS client. Each handler validates at the
 * edge (a refusal is dead-lettered with the reason, nothing is stored), then applies the event
 * through RegistryService. The stream sequence orders events, so redeliveries are harmless.
 */
@Controller()
export class RegistryController {
  private readonly log: Logger;

  constructor(
    private readonly registry: RegistryService,
    @Inject(HEALTH_STORE) private readonly health: HealthStore,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'registry-events' });
  }

  @EventPattern(`${SUBJECT_ROOT}.registry.>`)
  async onRegistryEvent(@Payload() data: Uint8Array, @Ctx() context: unknown): Promise<void> {
    const ctx = context as JetStreamContext; // Nest types handler arguments after the payload as unknown
    const event = decodeRegistryEvent(ctx.subject, data);
    const seq = ctx.message.seq;
    const now = Date.now();
    switch (event.action) {
      case 'register':
        await this.registry.mutate(event.service, (cur) => applyRegister(cur, event.body, seq, now));
        this.log.debug({ meshService: event.service, endpoints: event.body.endpoints.length, seq }, 'service registered');
        return;
      case 'deregister': {
        let live = true as boolean;
        await this.registry.mutate(event.service, (cur) => {
          live = isLive(cur);
          return applyDeregister(cur, event.body.drain, seq, now);
        });
        // Nothing to undo (never registered, or already gone): said, not dropped without a word.
        if (!live)
          this.log.info(
            { meshService: event.service, seq },
            'deregister of a service that is not registered (never, or no longer): nothing to do',
          );
        else this.log.debug({ meshService: event.service, drainMs: event.body.drain, seq }, 'service deregistering');
        return;
      }
      case 'endpoint.add':
        await this.registry.mutate(event.service, (cur) => applyEndpointAdd(cur, event.service, event.body.endpoint, seq));
        return;
      case 'endpoint.remove': {
        const id = event.body.endpointId;
        // What was not registered: the service, or only the endpoint.
        let missing = undefined as 'service' | 'endpoint' | undefined;
        await this.registry.mutate(event.service, (cur) => {
          missing = !isLive(cur) ? 'service' : activeEndpointIds(cur).includes(id) ? undefined : 'endpoint';
          return applyEndpointRemove(cur, id, event.body.drain, seq, now);
        });
        if (missing === 'service')
          this.log.info(
            { meshService: event.service, endpoint: id, seq },
            'endpoint.remove for a service that is not registered (never, or no longer): nothing to do',
          );
        else if (missing === 'endpoint')
          this.log.info(
            { meshService: event.service, endpoint: id, seq },
            'endpoint.remove of an endpoint that is not active (never registered, or already removed): its removal is recorded (an add sent before it may still arrive)',
          );
        return;
      }
      case 'heartbeat':
        await this.onHeartbeat(event.service, event.body.endpointIds, now);
        return;
    }
  }

  private async onHeartbeat(service: string, ids: string[] | undefined, now: number): Promise<void> {
    const record = this.registry.get(service);
    if (!isLive(record))
      throw new MeshError(ErrorCode.notFound, `heartbeat for service "${service}", which is not registered`, {
        retryable: true,
        issues: [{ path: 'service', message: 'is not registered' }],
      });
    const active = new Set(activeEndpointIds(record));
    const unknown = (ids ?? []).filter((id) => !active.has(id));
    if (unknown.length)
      throw new MeshError(ErrorCode.notFound, `heartbeat names endpoints that are not registered: ${unknown.join(', ')}`, {
        retryable: true,
        issues: unknown.map((id) => ({ path: 'endpointIds', message: `"${id}" is not registered` })),
      });
    if (!record.spec.heartbeat) return; // heartbeats are accepted but only matter with heartbeat.ttl
    try {
      await this.health.recordHeartbeat(service, ids ?? [...active], now);
    } catch (err) {
      // Redis down: liveness cannot be recorded, and the sweeper pauses TTL expiry until it is back.
      this.log.debug({ err, meshService: service }, 'heartbeat not recorded: health store unavailable');
      return;
    }
    await this.registry.refresh(service);
  }
}
