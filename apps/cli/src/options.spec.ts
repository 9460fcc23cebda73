import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { collectSelector, durationArg, matchesSelector, parseServers, positiveDurationArg } from './options';

describe('options', () => {
  it('collects repeated and comma-separated label selectors', () => {
    const once = collectSelector('version=v2', undefined);
    expect(collectSelector('zone=a, tier=web', once)).toEqual({ version: 'v2', zone: 'a', tier: 'web' });
    expect(collectSelector('empty=', undefined)).toEqual({ empty: '' });
  });

  it('refuses selectors without a key', () => {
    expect(() => collectSelector('version', undefined)).toThrow(InvalidArgumentError);
    expect(() => collectSelector('=v2', undefined)).toThrow(InvalidArgumentError);
  });

  it('matches only when every selected label is equal', () => {
    expect(matchesSelector({ version: 'v2', zone: 'a' }, { version: 'v2' })).toBe(true);
    expect(matchesSelector({ version: 'v2' }, { version: 'v2', zone: 'a' })).toBe(false);
    expect(matchesSelector({}, undefined)).toBe(true);
  });

  it('parses durations and NATS server lists', () => {
    expect(durationArg('1.5s')).toBe(1500);
    expect(durationArg('0')).toBe(0);
    expect(() => durationArg('soon')).toThrow(InvalidArgumentError);
    // A timer longer than 2^31 - 1 ms would fire at once: every command would time out.
    expect(positiveDurationArg('576h')).toBe(576 * 3_600_000);
    expect(() => positiveDurationArg('600h')).toThrow(/longer than the longest wait \(about 24 days/);
    expect(() => positiveDurationArg('0s')).toThrow(/must be longer than 0/);
    expect(parseServers('nats://a:4222, tls://b:4222')).toEqual(['nats://a:4222', 'tls://b:4222']);
    expect(parseServers('127.0.0.1:4222')).toEqual(['127.0.0.1:4222']);
    expect(() => parseServers('http://a')).toThrow(/must use nats/);
    expect(() => parseServers('wss://a:443')).toThrow(/WebSocket URLs are not supported.*use nats:\/\/ or tls:\/\//);
    expect(() => parseServers(' , ')).toThrow(/no NATS server/);
  });
});
