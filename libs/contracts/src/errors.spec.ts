import { describe, expect, it } from 'vitest';
import { ErrorCode, errorFromBody, MeshError, MeshValidationError } from './errors';

describe('error bodies over NATS', () => {
  it('carry whether asking again may help, and a rebuilt error keeps it', () => {
    const busy = new MeshError(ErrorCode.conflict, 'the join token is being used concurrently too often; try again', { retryable: true });
    expect(busy.toJSON()).toEqual({ code: ErrorCode.conflict, message: busy.message, issues: [], retryable: true });
    expect(errorFromBody(busy.toJSON())).toMatchObject({ code: ErrorCode.conflict, retryable: true });

    const refused = new MeshError(ErrorCode.forbidden, 'join token refused');
    expect(refused.toJSON()).toEqual({ code: ErrorCode.forbidden, message: 'join token refused', issues: [] });
    expect(errorFromBody(refused.toJSON())).toMatchObject({ code: ErrorCode.forbidden, retryable: false });
  });

  it('takes MESH_UNAVAILABLE and MESH_TIMEOUT as retryable from a service that does not say (an older one), nothing else', () => {
    for (const code of [ErrorCode.unavailable, ErrorCode.timeout])
      expect(errorFromBody({ code, message: 'store unavailable', issues: [] }).retryable).toBe(true);
    for (const code of [ErrorCode.conflict, ErrorCode.forbidden, ErrorCode.notFound, ErrorCode.internal])
      expect(errorFromBody({ code, message: 'no', issues: [] }).retryable).toBe(false);
  });

  it('rebuilds a refusal of input as a validation error with its issues, never retryable', () => {
    const issues = [{ path: 'csr', message: 'must be a PEM certificate request' }];
    const err = errorFromBody(new MeshValidationError('invalid request', issues).toJSON());
    expect(err).toBeInstanceOf(MeshValidationError);
    expect(err).toMatchObject({ code: ErrorCode.invalid, issues, retryable: false });
  });
});
