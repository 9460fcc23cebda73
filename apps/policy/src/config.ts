import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';

export { ConfigError };

/** Everything the policy service reads from its environment, parsed once and frozen. */
export type PolicyConfig = CommonConfig;

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<PolicyConfig> {
  const r = new EnvReader(env);
  return r.done(r.common('POLICY_INSTANCE'));
}
