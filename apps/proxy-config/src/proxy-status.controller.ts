import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  decode,
  MeshValidationError,
  type ProxyStatusReplyV1,
  ProxyStatusRequestV1,
  SERVICE_NAME_PATTERN,
  subjects,
} from '@novamesh/contracts';
import { SidecarStatusService } from './sidecar-status.service';

const body = (data: Uint8Array) => (data.byteLength ? data : new TextEncoder().encode('{}'));

/**
 * `mesh.v1.proxy.status`, answered by one replica of the queue group: every sidecar (or those of
 * one service) with its version, the latest version, sync state and lag. A malformed request gets
 * `{ ok: false, error }` naming the field and the reason.
 */
@Controller()
export class ProxyStatusController {
  constructor(private readonly status: SidecarStatusService) {}

  @MessagePattern(subjects.proxyStatus)
  proxyStatus(@Payload() data: Uint8Array): ProxyStatusReplyV1 {
    const req = decode(ProxyStatusRequestV1, body(data), 'proxy-status request');
    if (req.service !== undefined && !SERVICE_NAME_PATTERN.test(req.service))
      throw new MeshValidationError('invalid proxy-status request', [
        {
          path: 'service',
          message: "must be a service name: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        },
      ]);
    return { ok: true, sidecars: this.status.entries(req.service) };
  }
}
