import { z } from 'zod';
import { description, dnsLabel, targetServiceOrMesh } from './common.schema';

/** `strict`: only mTLS; `permissive`: mTLS and plaintext; `disable`: plaintext only. */
export const MTLS_MODES = ['strict', 'permissive', 'disable'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

/** mTLS mode of one service, or of the whole mesh with `serviceName: '*'`; a service's own policy wins. */
export const MutualTLSPolicySchema = z.strictObject({
  kind: z.literal('MutualTLSPolicy'),
  name: dnsLabel,
  serviceName: targetServiceOrMesh,
  description: description.optional(),
  mode: z.enum(MTLS_MODES),
});
export type MutualTLSPolicy = z.output<typeof MutualTLSPolicySchema>;
export type MutualTLSPolicyInput = z.input<typeof MutualTLSPolicySchema>;
