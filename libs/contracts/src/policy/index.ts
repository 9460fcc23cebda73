export * from './authorization-policy.schema';
export * from './commands';
export {
  dnsLabel,
  exactlyOne,
  HTTP_METHODS,
  type HttpMethod,
  type PathMatch,
  PathMatchSchema,
  POLICY_LIMITS,
  type RequestMatch,
  RequestMatchSchema,
  type StringMatch,
  StringMatchSchema,
} from './common.schema';
export * from './mutual-tls-policy.schema';
export * from './policy.schema';
export * from './rate-limit-policy.schema';
export { checkRegexSafety, REGEX_MAX_LENGTH } from './regex-safety';
export * from './route-rule.schema';
export { normalizeSeedKey } from './seed';
export * from './traffic-policy.schema';
