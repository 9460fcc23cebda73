import { type Issue, MeshValidationError } from '@novamesh/contracts';

/** Who a workload is: the parts of its SPIFFE ID `spiffe://<trustDomain>/ns/<namespace>/svc/<service>`. */
export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  service: string;
}

// SPIFFE ID spec §2: trust domain is [a-z0-9._-] (lower case only), path segments [A-Za-z0-9._-],
// never "." or "..", and the whole URI at most 2048 bytes. Nothing else (port, userinfo, query,
// fragment, percent-encoding) is allowed.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_URI = 2048;

/** Why `td` is not a SPIFFE trust domain name, or undefined when it is one. */
export function trustDomainProblem(td: string): string | undefined {
  if (typeof td !== 'string' || td === '') return 'is empty';
  if (!TRUST_DOMAIN.test(td)) return `"${td}" may only hold lower-case letters, digits, ".", "-" and "_" (at most 255)`;
  return undefined;
}

function segmentProblem(seg: string): string | undefined {
  if (typeof seg !== 'string' || seg === '') return 'is empty';
  if (seg === '.' || seg === '..') return `"${seg}" is not allowed as a path segment`;
  if (!SEGMENT.test(seg)) return `"${seg}" may only hold letters, digits, ".", "-" and "_"`;
  return undefined;
}

/** Throws a MeshValidationError (code MESH_INVALID) naming every bad part when the trust domain is not valid. */
export function assertTrustDomain(td: string, path = 'trustDomain'): void {
  const problem = trustDomainProblem(td);
  if (problem) throw new MeshValidationError('invalid trust domain', [{ path, message: problem }]);
}

/**
 * Builds the SPIFFE ID of a Novamesh workload. Guarantees the result parses back with
 * {@link parseSpiffeId} to the same parts; throws MeshValidationError listing every bad part.
 */
export function spiffeId(identity: WorkloadIdentity): string {
  const issues: Issue[] = [];
  const td = trustDomainProblem(identity.trustDomain);
  if (td) issues.push({ path: 'trustDomain', message: td });
  for (const key of ['namespace', 'service'] as const) {
    const problem = segmentProblem(identity[key]);
    if (problem) issues.push({ path: key, message: problem });
  }
  const uri = `spiffe://${identity.trustDomain}/ns/${identity.namespace}/svc/${identity.service}`;
  if (issues.length === 0 && Buffer.byteLength(uri) > MAX_URI) issues.push({ path: '(root)', message: `longer than ${MAX_URI} bytes` });
  if (issues.length) throw new MeshValidationError('invalid SPIFFE ID', issues);
  return uri;
}

/** Why `uri` is not a Novamesh workload SPIFFE ID, or undefined when it is one. */
export function spiffeIdProblem(uri: string): string | undefined {
  if (typeof uri !== 'string') return 'is not a string';
  if (Buffer.byteLength(uri) > MAX_URI) return `is longer than ${MAX_URI} bytes`;
  if (!uri.startsWith('spiffe://')) return `"${uri}" does not start with spiffe://`;
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(td);
  if (tdProblem) return `trust domain ${tdProblem}`;
  const segments = slash < 0 ? [] : rest.slice(slash + 1).split('/');
  for (const seg of segments) {
    const problem = segmentProblem(seg);
    if (problem) return `path segment ${problem}`;
  }
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'svc') {
    return `"${uri}" is not of the form spiffe://<trust-domain>/ns/<namespace>/svc/<service>`;
  }
  return undefined;
}

/**
 * Parses a Novamesh workload SPIFFE ID (`spiffe://<td>/ns/<ns>/svc/<svc>`), checking every SPIFFE
 * rule; throws MeshValidationError at `path` otherwise. Pure; never normalises (case matters in paths).
 */
export function parseSpiffeId(uri: string, path = 'spiffeId'): WorkloadIdentity & { uri: string } {
  const problem = spiffeIdProblem(uri);
  if (problem) throw new MeshValidationError('invalid SPIFFE ID', [{ path, message: problem }]);
  const [td, , namespace, , service] = uri.slice('spiffe://'.length).split('/') as [string, string, string, string, string];
  return { uri, trustDomain: td, namespace, service };
}
