import { Writable } from 'node:stream';

/**
 * A pino destination that keeps every JSON line it is given, parsed, in `lines`: for tests that
 * assert what a logger wrote (`createLogger({ …, destination })`).
 */
export function jsonLogLines(): { lines: Record<string, unknown>[]; destination: Writable } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()));
      cb();
    },
  });
  return { lines, destination };
}
