import { resolve } from 'node:path';
import { ManagedProcess } from './processes';

/** Repository root, from this file in libs/testing/{src,dist}. */
export const repoRoot = resolve(__dirname, '..', '..', '..');

/** Starts a compiled app (`apps/<app>/dist/main.js`; run `tsc -b` first) and waits for its ready line. */
async function startApp(app: string, name: string, env: NodeJS.ProcessEnv): Promise<ManagedProcess> {
  const p = new ManagedProcess(name, process.execPath, [resolve(repoRoot, `apps/${app}/dist/main.js`)], { LOG_LEVEL: 'info', ...env });
  try {
    await p.waitForLine(new RegExp(`"msg":"${app} ready"`), 30_000);
  } catch (e) {
    await p.stop('SIGKILL');
    throw e;
  }
  return p;
}

/** Starts a discovery replica and waits until it is ready. */
export function startDiscovery(opts: {
  natsUrl: string;
  redisUrl: string;
  instance: string;
  env?: NodeJS.ProcessEnv;
}): Promise<ManagedProcess> {
  return startApp('discovery', `discovery-${opts.instance}`, {
    NATS_URL: opts.natsUrl,
    REDIS_URL: opts.redisUrl,
    DISCOVERY_INSTANCE: opts.instance,
    ...opts.env,
  });
}

/** Starts a policy replica and waits until it is ready. */
export function startPolicy(opts: { natsUrl: string; instance: string; env?: NodeJS.ProcessEnv }): Promise<ManagedProcess> {
  return startApp('policy', `policy-${opts.instance}`, { NATS_URL: opts.natsUrl, POLICY_INSTANCE: opts.instance, ...opts.env });
}

/** Starts a proxy-config replica and waits until it has loaded its inputs and is ready. */
export function startProxyConfig(opts: { natsUrl: string; instance: string; env?: NodeJS.ProcessEnv }): Promise<ManagedProcess> {
  return startApp('proxy-config', `proxy-config-${opts.instance}`, {
    NATS_URL: opts.natsUrl,
    PROXY_CONFIG_INSTANCE: opts.instance,
    ...opts.env,
  });
}

/**
 * Starts a certificate-authority replica on `caDir` and waits until it is ready. Replicas sharing a
 * directory must be started one after another (the first creates the CA, the others load it).
 */
export function startCertificateAuthority(opts: {
  natsUrl: string;
  instance: string;
  caDir: string;
  env?: NodeJS.ProcessEnv;
}): Promise<ManagedProcess> {
  return startApp('certificate-authority', `certificate-authority-${opts.instance}`, {
    NATS_URL: opts.natsUrl,
    CA_INSTANCE: opts.instance,
    CA_DIR: opts.caDir,
    ...opts.env,
  });
}

/** Runs meshctl (compiled) to completion, with `input` on stdin when given, and returns its exit code and output. */
export async function runMeshctl(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [resolve(repoRoot, 'apps/cli/dist/main.js'), ...args], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b) => {
      stdout += b;
    });
    child.stderr?.on('data', (b) => {
      stderr += b;
    });
    child.on('exit', (code) => resolveRun({ code, stdout, stderr }));
    if (input !== undefined) child.stdin?.end(input);
  });
}
