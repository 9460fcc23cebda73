import type { LoggerService } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';

/** Routes NestJS's own log lines into the process's pino logger, so every line is JSON. */
export class NestPinoLogger implements LoggerService {
  private readonly pino: Logger;

  constructor(logger: Logger) {
    this.pino = logger.child({ component: 'nest' });
  }

  private write(level: 'info' | 'warn' | 'error' | 'debug' | 'trace', message: unknown, rest: unknown[]): void {
    const context = typeof rest[rest.length - 1] === 'string' ? (rest[rest.length - 1] as string) : undefined;
    if (message instanceof Error) this.pino[level]({ err: message, context }, message.message);
    else this.pino[level]({ context }, String(message));
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('trace', message, rest);
  }
}
