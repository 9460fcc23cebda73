import { type Issue, MeshValidationError } from '@novamesh/contracts';

/** A MeshValidationError (code MESH_INVALID) with an optional cause kept out of JSON. */
export function invalid(message: string, issues: Issue[], cause?: unknown): MeshValidationError {
  const err = new MeshValidationError(message, issues);
  if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return err;
}
