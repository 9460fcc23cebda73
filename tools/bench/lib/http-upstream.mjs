// The upstream of the data-plane benchmark, run as its own process: a minimal node:http server on
// loopback answering every request with the same small JSON body, keep-alive on (`/whoami` echoes
// the x-forwarded-client-cert header instead). Prints one JSON
// line `{"msg":"upstream ready","port":…}` once it listens; exits on SIGTERM.
import { createServer } from 'node:http';

const body = Buffer.from('{"ok":true,"from":"upstream"}\n');
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) };
const server = createServer((req, res) => {
  req.resume();
  // The benchmark's check that a path really went through mTLS: the inbound sidecar adds
  // x-forwarded-client-cert only for a caller that presented a mesh certificate.
  if (req.url === '/whoami') return res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
  res.writeHead(200, headers);
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'upstream ready', port: server.address().port, bytes: body.length })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
