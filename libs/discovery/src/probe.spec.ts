import { once } from 'node:events';
import { createServer as createHttp } from 'node:http';
import { createServer as createTcp } from 'node:net';
import { describe, expect, it } from 'vitest';
import { probeHttp, probeTcp } from './probe';

describe('probes against real sockets', () => {
  it('HTTP: 2xx is healthy, 5xx is not, a hang times out, a closed port is refused', async () => {
    const srv = createHttp((req, res) => {
      if (req.url === '/ok') res.end('ok');
      else if (req.url === '/fail') {
        res.statusCode = 503;
        res.end();
      } // '/hang' never answers
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as { port: number };
    try {
      expect(await probeHttp('127.0.0.1', port, '/ok', 1000)).toEqual({ ok: true, detail: 'HTTP 200' });
      expect(await probeHttp('127.0.0.1', port, '/fail', 1000)).toEqual({ ok: false, detail: 'HTTP 503' });
      const t0 = Date.now();
      expect(await probeHttp('127.0.0.1', port, '/hang', 200)).toEqual({ ok: false, detail: 'timeout after 200ms' });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      srv.closeAllConnections();
      srv.close();
    }
    expect(await probeHttp('127.0.0.1', port, '/ok', 500)).toEqual({ ok: false, detail: 'connect ECONNREFUSED' });
  });

  it('TCP: connect is healthy, refused is not', async () => {
    const srv = createTcp((s) => s.end());
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as { port: number };
    expect(await probeTcp('127.0.0.1', port, 500)).toEqual({ ok: true, detail: 'connected' });
    srv.close();
    await once(srv, 'close');
    expect((await probeTcp('127.0.0.1', port, 500)).ok).toBe(false);
  });
});
