import type { Logger } from 'pino';
import { shutdownTelemetry } from './telemetry';

/**
 * Drains the process on SIGTERM/SIGINT, once: logs `draining`, runs `stop` (the app's own
 * ordered steps: stop pulling, finish in-flight work, drain NATS…), flushes telemetry, logs
 * `stopped` and exits 0. A stop that hangs is cut off after `forceAfterMs` with exit code 1.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>, forceAfterMs = 10_000): void {
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    setTimeout(() => process.exit(1), forceAfterMs).unref();
    try {
      await stop();
      await shutdownTelemetry();
      logger.info('stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'drain failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
