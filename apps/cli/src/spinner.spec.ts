import { describe, expect, it } from 'vitest';
import { withSpinner } from './spinner';

const after = <T>(ms: number, value: T) => new Promise<T>((r) => setTimeout(() => r(value), ms));

describe('withSpinner', () => {
  it('draws while slow work runs, then erases its line', async () => {
    const written: string[] = [];
    const value = await withSpinner({ write: (s: string) => written.push(s) }, true, 'connecting', after(400, 42));
    expect(value).toBe(42);
    expect(written.length).toBeGreaterThan(1);
    expect(written[0]).toMatch(/connecting$/);
    expect(written.at(-1)).toBe('\r\x1b[2K');
  });

  it('stays silent for fast work and when disabled (stderr is not a terminal)', async () => {
    const written: string[] = [];
    const sink = { write: (s: string) => written.push(s) };
    await withSpinner(sink, true, 'fast', after(10, 1));
    await withSpinner(sink, false, 'slow', after(300, 1));
    expect(written).toEqual([]);
  });

  it('erases its line when the work fails', async () => {
    const written: string[] = [];
    const failing = after(300, 0).then(() => Promise.reject(new Error('down')));
    await expect(withSpinner({ write: (s: string) => written.push(s) }, true, 'x', failing)).rejects.toThrow('down');
    expect(written.at(-1)).toBe('\r\x1b[2K');
  });
});
