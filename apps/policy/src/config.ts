import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';

export { ConfigError };

/** Everything the policy service reads from its environment, parsed once and frozen. */
export interface PolicyConfig extends CommonConfig {
  /** How often MESH_CONFIG is checked for having been deleted (then created again) or created again (POLICY_STREAM_RECHECK, default 10s). */
  streamRecheckMs: number;
}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<PolicyConfig> {
  const r = new EnvReader(env);
  const common = r.common('POLICY_INSTANCE');
  return r.done<PolicyConfig>({ ...common, streamRecheckMs: r.duration('POLICY_STREAM_RECHECK', '10s') });
}
