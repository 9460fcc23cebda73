import { parseDuration } from '@novamesh/contracts';
import { InvalidArgumentError, Option } from 'commander';
import { OUTPUT_FORMATS } from './output';

/** A label selector: every pair must match (`version=v2,zone=a`). */
export type Selector = Record<string, string>;

/**
 * Commander parser for repeatable `-l key=value` (also `-l a=1,b=2`): merges into the previous
 * value. Key syntax is left to the contracts schema, which reports it with its path.
 */
export function collectSelector(value: string, previous: Selector | undefined): Selector {
  const out: Selector = { ...previous };
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    if (eq <= 0 || !key) throw new InvalidArgumentError(`"${part}" is not a key=value label selector`);
    out[key] = part.slice(eq + 1).trim();
  }
  return out;
}

export function matchesSelector(labels: Record<string, string>, selector: Selector | undefined): boolean {
  if (!selector) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** Commander parser for durations (`500ms`, `5s`, `1m` or milliseconds). */
export function durationArg(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new InvalidArgumentError(`"${value}" is not a duration (use "500ms", "5s", "1m" or milliseconds)`);
  return ms;
}

/** The longest wait a timer can hold (2^31 - 1 ms, about 24.8 days): beyond it Node fires at once. */
const MAX_WAIT_MS = 2_147_483_647;

/** Commander parser for durations that must be longer than 0 (`--timeout`, `meshctl run --app-timeout`), at most 24 days. */
export function positiveDurationArg(value: string): number {
  const ms = durationArg(value);
  if (ms <= 0) throw new InvalidArgumentError('must be longer than 0');
  if (ms > MAX_WAIT_MS) throw new InvalidArgumentError(`"${value}" is longer than the longest wait (about 24 days, ${MAX_WAIT_MS} ms)`);
  return ms;
}

/** Splits and checks `--nats` (comma-separated URLs); throws a usage error naming the bad one. */
export function parseServers(value: string): string[] {
  const servers = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (servers.length === 0) throw new InvalidArgumentError('no NATS server given');
  for (const s of servers) {
    let url: URL;
    try {
      url = new URL(s.includes('://') ? s : `nats://${s}`);
    } catch {
      throw new InvalidArgumentError(`"${s}" is not a NATS URL (e.g. nats://127.0.0.1:4222)`);
    }
    if (url.protocol === 'ws:' || url.protocol === 'wss:')
      throw new InvalidArgumentError(`"${s}": WebSocket URLs are not supported (meshctl speaks NATS over TCP); use nats:// or tls://`);
    if (!['nats:', 'tls:'].includes(url.protocol)) throw new InvalidArgumentError(`"${s}" must use nats:// or tls://`);
  }
  return servers;
}

export function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table');
}

export function selectorOption(what: string): Option {
  return new Option('-l, --selector <key=value>', `only ${what} whose labels match (repeatable, or a=1,b=2)`).argParser(collectSelector);
}
