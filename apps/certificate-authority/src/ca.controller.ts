import { Controller, Inject } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  CaCertsListRequestV1,
  CaInfoRequestV1,
  type CaInfoResultV1,
  CaRevokeRequestV1,
  type CaRevokeResultV1,
  CaRotateRequestV1,
  type CaRotateResultV1,
  CaSignRequestV1,
  CaTokenCreateRequestV1,
  decode,
  subjects,
} from '@novamesh/contracts';
import { CertRegistryService } from './cert-registry.service';
import { JoinTokensService } from './join-tokens.service';
import { RootRotationService } from './root-rotation.service';
import { SigningService } from './signing.service';
import { CA_INFO } from './tokens';
import { TrustPublisherService } from './trust-publisher.service';

const MAX_SIGN_BYTES = 128 * 1024;
const body = (data: Uint8Array) => (data.byteLength ? data : new TextEncoder().encode('{}'));

/**
 * The certificate authority's commands, answered over core NATS request/reply by one replica of
 * the queue group `certificate-authority`. Every request is validated here; refusals are
 * `{ ok: false, error: { code, message, issues } }` replies.
 */
@Controller()
export class CaController {
  constructor(
    private readonly signing: SigningService,
    private readonly tokens: JoinTokensService,
    private readonly certs: CertRegistryService,
    private readonly trust: TrustPublisherService,
    private readonly rotation: RootRotationService,
    @Inject(CA_INFO) private readonly info: Omit<CaInfoResultV1, 'ok'>,
  ) {}

  @MessagePattern(subjects.ca('sign'))
  sign(@Payload() data: Uint8Array) {
    return this.signing.sign(decode(CaSignRequestV1, body(data), 'sign request', MAX_SIGN_BYTES));
  }

  @MessagePattern(subjects.ca('token.create'))
  createToken(@Payload() data: Uint8Array) {
    return this.tokens.create(decode(CaTokenCreateRequestV1, body(data), 'token request'));
  }

  @MessagePattern(subjects.ca('revoke'))
  async revoke(@Payload() data: Uint8Array): Promise<CaRevokeResultV1> {
    const req = decode(CaRevokeRequestV1, body(data), 'revoke request');
    const { record, alreadyRevoked } = await this.certs.revoke(req.serial, req.reason);
    // Also on a repeated revoke: it repairs a list that a failed publication left behind.
    await this.trust.addRevoked(record.serial);
    return { ok: true, serial: record.serial, revokedAt: record.revokedAt ?? '', alreadyRevoked };
  }

  /** The root and intermediate this replica signs with: public facts (`meshctl check` reads their expiry). */
  @MessagePattern(subjects.ca('info'))
  describe(@Payload() data: Uint8Array): CaInfoResultV1 {
    decode(CaInfoRequestV1, body(data), 'info request');
    return { ok: true, ...this.info };
  }

  /** Root rotation: `begin`, `status`, `finish` (see CaRotateRequestV1). */
  @MessagePattern(subjects.ca('rotate'))
  rotate(@Payload() data: Uint8Array): Promise<CaRotateResultV1> {
    return this.rotation.handle(decode(CaRotateRequestV1, body(data), 'rotate request').phase);
  }

  @MessagePattern(subjects.ca('certs.list'))
  async list(@Payload() data: Uint8Array) {
    const req = decode(CaCertsListRequestV1, body(data), 'list request');
    return { ok: true, certs: await this.certs.list(req) };
  }
}
