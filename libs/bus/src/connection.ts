import { connect, type NatsConnection } from '@nats-io/transport-node';
import { natsServerTooOld } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';

export interface BusConnectOptions {
  servers: string | string[];
  /** Connection name shown by `nats server report connections`. */
  name: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Keep trying the first connect instead of failing (long-running services); default false. */
  waitOnFirstConnect?: boolean;
  /** First-connect timeout when not waiting (ms). */
  timeout?: number;
  /**
   * Skip capturing a stack trace for every request (the client does it so that a timeout shows
   * the caller). Services on the hot path turn it off: it costs a third of their CPU.
   */
  noAsyncTraces?: boolean;
  logger?: Logger;
}

/**
 * Whether `servers` ask for TLS: a `tls://` URL means TLS is required, as the Go client and the
 * `nats` CLI take it (nats.js itself only looks at its `tls` option, and would speak plaintext to a
 * `tls://` URL). Then every server of the list is reached over TLS, verified against the system's
 * CAs (and `NODE_EXTRA_CA_CERTS`); a server without TLS is refused.
 */
export function tlsRequired(servers: string | string[]): boolean {
  return (Array.isArray(servers) ? servers : servers.split(',')).some((s) => s.trim().toLowerCase().startsWith('tls://'));
}

/** The client's `tls` option for `servers`: set (TLS required) when one of them is a `tls://` URL ({@link tlsRequired}). */
export function tlsOption(servers: string | string[]): { tls?: Record<string, never> } {
  return tlsRequired(servers) ? { tls: {} } : {};
}

/**
 * Connects to NATS with endless reconnects (a control-plane service outlives NATS restarts)
 * and logs connection status changes. Close with `drainBus` so in-flight work finishes.
 */
export async function connectBus(opts: BusConnectOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.servers,
    name: opts.name,
    user: opts.user,
    pass: opts.pass,
    token: opts.token,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
    timeout: opts.timeout ?? 5_000,
    pingInterval: 5_000,
    maxPingOut: 3,
    noAsyncTraces: opts.noAsyncTraces ?? false,
    ...tlsOption(opts.servers),
  });
  const log = opts.logger;
  if (log) {
    // Checked at connect and after each reconnect (another server of the cluster, or an upgrade).
    let warnedFor: string | undefined;
    const checkVersion = () => {
      const version = nc.info?.version;
      const why = natsServerTooOld(version);
      if (why && version !== warnedFor) log.warn({ natsServer: version, server: nc.getServer() }, why);
      warnedFor = version;
    };
    checkVersion();
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'ping' || s.type === 'reconnecting') continue;
        log.info({ nats: s.type, server: 'server' in s ? s.server : undefined }, 'nats connection status');
        if (s.type === 'reconnect') checkVersion();
      }
    })().catch(() => undefined);
  }
  return nc;
}

/** Drains subscriptions (delivering what is buffered) and closes; never throws. */
export async function drainBus(nc: NatsConnection | undefined): Promise<void> {
  if (!nc || nc.isClosed()) return;
  try {
    await nc.drain();
  } catch {
    await nc.close().catch(() => undefined);
  }
}
