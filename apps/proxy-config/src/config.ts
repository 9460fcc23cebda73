import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';

export { ConfigError };

/** Everything proxy-config reads from its environment, parsed once and frozen. */
export interface ProxyConfigConfig extends CommonConfig {
  /** Quiet time after the last input change touching a snapshot before it is rebuilt (PROXY_CONFIG_DEBOUNCE_MS, default 10ms). */
  debounceMs: number;
  /** Longest a change waits for its rebuild, however often its snapshot is touched again (PROXY_CONFIG_MAX_DELAY_MS, default 100ms). */
  maxDelayMs: number;
  /** Snapshot publications sent and not yet seen stored, at once (PROXY_CONFIG_MAX_IN_FLIGHT, default 128). */
  maxInFlight: number;
  /** A sidecar silent this long is reported stale (PROXY_CONFIG_STALE_AFTER, default 30s as in the contract). */
  staleAfterMs: number;
  /** How often each followed stream is checked for having been deleted or created again (PROXY_CONFIG_STREAM_RECHECK, default 10s). */
  streamRecheckMs: number;
}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<ProxyConfigConfig> {
  const r = new EnvReader(env);
  const common = r.common('PROXY_CONFIG_INSTANCE');
  const debounceMs = r.duration('PROXY_CONFIG_DEBOUNCE_MS', '10ms');
  const maxDelayMs = r.duration('PROXY_CONFIG_MAX_DELAY_MS', '100ms');
  if (debounceMs > 0 && maxDelayMs > 0 && maxDelayMs < debounceMs)
    r.problem(`PROXY_CONFIG_MAX_DELAY_MS (${maxDelayMs}ms) must not be shorter than PROXY_CONFIG_DEBOUNCE_MS (${debounceMs}ms)`);
  return r.done<ProxyConfigConfig>({
    ...common,
    debounceMs,
    maxDelayMs,
    maxInFlight: r.int('PROXY_CONFIG_MAX_IN_FLIGHT', 128, 1, 1024),
    staleAfterMs: r.duration('PROXY_CONFIG_STALE_AFTER', '30s'),
    streamRecheckMs: r.duration('PROXY_CONFIG_STREAM_RECHECK', '10s'),
  });
}
