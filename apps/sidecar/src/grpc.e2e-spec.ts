import { once } from 'node:events';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// gRPC through the mesh: a grpc-js client calls the web sidecar's outbound port (HTTP/2 without
// TLS, authority inventory.mesh); sidecars talk HTTP/2 over mutual TLS (ALPN h2); the inventory
// sidecars call their grpc-js servers over h2c. Status codes, messages and metadata survive.
let m: TestMesh;
let web: SidecarProcess;
const servers: grpc.Server[] = [];
type Unary = (req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => void;
let client: grpc.Client & Record<string, Unary>;

const raw = (path: string) => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
});
const definition = {
  echo: raw('/inventory.Inventory/Echo'),
  fail: raw('/inventory.Inventory/Fail'),
  hang: raw('/inventory.Inventory/Hang'),
};
/** Calls of Hang the servers received: each is answered only after 10 s. */
let hanging = 0;

/** A method of a generic client made from `definition`, bound to that client. */
function rpc(c: typeof client, method: keyof typeof definition): Unary {
  const fn = c[method];
  if (!fn) throw new Error(`the client has no ${method} method`);
  return fn.bind(c);
}

async function inventoryServer(name: string): Promise<{ name: string; port: number }> {
  const server = new grpc.Server();
  server.addService(definition, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(
        null,
        Buffer.from(JSON.stringify({ app: name, got: call.request.toString(), xfcc: call.metadata.get('x-forwarded-client-cert')[0] })),
      ),
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb({ code: grpc.status.NOT_FOUND, details: 'no such item: 42' }),
    hang: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      hanging++;
      setTimeout(() => cb(null, Buffer.from('{}')), 10_000).unref();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  servers.push(server);
  return { name, port };
}

function unary(
  method: 'echo' | 'fail' | 'hang',
  body: string,
): Promise<{ err: grpc.ServiceError | null; res?: { app: string; got: string; xfcc?: string } }> {
  return new Promise((resolve) =>
    rpc(client, method)(Buffer.from(body), (err, res) => resolve({ err, ...(res ? { res: JSON.parse(res.toString()) } : {}) })),
  );
}

beforeAll(async () => {
  m = await TestMesh.start();
  for (const name of ['i1', 'i2']) await m.sidecar('inventory', await inventoryServer(name), { env: { SIDECAR_SERVICE_TYPE: 'grpc' } });
  web = await m.sidecar('web', await m.app('web'), { env: { SIDECAR_UPSTREAMS: 'inventory' } });
  await m.until(
    web,
    'two inventory endpoints and a certificate',
    (d) => d.snapshot?.upstreams[0]?.endpoints.length === 2 && d.certificate !== null,
  );
  const Client = grpc.makeGenericClientConstructor(definition, 'Inventory');
  client = new Client(`127.0.0.1:${web.ports.outbound}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': 'inventory.mesh',
  }) as typeof client;
}, 120_000);

afterAll(async () => {
  client?.close();
  for (const s of servers) s.forceShutdown();
  await m?.dispose();
});

describe('gRPC through two sidecars', () => {
  it('unary calls reach both workloads over mutual TLS, with the caller’s identity in the metadata', async () => {
    const apps = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const { err, res } = await unary('echo', `item-${i}`);
      expect(err).toBeNull();
      expect(res?.got).toBe(`item-${i}`);
      expect(res?.xfcc).toContain('URI=spiffe://novamesh.local/ns/default/svc/web');
      apps.add(res?.app ?? '');
    }
    expect(apps).toEqual(new Set(['i1', 'i2']));
  });

  it('passes the server’s status code and message back (trailers survive every hop)', async () => {
    const { err } = await unary('fail', 'x');
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.details).toBe('no such item: 42');
  });

  it('a denied call gets PERMISSION_DENIED with the reason, not a protocol error', async () => {
    await m.mesh.applyPolicy({
      kind: 'AuthorizationPolicy',
      name: 'no-web',
      serviceName: 'inventory',
      action: 'DENY',
      rules: [{ from: { principals: ['spiffe://novamesh.local/ns/default/svc/web'] } }],
    });
    for (const s of m.sidecars.filter((x) => x.id.startsWith('i')))
      await m.until(s, 'no-web in use', (d) => d.snapshot?.inbound.authorization.policies.length === 1);
    try {
      const { err } = await unary('echo', 'x');
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(err?.details).toContain('no-web');
    } finally {
      await m.mesh.deletePolicy('AuthorizationPolicy', 'no-web');
      for (const s of m.sidecars.filter((x) => x.id.startsWith('i')))
        await m.until(s, 'no-web gone', (d) => d.snapshot?.inbound.authorization.policies.length === 0);
    }
  });

  it('a service the sidecar does not know is UNIMPLEMENTED with the reason', async () => {
    const Client = grpc.makeGenericClientConstructor(definition, 'Inventory');
    const other = new Client(`127.0.0.1:${web.ports.outbound}`, grpc.credentials.createInsecure(), {
      'grpc.default_authority': 'nowhere.mesh',
    }) as typeof client;
    const err = await new Promise<grpc.ServiceError | null>((resolve) => rpc(other, 'echo')(Buffer.from('x'), (e) => resolve(e)));
    other.close();
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err?.details).toContain('"nowhere" is not a service this sidecar may call');
  });

  it('gives up HTTP/1.1 calls pipelined behind one in progress when the client goes away: none stays counted at an endpoint', async () => {
    const active = async () => {
      const { body } = await web.admin<{ clusters: { service: string; endpoints: { active: number }[] }[] }>('/clusters');
      return body.clusters.find((c) => c.service === 'inventory')?.endpoints.map((e) => e.active);
    };
    // A gRPC message: no compression, its length, then the bytes.
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 2]), Buffer.from('{}')]);
    const call = `POST /inventory.Inventory/Hang HTTP/1.1\r\nHost: inventory.mesh\r\ncontent-type: application/grpc\r\nte: trailers\r\ncontent-length: ${message.length}\r\n\r\n`;
    const before = hanging;
    const socket = connect(web.ports.outbound as number, '127.0.0.1');
    socket.on('error', () => undefined);
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    await once(socket, 'connect');
    socket.write(Buffer.concat([Buffer.from(call), message, Buffer.from(call), message, Buffer.from(call), message]));
    await waitFor(() => hanging - before === 3, { timeoutMs: 5_000, what: 'the three calls at the servers' }).catch((e) => {
      throw new Error(`${(e as Error).message}: ${hanging - before} arrived; ${JSON.stringify(Buffer.concat(got).toString())}`);
    });
    expect((await active())?.reduce((a, b) => a + b, 0)).toBe(3);
    socket.destroy();
    await waitFor(async () => (await active())?.every((n) => n === 0) ?? false, {
      timeoutMs: 3_000,
      what: 'no call left active at an inventory endpoint',
    }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await active())}`);
    });
  });
});
