import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { type DiscoveryQueryReplyV1, DiscoveryQueryV1, decode, ErrorCode, MeshError, subjects } from '@novamesh/contracts';
import { matchesLabels } from '@novamesh/discovery';
import { EndpointsViewService } from './endpoints-view.service';

/** `mesh.v1.discovery.query`: one service, all services, or those with endpoints matching labels. */
@Controller()
export class QueryController {
  constructor(private readonly view: EndpointsViewService) {}

  @MessagePattern(subjects.discoveryQuery)
  query(@Payload() data: Uint8Array): DiscoveryQueryReplyV1 {
    const q = decode(DiscoveryQueryV1, data.byteLength ? data : new TextEncoder().encode('{}'), 'discovery query');
    const candidates = q.name ? [this.view.get(q.name)].filter((s) => s !== undefined) : this.view.all();
    const services = candidates
      .filter((s) => !s.deregistered)
      .map((s) => ({
        ...s,
        endpoints: s.endpoints.filter((e) => matchesLabels(e.labels, q.labels) && (q.includeUnhealthy || e.status === 'healthy')),
      }))
      .filter((s) => !q.labels || s.endpoints.length > 0)
      .sort((a, b) => (a.service < b.service ? -1 : 1));
    if (q.name && services.length === 0 && !q.labels)
      throw new MeshError(ErrorCode.notFound, `service "${q.name}" is not registered`, {
        issues: [{ path: 'name', message: 'is not registered' }],
      });
    return { ok: true, services };
  }
}
