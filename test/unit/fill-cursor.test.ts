import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobFill, FillCursor } from '../../src/cache/fill.js';
import { parseDigest } from '../../src/oci/digest.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fill streaming `bytes` into a temp file, `landed` of them written so far. */
function fillOf(bytes: Buffer, landed: number): { fill: BlobFill; land: (n: number) => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'fill-cursor-'));
  dirs.push(dir);
  const digest = parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  const fill = new BlobFill(digest, path.join(dir, 'final'));
  const temp = path.join(dir, 'temp');
  const land = (n: number) => {
    writeFileSync(temp, bytes.subarray(0, n));
    fill.progress(n);
  };
  writeFileSync(temp, bytes.subarray(0, landed));
  fill.streaming(bytes.length, temp);
  fill.progress(landed);
  return { fill, land };
}

const pending = (p: Promise<unknown>) =>
  Promise.race([p.then(() => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 30))]);

describe('FillCursor (a client tailing a download in progress)', () => {
  it('reads what landed, waits for more, and holds back the last byte until the blob was verified', async () => {
    const bytes = Buffer.from('0123456789');
    const { fill, land } = fillOf(bytes, 4);
    const cursor = new FillCursor(fill, 9);
    const buf = Buffer.alloc(10);
    expect(await cursor.read(buf, 10, 0)).toBe(3); // the 4th byte may be the last: held back
    const more = cursor.read(buf, 10, 3);
    expect(await pending(more)).toBe('pending');
    land(10);
    expect(await more).toBe(6); // 3..8: the blob's last byte still waits
    const last = cursor.read(buf, 10, 9);
    expect(await pending(last)).toBe('pending');
    fill.verified();
    expect(await last).toBe(1);
    expect(buf.subarray(0, 1).toString()).toBe('9');
    expect(await cursor.read(buf, 10, 10)).toBe(0);
    await cursor.close();
  });

  it('ends a waiting read with 0 when closed (the client went away), and throws when the fill fails', async () => {
    const { fill } = fillOf(Buffer.from('0123456789'), 1);
    const cursor = new FillCursor(fill, undefined);
    const waiting = cursor.read(Buffer.alloc(10), 10, 0);
    expect(await pending(waiting)).toBe('pending');
    await cursor.close();
    expect(await waiting).toBe(0);
    const other = new FillCursor(fill, undefined);
    const failing = other.read(Buffer.alloc(10), 10, 0);
    fill.fail(new Error('digest mismatch'));
    await expect(failing).rejects.toThrow('digest mismatch');
    await other.close();
  });
});
