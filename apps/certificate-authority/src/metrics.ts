import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { certificateInfo, type LoadedCa } from '@novamesh/ca';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RefusalReason } from './refusal';

/** Every refusal reason, so each series exists (at 0) from the first scrape. */
export const REFUSAL_REASONS: readonly RefusalReason[] = [
  'token_unknown',
  'token_expired',
  'token_used',
  'identity_mismatch',
  'certificate_invalid',
  'certificate_revoked',
  'possession_not_proven',
  'csr_refused',
];

export type SignOutcome = 'issued' | 'refused' | 'error';

/**
 * The CA's Prometheus metrics, in their own registry (plus the default process metrics):
 * - `novamesh_ca_certificates_issued_total{kind="token|renewal"}`
 * - `novamesh_ca_refusals_total{reason}` (the labels of {@link RefusalReason})
 * - `novamesh_ca_seconds_until_expiry{ca="root|intermediate"}`, computed at scrape time (negative once expired)
 * - `novamesh_ca_sign_duration_seconds{outcome="issued|refused|error"}`: a `mesh.v1.ca.sign` request, from
 *   the validated request to the reply (proof checks, signing, token use, certificate record).
 */
export class CaMetrics {
  readonly registry = new Registry();
  private readonly issued: Counter<'kind'>;
  private readonly refusals: Counter<'reason'>;
  private readonly signSeconds: Histogram<'outcome'>;

  constructor(ca: Pick<LoadedCa, 'root' | 'intermediate'>, opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'novamesh_ca_' });
    this.issued = new Counter({
      name: 'novamesh_ca_certificates_issued_total',
      help: 'Workload certificates issued, by proof of identity (token: a join token; renewal: a current certificate).',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.refusals = new Counter({
      name: 'novamesh_ca_refusals_total',
      help: 'Signing requests refused, by reason.',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.signSeconds = new Histogram({
      name: 'novamesh_ca_sign_duration_seconds',
      help: 'Time to answer a mesh.v1.ca.sign request in the CA (validated request to reply), by outcome.',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    // Read at scrape time: a root rotation replaces the CA certificates in place.
    const notAfterOf = (pem: string, memo: { pem?: string; t?: number }) => {
      if (memo.pem !== pem) Object.assign(memo, { pem, t: certificateInfo(pem).notAfter });
      return memo.t as number;
    };
    const memos = { root: {}, intermediate: {} };
    new Gauge({
      name: 'novamesh_ca_seconds_until_expiry',
      help: 'Seconds until the CA certificate expires (negative once expired), computed at scrape time.',
      labelNames: ['ca'],
      registers: [this.registry],
      collect() {
        const now = Date.now();
        const notAfter = {
          root: notAfterOf(ca.root.certPem, memos.root),
          intermediate: notAfterOf(ca.intermediate.certPem, memos.intermediate),
        };
        for (const [label, t] of Object.entries(notAfter)) this.set({ ca: label }, Math.round((t - now) / 1000));
      },
    });
    for (const kind of ['token', 'renewal']) this.issued.inc({ kind }, 0);
    for (const reason of REFUSAL_REASONS) this.refusals.inc({ reason }, 0);
  }

  certificateIssued(kind: 'token' | 'renewal'): void {
    this.issued.inc({ kind });
  }

  refused(reason: string): void {
    this.refusals.inc({ reason });
  }

  /** Starts a sign timer; call the returned function with the outcome. */
  signTimer(): (outcome: SignOutcome) => void {
    const end = this.signSeconds.startTimer();
    return (outcome) => end({ outcome });
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * Serves `GET /metrics` (Prometheus text format) on host:port; anything else is 404. Resolves once
 * listening, with the port actually bound (useful with port 0).
 */
export async function startMetricsServer(metrics: CaMetrics, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are on GET /metrics\n');
      return;
    }
    metrics.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
