import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration';
import { SERVICE_NAME_PATTERN } from './names';

const HOSTNAME = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const LABEL_KEY = /^[a-zA-Z0-9]([a-zA-Z0-9_./-]{0,61}[a-zA-Z0-9])?$/;

export const LIMITS = {
  labels: 64,
  labelValue: 63,
  settings: 64,
  settingValue: 1024,
  endpoints: 1000,
  weight: 10_000,
} as const;

export const serviceName = z
  .string({ error: 'must be a string' })
  .regex(SERVICE_NAME_PATTERN, "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit");

export const endpointId = z
  .string({ error: 'must be a string' })
  .regex(/^[A-Za-z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'");

/**
 * Why an endpoint address cannot be called, or undefined: an address no caller can reach as a
 * destination — unspecified (0.0.0.0, ::, a listen-on-everything address), broadcast or multicast.
 */
export function unusableAddress(v: string): string | undefined {
  const family = isIP(v);
  if (family === 4) {
    if (v === '0.0.0.0') return 'is the unspecified address (listen on it, but register the address callers use)';
    if (v === '255.255.255.255') return 'is the broadcast address';
    const first = Number(v.split('.')[0]);
    if (first >= 224 && first <= 239) return 'is a multicast address';
  } else if (family === 6) {
    const lower = v.toLowerCase();
    if (/^[0:]+$/.test(lower)) return 'is the unspecified address (listen on it, but register the address callers use)';
    if (lower.startsWith('ff')) return 'is a multicast address';
  }
  return undefined;
}

export const address = z
  .string({ error: 'must be a string' })
  .refine((v) => isIP(v) !== 0 || (HOSTNAME.test(v) && !/^[\d.]+$/.test(v)), 'must be an IPv4/IPv6 address or a DNS name')
  .superRefine((v, ctx) => {
    const problem = unusableAddress(v);
    if (problem) ctx.addIssue({ code: 'custom', message: `"${v}" ${problem}` });
  });

export const port = z
  .number({ error: 'must be a number' })
  .int('must be a whole number')
  .min(1, 'must be between 1 and 65535')
  .max(65535, 'must be between 1 and 65535');

/** `"250ms"`, `"5s"`, `"1m"` or milliseconds; parsed to milliseconds. */
export const duration = (min = 1, max = 86_400_000) =>
  z
    .union([z.string(), z.number()], { error: 'must be a duration such as "500ms", "5s" or a number of milliseconds' })
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use "500ms", "5s", "1m" or milliseconds)` });
        return z.NEVER;
      }
      if (ms < min || ms > max) {
        ctx.addIssue({ code: 'custom', message: `must be between ${min}ms and ${max}ms` });
        return z.NEVER;
      }
      return ms;
    });

export const labels = z
  .record(
    z.string().regex(LABEL_KEY, 'label keys are 1-63 letters, digits, "-", "_", "." or "/", starting and ending with a letter or digit'),
    z
      .string({ error: 'label values must be strings' })
      .max(LIMITS.labelValue, `label values are at most ${LIMITS.labelValue} characters`)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
      .regex(/^[^\u0000-\u001f\u007f]*$/, 'label values must not contain control characters (newlines, escape sequences)'),
  )
  .refine((l) => Object.keys(l).length <= LIMITS.labels, `at most ${LIMITS.labels} labels`);

export const ServiceEndpointSchema = z.strictObject({
  id: endpointId,
  address,
  port,
  weight: z
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(0, 'must not be negative')
    .max(LIMITS.weight, `must be at most ${LIMITS.weight}`)
    .default(1),
  healthy: z.boolean({ error: 'must be true or false' }).default(true),
  labels: labels.default({}),
});

export const HealthCheckSchema = z
  .strictObject({
    protocol: z.enum(['http', 'tcp'], { error: 'must be "http" or "tcp"' }),
    path: z.string().startsWith('/', 'must start with "/"').max(1024).optional(),
    interval: duration(100, 3_600_000).default(10_000),
    timeout: duration(10, 60_000).default(2_000),
    healthyThreshold: z.number().int().min(1).max(10).default(2),
    unhealthyThreshold: z.number().int().min(1).max(10).default(3),
  })
  .superRefine((hc, ctx) => {
    if (hc.timeout >= hc.interval) ctx.addIssue({ code: 'custom', path: ['timeout'], message: 'must be shorter than interval' });
    if (hc.protocol === 'tcp' && hc.path !== undefined)
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'only http checks have a path' });
  });

export const HeartbeatSettingsSchema = z
  .strictObject({
    /** An endpoint with no heartbeat for this long is marked unhealthy. */
    ttl: duration(100, 3_600_000),
    /** ...and removed after this long (default 10 × ttl). */
    deregisterAfter: duration(100, 86_400_000).optional(),
  })
  .superRefine((hb, ctx) => {
    if (hb.deregisterAfter !== undefined && hb.deregisterAfter <= hb.ttl)
      ctx.addIssue({ code: 'custom', path: ['deregisterAfter'], message: 'must be longer than ttl' });
  });

/** The seed's `Service` model, plus optional health-check and heartbeat settings. */
export const ServiceSchema = z
  .strictObject({
    name: serviceName,
    type: z.enum(['http', 'grpc', 'tcp'], { error: 'must be one of http, grpc, tcp' }),
    virtualIP: z
      .string()
      .refine((v) => isIP(v) !== 0, 'must be an IPv4 or IPv6 address')
      .optional(),
    port,
    endpoints: z.array(ServiceEndpointSchema).max(LIMITS.endpoints, `at most ${LIMITS.endpoints} endpoints`).default([]),
    settings: z
      .record(
        z.string().max(128, 'setting keys are at most 128 characters'),
        z.string({ error: 'setting values must be strings' }).max(LIMITS.settingValue),
      )
      .refine((s) => Object.keys(s).length <= LIMITS.settings, `at most ${LIMITS.settings} settings`)
      .default({}),
    healthCheck: HealthCheckSchema.optional(),
    heartbeat: HeartbeatSettingsSchema.optional(),
    /**
     * The services this one calls. Its sidecars then get only those in their snapshot (and are
     * re-configured only when those change); when omitted, every service of the mesh.
     */
    upstreams: z.array(serviceName).max(LIMITS.endpoints, `at most ${LIMITS.endpoints} upstreams`).optional(),
  })
  .superRefine((svc, ctx) => {
    const seen = new Map<string, number>();
    svc.endpoints.forEach((ep, i) => {
      const prev = seen.get(ep.id);
      if (prev !== undefined)
        ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'id'], message: `duplicates endpoints[${prev}].id "${ep.id}"` });
      seen.set(ep.id, i);
    });
    if (svc.healthCheck?.protocol === 'http' && svc.type === 'tcp')
      ctx.addIssue({ code: 'custom', path: ['healthCheck', 'protocol'], message: 'a tcp service cannot have an http check' });
  });

export type ServiceEndpoint = z.output<typeof ServiceEndpointSchema>;
export type ServiceEndpointInput = z.input<typeof ServiceEndpointSchema>;
export type HealthCheck = z.output<typeof HealthCheckSchema>;
export type HeartbeatSettings = z.output<typeof HeartbeatSettingsSchema>;
export type Service = z.output<typeof ServiceSchema>;
export type ServiceInput = z.input<typeof ServiceSchema>;
