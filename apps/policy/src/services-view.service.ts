import type { JetStreamClient } from '@nats-io/jetstream';
import { Inject, Injectable } from '@nestjs/common';
import { followLastValues } from '@novamesh/bus';
import { decodeForSubject, EndpointSetV1, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { JETSTREAM, LOGGER } from './tokens';

/**
 * Registered services and their endpoint labels, learned from discovery's public endpoint-set
 * events (never from discovery's store). Used to cross-check policies (subsets, unknown
 * services) and to give every registered service an effective policy.
 */
@Injectable()
export class ServicesViewService {
  private readonly labels = new Map<string, Record<string, string>[]>();
  private readonly listeners: ((service: string) => void)[] = [];
  private stopFn: (() => Promise<void>) | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'services-view' });
  }

  /** Called with a service name the first time it is seen registered. */
  onNewService(listener: (service: string) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.endpoints,
      filterSubject: subjects.endpointsEach,
      logger: this.log,
      onMessage: (m) => {
        // Checked as every reader of the subject checks it (schema, size, the subject's own service):
        // what fails is logged and skipped, and the service keeps what was known of it.
        const set = decodeForSubject(EndpointSetV1, m.subject, m.data, 'endpoint set');
        const isNew = !this.labels.has(set.service);
        if (set.deregistered) this.labels.delete(set.service);
        else {
          this.labels.set(
            set.service,
            set.endpoints.map((e) => e.labels),
          );
          if (isNew) for (const l of this.listeners) l(set.service);
        }
      },
    });
    this.stopFn = view.stop;
  }

  endpointLabels(service: string): Record<string, string>[] | undefined {
    return this.labels.get(service);
  }

  names(): string[] {
    return [...this.labels.keys()].sort();
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
  }
}
