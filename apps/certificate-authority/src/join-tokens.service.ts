import { createHash, randomBytes } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { Inject, Injectable } from '@nestjs/common';
import { type CaTokenCreateRequestV1, type CaTokenCreateResultV1, type CaTokenRecordV1, ErrorCode, MeshError } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { isCasConflict, ProofRefused } from './refusal';
import { LOGGER, TOKENS_KV } from './tokens';

const MAX_CAS_ATTEMPTS = 20;

/** The bucket key of a token: SHA-256 hex. The token itself is never stored or logged. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A short, non-secret handle of a token for logs and audit (the first 12 hex digits of its hash). */
export function tokenId(token: string): string {
  return tokenKey(token).slice(0, 12);
}

export interface TokenGrant {
  key: string;
  record: CaTokenRecordV1;
  revision: number;
}

/**
 * Owns `mesh_ca_tokens`. Creating a token stores only its hash with the identity, expiry and uses
 * left. Consuming one is a compare-and-set on the entry's revision, so across any number of CA
 * replicas a token with `uses = n` yields at most n certificates. Safe to call concurrently.
 */
@Injectable()
export class JoinTokensService {
  private readonly log: Logger;

  constructor(
    @Inject(TOKENS_KV) private readonly kv: KV,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'join-tokens' });
  }

  async create(req: CaTokenCreateRequestV1, now = Date.now()): Promise<CaTokenCreateResultV1> {
    const token = `nmjt_${randomBytes(32).toString('base64url')}`;
    const record: CaTokenRecordV1 = {
      service: req.service,
      namespace: req.namespace,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + req.ttl).toISOString(),
      uses: req.uses,
      usesLeft: req.uses,
    };
    try {
      await this.kv.create(tokenKey(token), JSON.stringify(record));
    } catch (e) {
      throw new MeshError(ErrorCode.unavailable, `token store unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
    }
    this.log.info(
      { tokenId: tokenId(token), meshService: req.service, namespace: req.namespace, expiresAt: record.expiresAt, uses: req.uses },
      'join token created',
    );
    return { ok: true, token, service: req.service, namespace: req.namespace, expiresAt: record.expiresAt, uses: req.uses };
  }

  /** Checks that `token` may be used now for this identity, without using it. Throws ProofRefused. */
  async check(token: string, identity: { namespace: string; service: string }, now = Date.now()): Promise<TokenGrant> {
    const key = tokenKey(token);
    const entry = await this.kv.get(key);
    if (entry?.operation !== 'PUT') throw new ProofRefused('token_unknown', 'proof.token', 'is not a known join token');
    const record = entry.json<CaTokenRecordV1>();
    if (now > Date.parse(record.expiresAt)) throw new ProofRefused('token_expired', 'proof.token', `expired at ${record.expiresAt}`);
    if (record.usesLeft <= 0)
      throw new ProofRefused('token_used', 'proof.token', `has already been used (${record.uses} of ${record.uses} uses)`);
    if (record.namespace !== identity.namespace || record.service !== identity.service)
      throw new ProofRefused(
        'identity_mismatch',
        'identity',
        `the token was issued for namespace "${record.namespace}" service "${record.service}", not namespace "${identity.namespace}" service "${identity.service}"`,
      );
    return { key, record, revision: entry.revision };
  }

  /**
   * Uses the token once: compare-and-set of `usesLeft - 1` on the revision read, re-checked and
   * retried when another replica consumed it in between. Throws ProofRefused when it ran out.
   */
  async consume(token: string, identity: { namespace: string; service: string }, grant?: TokenGrant): Promise<CaTokenRecordV1> {
    let current = grant ?? (await this.check(token, identity));
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const next = { ...current.record, usesLeft: current.record.usesLeft - 1 };
      try {
        await this.kv.update(current.key, JSON.stringify(next), current.revision);
        return next;
      } catch (e) {
        if (!isCasConflict(e))
          throw new MeshError(ErrorCode.unavailable, `token store unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
      }
      current = await this.check(token, identity);
    }
    throw new MeshError(ErrorCode.conflict, 'the join token is being used concurrently too often; try again', { retryable: true });
  }
}
