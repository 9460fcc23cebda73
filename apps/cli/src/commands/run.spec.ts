import { describe, expect, it } from 'vitest';
import { appEnv, readySummary } from './run';
import { exitCodeOf, LinePrefixer } from './supervise';

describe('meshctl run', () => {
  it('gives the app its port and the sidecar as HTTP proxy, and never the join token', () => {
    const env = appEnv({ PATH: '/bin', SIDECAR_JOIN_TOKEN: 'secret', SIDECAR_ADMIN_PORT: '1' }, 4000, 15001, 'orders');
    expect(env).toEqual({
      PATH: '/bin',
      PORT: '4000',
      HTTP_PROXY: 'http://127.0.0.1:15001',
      http_proxy: 'http://127.0.0.1:15001',
      NO_PROXY: 'localhost,127.0.0.1',
      no_proxy: 'localhost,127.0.0.1',
      MESH_OUTBOUND: 'http://127.0.0.1:15001',
      MESH_SERVICE: 'orders',
    });
  });

  it('summarizes the sidecar ready line, and says less when it cannot read it', () => {
    const line = '{"level":"info","msg":"sidecar ready","ports":{"inbound":41000,"outbound":15001,"admin":15000,"upstream:payment":9002}}';
    expect(readySummary('orders', 4000, line)).toBe(
      "orders is in the mesh: app 127.0.0.1:4000, outbound http://127.0.0.1:15001 (the app's HTTP_PROXY), inbound :41000, admin http://127.0.0.1:15000, payment on 127.0.0.1:9002",
    );
    expect(readySummary('orders', 4000, 'sidecar ready')).toBe('orders is in the mesh: app 127.0.0.1:4000');
  });

  it('prefixes whole lines, keeping a partial line until its end arrives', () => {
    const out: string[] = [];
    const seen: string[] = [];
    const p = new LinePrefixer('[app] ', { write: (s: string) => out.push(s) }, (l) => seen.push(l));
    p.write('one\ntw');
    expect(out).toEqual(['[app] one\n']);
    p.write('o\r\nthree');
    p.flush();
    p.flush();
    expect(out).toEqual(['[app] one\n', '[app] two\n', '[app] three\n']);
    expect(seen).toEqual(['one', 'two', 'three']);
  });

  it('reports a child ended by a signal as 128 + its number', () => {
    expect(exitCodeOf(3, null)).toBe(3);
    expect(exitCodeOf(null, 'SIGTERM')).toBe(143);
    expect(exitCodeOf(null, 'SIGINT')).toBe(130);
  });
});
