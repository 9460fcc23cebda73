import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  decode,
  PolicyAnalyzeRequestV1,
  PolicyApplyRequestV1,
  PolicyDeleteRequestV1,
  PolicyGetRequestV1,
  PolicyHistoryRequestV1,
  PolicyListRequestV1,
  PolicyRollbackRequestV1,
  subjects,
} from '@novamesh/contracts';
import { PolicyStoreService } from './policy-store.service';

const MAX_POLICY_BYTES = 512 * 1024;
const body = (data: Uint8Array) => (data.byteLength ? data : new TextEncoder().encode('{}'));

/**
 * The policy commands, answered over core NATS request/reply by one replica of the queue
 * group. Every request is validated here; refusals are `{ ok: false, error }` replies with the
 * code, message and every issue with its path.
 */
@Controller()
export class PolicyController {
  constructor(private readonly store: PolicyStoreService) {}

  @MessagePattern(subjects.policy('apply'))
  async apply(@Payload() data: Uint8Array) {
    const req = decode(PolicyApplyRequestV1, body(data), 'apply request', MAX_POLICY_BYTES);
    return this.store.apply(req.policy, { dryRun: req.dryRun, expectedRevision: req.expectedRevision });
  }

  @MessagePattern(subjects.policy('delete'))
  async delete(@Payload() data: Uint8Array) {
    const req = decode(PolicyDeleteRequestV1, body(data), 'delete request');
    const { revision } = await this.store.delete(req.kind, req.name, req.expectedRevision);
    return { ok: true, kind: req.kind, name: req.name, deletedRevision: revision };
  }

  @MessagePattern(subjects.policy('get'))
  async get(@Payload() data: Uint8Array) {
    const req = decode(PolicyGetRequestV1, body(data), 'get request');
    return { ok: true, ...(await this.store.get(req.kind, req.name)) };
  }

  @MessagePattern(subjects.policy('list'))
  list(@Payload() data: Uint8Array) {
    const req = decode(PolicyListRequestV1, body(data), 'list request');
    return { ok: true, policies: this.store.list(req) };
  }

  @MessagePattern(subjects.policy('history'))
  async history(@Payload() data: Uint8Array) {
    const req = decode(PolicyHistoryRequestV1, body(data), 'history request');
    return { ok: true, kind: req.kind, name: req.name, revisions: await this.store.history(req.kind, req.name) };
  }

  @MessagePattern(subjects.policy('rollback'))
  async rollback(@Payload() data: Uint8Array) {
    const req = decode(PolicyRollbackRequestV1, body(data), 'rollback request');
    return this.store.rollback(req.kind, req.name, req.toRevision);
  }

  @MessagePattern(subjects.policy('analyze'))
  analyze(@Payload() data: Uint8Array) {
    decode(PolicyAnalyzeRequestV1, body(data), 'analyze request');
    return { ok: true, findings: this.store.analyze() };
  }
}
