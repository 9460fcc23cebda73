#!/usr/bin/env node
// One tiny demo workload, started by `meshctl run` (which sets PORT and HTTP_PROXY):
//   node tools/demo/service.mjs <service> [<upstream> <path>]
// Answers JSON naming itself (DEMO_ENDPOINT, DEMO_VERSION); with an upstream, first calls
// http://<upstream>.mesh<path> through HTTP_PROXY — the sidecar — and nests its answer.
// DEMO_FAIL_RATE (0..1) makes that share of answers a 503, so retries, outlier detection and metrics have work.
import { createServer, request } from 'node:http';

const [service = 'demo', upstream, upstreamPath = '/'] = process.argv.slice(2);
const port = Number(process.env.PORT);
const endpoint = process.env.DEMO_ENDPOINT || service;
const version = process.env.DEMO_VERSION || 'v1';
const failRate = Number(process.env.DEMO_FAIL_RATE || 0);
const proxy = process.env.HTTP_PROXY ? new URL(process.env.HTTP_PROXY) : undefined;
if (!port || (upstream && !proxy)) {
  process.stderr.write(
    'usage: meshctl run --service <name> -- node tools/demo/service.mjs <name> [<upstream> <path>] (needs PORT and HTTP_PROXY)\n',
  );
  process.exit(2);
}

/** GET http://<upstream>.mesh<path> through the HTTP proxy (absolute-form request line), passing on the demo's headers. */
function callUpstream(headers) {
  return new Promise((resolve) => {
    const passOn = Object.fromEntries(Object.entries(headers).filter(([k]) => k === 'x-canary' || k === 'x-request-id'));
    const req = request(
      {
        host: proxy.hostname,
        port: proxy.port,
        path: `http://${upstream}.mesh${upstreamPath}`,
        headers: { ...passOn, host: `${upstream}.mesh` },
        timeout: 5_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => {
          let json;
          try {
            json = JSON.parse(body);
          } catch {
            json = { error: body.trim().slice(0, 200) };
          }
          resolve({ status: res.statusCode, body: json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 502, body: { error: e.message } }));
    req.end();
  });
}

const server = createServer(async (req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  req.resume();
  if (req.url === '/healthz') return send(200, { ok: true });
  if (failRate > 0 && Math.random() < failRate) return send(503, { service, endpoint, version, error: 'simulated failure' });
  const me = { service, endpoint, version, path: req.url, caller: req.headers['x-forwarded-client-cert'] ?? null };
  if (!upstream) return send(200, me);
  const up = await callUpstream(req.headers);
  send(up.status === 200 ? 200 : 502, { ...me, [upstream]: up.body, [`${upstream}Status`]: up.status });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`${endpoint} (${service} ${version}) listening on 127.0.0.1:${port}\n`));
const stop = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
