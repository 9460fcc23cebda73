import { z } from 'zod';
import { description, dnsLabel, targetServiceOrMesh } from './common.schema';

const absolutePath = z
  .string({ error: 'must be a file path' })
  .max(4096, 'must be at most 4096 characters')
  .refine((v) => v.startsWith('/') && !v.includes('\0'), 'must be an absolute file path');

/** `strict`: only mTLS; `permissive`: mTLS and plaintext; `disable`: plaintext only. */
export const MTLS_MODES = ['strict', 'permissive', 'disable'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

/** mTLS mode of one service, or of the whole mesh with `serviceName: '*'`; a service's own policy wins. */
export const MutualTLSPolicySchema = z
  .strictObject({
    kind: z.literal('MutualTLSPolicy'),
    name: dnsLabel,
    serviceName: targetServiceOrMesh,
    description: description.optional(),
    mode: z.enum(MTLS_MODES),
    /**
     * Bring-your-own certificates (the seed's `enableMutualTLS(service, certPath, keyPath, caPath)`):
     * the service's sidecars use these PEM files instead of mesh-issued certificates. Only for one
     * service, not mesh-wide. The certificate-authority work checks the files themselves.
     */
    certificates: z
      .strictObject({
        certPath: absolutePath,
        keyPath: absolutePath,
        caPath: absolutePath,
      })
      .optional(),
  })
  .superRefine((p, ctx) => {
    if (p.certificates && p.serviceName === '*')
      ctx.addIssue({
        code: 'custom',
        path: ['certificates'],
        message: 'bring-your-own certificates name one service, not the whole mesh (*)',
      });
    if (p.certificates && p.mode === 'disable')
      ctx.addIssue({ code: 'custom', path: ['certificates'], message: 'certificates make no sense with mode "disable"' });
  });
export type MutualTLSPolicy = z.output<typeof MutualTLSPolicySchema>;
export type MutualTLSPolicyInput = z.input<typeof MutualTLSPolicySchema>;
