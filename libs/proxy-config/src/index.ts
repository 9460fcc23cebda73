export { canonicalJson } from './canonical-json';
export { DependencyIndex } from './dependency.index';
export {
  canaryRuleFixture,
  effectivePolicyFixture,
  endpointSetFixture,
  rateLimitFixture,
  trafficPolicyFixture,
} from './fixtures';
export { type FlushBatch, FlushScheduler, type FlushSchedulerOptions, type SchedulerClock, systemClock } from './flush.scheduler';
export { MeshView } from './mesh.view';
export { PublishQueue, type PublishQueueOptions } from './publish.queue';
export { DEFAULT_STALE_AFTER_MS, SidecarStatusBook, type SidecarStatusBookOptions } from './sidecar-status.book';
export { checkSnapshot } from './snapshot.check';
export {
  type CompileDiagnostics,
  type CompiledSnapshot,
  type CompileInput,
  CompileMemo,
  compileSnapshot,
  DEFAULT_INBOUND,
  DEFAULT_TRUST_DOMAIN,
} from './snapshot.compiler';
export {
  hashMatchesAsSent,
  hashSnapshot,
  joinSnapshotJson,
  keptAsIs,
  type SnapshotContent,
  sha256Hex,
  snapshotMessageJson,
} from './snapshot.hash';
export { type SnapshotIdentity, takesSnapshot } from './snapshot.order';
