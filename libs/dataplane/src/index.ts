export { type Authorizer, type AuthzCode, type AuthzDecision, compileAuthorizer, spiffeNamespace } from './authorizer';
export type { Balancer, BalancerOptions, LbEndpoint } from './balancer';
export { CircuitBreaker, type CircuitBreakerStatus, type CircuitLimit, type PendingAdmission } from './circuit-breaker';
export { createBalancer } from './create-balancer';
export {
  type EjectionSource,
  EndpointPool,
  type EndpointPoolOptions,
  type PoolEndpoint,
  type SelectEndpointsOptions,
  selectEndpoints,
} from './endpoint-pool';
export { decideFault, type FaultDecision, type FaultSpec } from './fault';
export { murmur32 } from './hash';
export { applyHeaderOps, type CompiledHeaderOps, compileHeaderOps, type HeaderOperations } from './header-ops';
export { LeastRequestBalancer } from './least-request.balancer';
export { MaglevBalancer } from './maglev.balancer';
export {
  type Clock,
  DEFAULT_MAX_EJECTION_TIME_MS,
  OutlierDetector,
  type OutlierEndpointStatus,
  type OutlierOutcome,
  type OutlierSweepResult,
  outcomeOfStatus,
} from './outlier-detector';
export { RandomBalancer } from './random.balancer';
export {
  compileRateLimits,
  type GlobalRateLimitStore,
  type GlobalRateLimitVerdict,
  type GlobalRateLimitWindow,
  MAX_KEYS_PER_LIMIT,
  RateLimiter,
  type RateLimitRefusal,
} from './rate-limiter';
export {
  compileHashKey,
  cookieValue,
  type HashKeyReader,
  hashKeyValue,
  headerValue,
  parseQuery,
  queryParam,
  type RequestView,
} from './request-view';
export { DEFAULT_RETRY_BUDGET, RetryBudget } from './retry-budget';
export {
  type AttemptFailure,
  CompiledRetryPolicy,
  DEFAULT_RETRY_ON,
  isIdempotent,
  parseRetryAfter,
  RETRY_AFTER_CAP_MS,
} from './retry-policy';
export { RingHashBalancer } from './ring-hash.balancer';
export { RoundRobinBalancer } from './round-robin.balancer';
export { CompiledRequestMatch, compileUpstreamRoutes, type MatchedRoute, type RouteTable } from './route-table';
export { anchoredRegex, compileStringMatch, type StringMatcher } from './string-match';
export { TokenBucket } from './token-bucket';
export { WeightedBalancer } from './weighted.balancer';
