import { request } from 'node:http';
import { connect } from 'node:net';

export interface ProbeResult {
  ok: boolean;
  /** `HTTP 200`, `HTTP 503`, `connect ECONNREFUSED`, `timeout after 2000ms` … */
  detail: string;
}

/** GETs `path`; healthy on 2xx/3xx within `timeoutMs`. Never throws. */
export function probeHttp(address: string, port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `timeout after ${timeoutMs}ms` }), timeoutMs);
    const req = request(
      { host: address, port, path, method: 'GET', agent: false, headers: { 'user-agent': 'novamesh-health-check' } },
      (res) => {
        const code = res.statusCode ?? 0;
        res.resume();
        finish({ ok: code >= 200 && code < 400, detail: `HTTP ${code}` });
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, detail: `connect ${e.code ?? e.message}` }));
    req.end();
  });
}

/** Opens a TCP connection; healthy when it connects within `timeoutMs`. Never throws. */
export function probeTcp(address: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: address, port });
    const finish = (r: ProbeResult) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `timeout after ${timeoutMs}ms` }), timeoutMs);
    sock.once('connect', () => finish({ ok: true, detail: 'connected' }));
    sock.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, detail: `connect ${e.code ?? e.message}` }));
  });
}
