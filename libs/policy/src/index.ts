export { analyze, type Finding } from './analyze';
export { type CrossCheckContext, crossCheck, rivalsOf } from './cross-check';
export { diffPolicies } from './diff';
export { parsePolicyDocuments } from './documents';
export { computeEffective } from './effective';
export { INVALID_POLICIES, type InvalidPolicyCase } from './invalid-policies';
export { parsePolicyKey, policyKey, policyTargets } from './policy-key';
export { type ValidationResult, validatePolicy } from './validate';
