import type { Issue, ProxySnapshotV1, UpstreamV1 } from '@novamesh/contracts';
import { hashSnapshot, type SnapshotContent } from './snapshot.hash';

const validPort = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65_535;

/**
 * Consistency of a snapshot before it is published (a sidecar must never receive one it cannot
 * apply): upstreams unique and sorted, ports valid, every subset a route splits or mirrors to
 * defined in that upstream, split weights summing to 100, identities naming their service, a
 * trust section with at least one root, and `hash` matching the content. Returns every issue
 * found (path + message); empty means publishable.
 */
export function checkSnapshot(snapshot: SnapshotContent & Partial<Pick<ProxySnapshotV1, 'hash' | 'version'>>): Issue[] {
  const issues: Issue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });

  if (snapshot.version !== undefined && !(Number.isInteger(snapshot.version) && snapshot.version >= 1))
    add('version', `must be a whole number of at least 1 (is ${snapshot.version})`);
  if (snapshot.hash !== undefined && snapshot.hash !== hashSnapshot(snapshot))
    add('hash', 'does not match the content (SHA-256 of the canonical JSON of service, inbound, upstreams, trust)');

  let previous: string | undefined;
  snapshot.upstreams.forEach((u, i) => {
    const at = `upstreams[${i}]`;
    if (previous !== undefined && u.service <= previous)
      add(
        `${at}.service`,
        u.service === previous ? `duplicates upstream "${u.service}"` : `"${u.service}" is out of order (sorted by name)`,
      );
    previous = u.service;
    checkUpstream(u, at, add);
  });

  snapshot.inbound.rateLimits.forEach((p, i) => {
    if (p.serviceName !== snapshot.service)
      add(`inbound.rateLimits[${i}].serviceName`, `targets "${p.serviceName}", not this service "${snapshot.service}"`);
  });
  if (snapshot.trust && snapshot.trust.roots.length === 0)
    add('trust.roots', 'is empty: every mutual TLS handshake would fail; keep the previous trust bundle');
  return issues;
}

function checkUpstream(u: UpstreamV1, at: string, add: (path: string, message: string) => void): void {
  if (!validPort(u.port)) add(`${at}.port`, `${u.port} is not a port (1-65535) of upstream "${u.service}"`);
  if (!u.identity.startsWith('spiffe://') || !u.identity.endsWith(`/svc/${u.service}`))
    add(`${at}.identity`, `"${u.identity}" is not a SPIFFE ID of service "${u.service}"`);
  u.endpoints.forEach((e, j) => {
    if (!validPort(e.port)) add(`${at}.endpoints[${j}].port`, `${e.port} is not a port (1-65535) (endpoint "${e.id}")`);
    if (!(Number.isInteger(e.weight) && e.weight >= 0)) add(`${at}.endpoints[${j}].weight`, `${e.weight} is not a whole number ≥ 0`);
  });
  const subsets = new Set<string>();
  u.subsets.forEach((s, j) => {
    if (subsets.has(s.name)) add(`${at}.subsets[${j}].name`, `duplicates subset "${s.name}" of upstream "${u.service}"`);
    subsets.add(s.name);
  });
  const defined = (name: string) =>
    subsets.has(name)
      ? undefined
      : `subset "${name}" is not defined for upstream "${u.service}"${subsets.size ? ` (subsets: ${[...subsets].join(', ')})` : ' (it has no subsets)'}`;
  u.routes.forEach((r, j) => {
    const rat = `${at}.routes[${j}]`;
    if (r.split) {
      let sum = 0;
      r.split.forEach((s, k) => {
        const problem = defined(s.subset);
        if (problem) add(`${rat}.split[${k}].subset`, problem);
        if (!(Number.isInteger(s.weight) && s.weight >= 0 && s.weight <= 100))
          add(`${rat}.split[${k}].weight`, `${s.weight} is not a whole percent (0-100)`);
        sum += s.weight;
      });
      if (sum !== 100) add(`${rat}.split`, `weights sum to ${sum}, not 100 (rule "${r.rule}")`);
    }
    if (r.mirror) {
      const problem = defined(r.mirror.subset);
      if (problem) add(`${rat}.mirror.subset`, problem);
    }
  });
}
