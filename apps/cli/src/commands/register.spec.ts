import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readAll } from './register';

const from = (...parts: (string | number[])[]) =>
  Readable.from([Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))))]);

describe('readAll', () => {
  it('reads UTF-8 text, multibyte characters and all', async () => {
    expect(await readAll(from('name: café €'))).toBe('name: café €');
  });

  it('refuses bytes that are not UTF-8, naming the offset of the first bad sequence', async () => {
    // A lone Latin-1 é; a stray cp1252 quote after a valid é; a 0xFF after a valid €.
    await expect(readAll(from('name: caf', [0xe9], '\n'))).rejects.toThrow('<stdin> is not UTF-8 text (an invalid byte at offset 9)');
    await expect(readAll(from('a: caf', [0xc3, 0xa9, 0x92]))).rejects.toThrow('(an invalid byte at offset 8)');
    await expect(readAll(from('a: ', [0xe2, 0x82, 0xac, 0xff]))).rejects.toThrow('(an invalid byte at offset 6)');
  });
});
