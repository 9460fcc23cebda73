import { z } from 'zod';
import type { Issue } from '../errors';
import { serviceName } from '../service.schema';
import { targetServiceOrMesh } from './common.schema';
import { type EffectivePolicyV1, POLICY_KINDS, type Policy, type PolicyKind } from './policy.schema';

// Request bodies of the policy commands, `mesh.v1.policy.<command>` (subjects.policy).

const kind = z.enum(POLICY_KINDS);

/** `apply`: validate and store a policy (create or replace). `policy` is validated by the service. */
export const PolicyApplyRequestV1 = z.strictObject({
  policy: z.unknown(),
  /** Validate and report what would change, without storing. */
  dryRun: z.boolean().default(false),
  /** Compare-and-set: the revision the caller last saw; 0 = the policy must not exist yet. */
  expectedRevision: z.number().int().min(0).optional(),
});

/** `delete`: remove a policy. */
export const PolicyDeleteRequestV1 = z.strictObject({
  kind,
  name: serviceName,
  /** Compare-and-set: the revision the caller last saw. */
  expectedRevision: z.number().int().min(1).optional(),
});

/** `get`: one stored policy. */
export const PolicyGetRequestV1 = z.strictObject({ kind, name: serviceName });

/** `list`: stored policies, optionally of one kind and/or targeting one service (or "*"). */
export const PolicyListRequestV1 = z.strictObject({ kind: kind.optional(), serviceName: targetServiceOrMesh.optional() });

/** `history`: the stored revisions of one policy (the bucket keeps the last 20). */
export const PolicyHistoryRequestV1 = z.strictObject({ kind, name: serviceName });

/** `rollback`: apply an earlier revision again, as a new revision. */
export const PolicyRollbackRequestV1 = z.strictObject({ kind, name: serviceName, toRevision: z.number().int().min(1) });

/** `analyze`: findings across every stored policy and registered service. */
export const PolicyAnalyzeRequestV1 = z.strictObject({});

export type PolicyApplyRequestV1 = z.output<typeof PolicyApplyRequestV1>;
export type PolicyApplyRequestInputV1 = z.input<typeof PolicyApplyRequestV1>;
export type PolicyDeleteRequestV1 = z.output<typeof PolicyDeleteRequestV1>;
export type PolicyGetRequestV1 = z.output<typeof PolicyGetRequestV1>;
export type PolicyListRequestV1 = z.output<typeof PolicyListRequestV1>;
export type PolicyHistoryRequestV1 = z.output<typeof PolicyHistoryRequestV1>;
export type PolicyRollbackRequestV1 = z.output<typeof PolicyRollbackRequestV1>;
export type PolicyAnalyzeRequestV1 = z.output<typeof PolicyAnalyzeRequestV1>;

/** A policy as the KV bucket holds it, with the KV revision and time of its last write. */
export interface StoredPolicy {
  policy: Policy;
  revision: number;
  updatedAt: string;
}

export interface PolicyApplyResultV1 {
  ok: true;
  kind: PolicyKind;
  name: string;
  /** The new KV revision; 0 for a dry run. */
  revision: number;
  created: boolean;
  /** The stored policy already equaled the applied one; nothing was written. */
  unchanged: boolean;
  warnings: Issue[];
  /** `diffPolicies(stored, applied)`; empty when unchanged. */
  diff: string;
  dryRun: boolean;
  /** Dry run: the effective policy the change would produce. */
  effective?: EffectivePolicyV1;
}
