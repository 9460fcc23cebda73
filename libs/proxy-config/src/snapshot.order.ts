/** What decides the order of snapshots: the version proxy-config gave it and its content hash. */
export interface SnapshotIdentity {
  version: number;
  hash: string;
}

/**
 * Whether a follower holding `current` takes `candidate` — the rule every follower of
 * `mesh.v1.config.proxy.<service>` applies (the sidecar's SnapshotStore, the benchmark's agents):
 * never an older version or the content it has; a `live` one (just published, seen by a
 * subscription) only when its version is newer, because a conditional publish that lost still
 * reaches subscribers under the winner's version; a stored one (read back from MESH_PROXY) of the
 * same version with other content overrules what a live one brought.
 */
export function takesSnapshot(candidate: SnapshotIdentity, current: SnapshotIdentity | undefined, live: boolean): boolean {
  if (!current) return true;
  if (candidate.version < current.version || candidate.hash === current.hash) return false;
  return !(live && candidate.version === current.version);
}
