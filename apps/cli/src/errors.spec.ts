import { ErrorCode, MeshError, MeshValidationError } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { describeError, ExitCode, exitCodeFor, toMeshError } from './errors';

describe('errors', () => {
  it('maps error codes to exit codes', () => {
    expect(exitCodeFor(new MeshValidationError('invalid service', []))).toBe(ExitCode.invalid);
    expect(exitCodeFor(new MeshError(ErrorCode.conflict, 'busy'))).toBe(ExitCode.invalid);
    expect(exitCodeFor(new MeshError(ErrorCode.unavailable, 'down'))).toBe(ExitCode.unavailable);
    expect(exitCodeFor(new MeshError(ErrorCode.timeout, 'slow'))).toBe(ExitCode.unavailable);
    expect(exitCodeFor(new MeshError(ErrorCode.notFound, 'gone'))).toBe(ExitCode.notFound);
    expect(exitCodeFor(new MeshError(ErrorCode.aborted, 'stop'))).toBe(ExitCode.interrupted);
  });

  it('treats NATS client failures as unavailable and anything else as internal', () => {
    const timeout = Object.assign(new Error('timeout'), { name: 'TimeoutError' });
    expect(toMeshError(timeout).code).toBe(ErrorCode.timeout);
    const refused = Object.assign(new Error('connection refused'), { name: 'ConnectionError' });
    expect(exitCodeFor(refused)).toBe(ExitCode.unavailable);
    expect(toMeshError(new TypeError('oops')).code).toBe(ErrorCode.internal);
  });

  it('prints the headline once, then every issue with its path, and no stack', () => {
    const err = new MeshValidationError('service.yaml is not a valid service', [
      { path: 'name', message: 'must be a DNS label' },
      { path: 'endpoints[1].port', message: 'must be between 1 and 65535' },
    ]);
    expect(describeError(err)).toBe(
      'error: service.yaml is not a valid service\n  name: must be a DNS label\n  endpoints[1].port: must be between 1 and 65535\n',
    );
  });

  it('adds a hint when the mesh is unreachable', () => {
    expect(describeError(new MeshError(ErrorCode.unavailable, 'cannot reach NATS at nats://127.0.0.1:1'))).toMatch(
      /^error: cannot reach NATS at nats:\/\/127\.0\.0\.1:1\nhint: check --nats/,
    );
  });
});
