import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { keepsUp } from '../../src/cache/ranged-fill.js';

/**
 * The sample that decides between one stream and segments (cache/ranged-fill.ts `keepsUp`): it
 * must never lose, reorder or duplicate a byte of the body it looked at, whatever it decided.
 */

const MIB = 1024 * 1024;

/** A body whose chunks are pushed when the test says so. */
function controlled() {
  const body = new Readable({ read() {} });
  return { body, push: (b: Buffer | null) => body.push(b) };
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('keepsUp', () => {
  it('says fast when the sample arrives in time, and the reader still gets every byte', async () => {
    const bytes = randomBytes(3 * MIB);
    const { body, push } = controlled();
    for (let o = 0; o < 2 * MIB; o += 64 * 1024) push(bytes.subarray(o, o + 64 * 1024));
    // A generous window: arriving in time is what is tested, not the machine's speed.
    const sample = await keepsUp(body, MIB, 10_000);
    expect(sample).toEqual({ fast: true });
    push(bytes.subarray(2 * MIB));
    push(null);
    expect((await readAll(body)).equals(bytes)).toBe(true);
  });

  it('says slow when the window passes first, and the reader still gets every byte', async () => {
    const bytes = randomBytes(2 * MIB);
    const { body, push } = controlled();
    push(bytes.subarray(0, 64 * 1024));
    const sample = await keepsUp(body, MIB, 20);
    expect(sample).toEqual({ fast: false });
    push(bytes.subarray(64 * 1024));
    push(null);
    expect((await readAll(body)).equals(bytes)).toBe(true);
  });

  it('hands back what it read when the body ended within the sample', async () => {
    const bytes = randomBytes(1000);
    const { body, push } = controlled();
    push(bytes);
    push(null);
    const sample = await keepsUp(body, MIB, 10_000);
    expect(sample.fast).toBe(false);
    expect(sample.replay).toBeDefined();
    expect((await readAll(sample.replay as Readable)).equals(bytes)).toBe(true);
  });

  it('hands back the failed body, whose reader meets the error', async () => {
    const { body, push } = controlled();
    push(randomBytes(1000));
    setTimeout(() => body.destroy(new Error('connection reset')), 5);
    const sample = await keepsUp(body, MIB, 10_000);
    expect(sample.fast).toBe(false);
    await expect(readAll(sample.replay as Readable)).rejects.toThrow('connection reset');
  });
});
