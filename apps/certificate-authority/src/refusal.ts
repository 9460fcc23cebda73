import { ErrorCode, MeshError } from '@novamesh/contracts';

/** Why a signing request was refused: stable labels for logs (and, later, the refusals metric). */
export type RefusalReason =
  | 'token_unknown'
  | 'token_expired'
  | 'token_used'
  | 'identity_mismatch'
  | 'certificate_invalid'
  | 'certificate_revoked'
  | 'possession_not_proven'
  | 'csr_refused';

/** A refusal of the caller's proof of identity: MESH_FORBIDDEN with the reason kept for logging. */
export class ProofRefused extends MeshError {
  constructor(
    readonly reason: RefusalReason,
    path: string,
    message: string,
  ) {
    super(ErrorCode.forbidden, `certificate refused: ${path}: ${message}`, { issues: [{ path, message }] });
    this.name = 'ProofRefused';
  }
}

const WRONG_LAST_SEQUENCE = 10071;

/** True when a KV or stream write lost a compare-and-set race. */
export function isCasConflict(e: unknown): boolean {
  const err = e as { code?: unknown; message?: string };
  return err?.code === WRONG_LAST_SEQUENCE || /wrong last sequence|key exists/i.test(err?.message ?? '');
}
