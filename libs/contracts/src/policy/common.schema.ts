import { z } from 'zod';
import { SERVICE_NAME_PATTERN } from '../names';
import { checkRegexSafety } from './regex-safety';

/** Size limits of policies; a sidecar evaluates all of this per request. */
export const POLICY_LIMITS = {
  description: 1024,
  routes: 64,
  subsets: 32,
  split: 16,
  matchEntries: 32,
  headerOps: 32,
  stringValue: 1024,
  rateLimits: 32,
  authorizationRules: 64,
  ruleEntries: 64,
} as const;

const DNS_LABEL_MESSAGE = "must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit";

/** A DNS label, like a service name: policy names, subset names, route names, namespaces. */
export const dnsLabel = z.string().regex(SERVICE_NAME_PATTERN, DNS_LABEL_MESSAGE);

/** The service a policy targets. */
export const targetService = z.string().regex(SERVICE_NAME_PATTERN, `must be a service name (${DNS_LABEL_MESSAGE.slice(8)})`);

/** A service name, or `'*'` for every service of the mesh. */
export const targetServiceOrMesh = z
  .string()
  .refine(
    (v) => v === '*' || SERVICE_NAME_PATTERN.test(v),
    `must be a service name (${DNS_LABEL_MESSAGE.slice(8)}) or "*" for the whole mesh`,
  );

export const description = z.string().max(POLICY_LIMITS.description);

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
export const httpMethod = z.enum(HTTP_METHODS);
export const httpMethods = z
  .array(httpMethod)
  .min(1)
  .max(HTTP_METHODS.length)
  .superRefine((ms, ctx) => {
    ms.forEach((m, i) => {
      if (ms.indexOf(m) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `duplicates ${m}` });
    });
  });

/** An RFC 9110 token: header and cookie names. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
const HEADER_NAME = TOKEN;
export const headerName = z.string().regex(HEADER_NAME, "must be an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)");
const QUERY_NAME = /^[^\s&=#]{1,256}$/;
export const queryParamName = z.string().regex(QUERY_NAME, 'must be a query parameter name (no spaces, "&", "=" or "#")');
export const headerValue = z
  .string()
  .max(POLICY_LIMITS.stringValue)
  .regex(/^[^\r\n\0]*$/, 'must not contain line breaks or NUL characters');

/** A regular expression a sidecar may evaluate per request; see `checkRegexSafety`. */
export const safeRegex = z.string().superRefine((v, ctx) => {
  const problem = checkRegexSafety(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const matchValue = z.string().max(POLICY_LIMITS.stringValue);

export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A refinement: exactly one of `keys` is set. */
export function exactlyOne<T extends Record<string, unknown>>(keys: (keyof T & string)[], what: string) {
  return (v: T, ctx: z.RefinementCtx) => {
    const set = keys.filter((k) => v[k] !== undefined);
    if (set.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: set.length
          ? `must have only one of ${keys.join(', ')} (has ${set.join(' and ')})`
          : `must have one of ${keys.join(', ')} (${what})`,
      });
  };
}

/** How a header or query parameter value is matched; regexes match the whole value. */
export const StringMatchSchema = z
  .strictObject({
    exact: matchValue.optional(),
    prefix: matchValue.min(1).optional(),
    regex: safeRegex.optional(),
    /** true: the header/parameter is present (any value); false: it is absent. */
    present: z.boolean().optional(),
  })
  .superRefine(exactlyOne(['exact', 'prefix', 'regex', 'present'], 'how to match the value'));
export type StringMatch = z.output<typeof StringMatchSchema>;

/** A request path (starts with "/"). */
export const pathValue = z.string().max(POLICY_LIMITS.stringValue).startsWith('/', 'must start with "/"');

/** How the request path is matched (without the query string). */
export const PathMatchSchema = z
  .strictObject({
    exact: pathValue.optional(),
    prefix: pathValue.optional(),
    regex: safeRegex.optional(),
  })
  .superRefine(exactlyOne(['exact', 'prefix', 'regex'], 'how to match the path'));
export type PathMatch = z.output<typeof PathMatchSchema>;

const matchRecord = <K extends z.ZodString>(key: K) =>
  z
    .record(key, StringMatchSchema)
    .refine((r) => Object.keys(r).length <= POLICY_LIMITS.matchEntries, `must have at most ${POLICY_LIMITS.matchEntries} entries`);

/** Conditions a request must all meet; an empty match matches every request. */
export const RequestMatchSchema = z.strictObject({
  path: PathMatchSchema.optional(),
  methods: httpMethods.optional(),
  headers: matchRecord(headerName).optional(),
  queryParams: matchRecord(queryParamName).optional(),
});
export type RequestMatch = z.output<typeof RequestMatchSchema>;

/** 0-100, fractions allowed. */
export const percentage = z.number().min(0).max(100);

/** An HTTP status code (100-599). */
export const httpStatus = z.number().int().min(100).max(599);

export const policyMeta = {
  name: dnsLabel,
  description: description.optional(),
};
