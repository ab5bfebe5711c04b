import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * test/fixtures/shape-probe.ts in its own process (V8 flags a test worker cannot take): its summary
 * line, and how many of the properties nextTick's tick-object literal defines are monomorphic and
 * megamorphic in V8's feedback after the collection.
 */
async function probe(mode: string): Promise<{ summary: string; ticks: { mono: number; mega: number } }> {
  const { stdout, stderr } = await run(mode);
  const count = (state: string) => stdout.split(`DefineKeyedOwnPropertyInLiteral ${state}`).length - 1;
  return { summary: stderr.trim(), ticks: { mono: count('MONOMORPHIC'), mega: count('MEGAMORPHIC') } };
}

/**
 * stdout goes to a file: V8 prints through C's stdio, which loses what it cannot write at once to
 * the non-blocking pipe Node makes of a child's stdout.
 */
function run(mode: string): Promise<{ stdout: string; stderr: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubcache-shape-probe-'));
  const file = path.join(dir, 'stdout');
  const out = openSync(file, 'w');
  return new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--allow-natives-syntax', '--expose-gc', '--import', 'tsx', 'test/fixtures/shape-probe.ts', mode],
      { stdio: ['ignore', out, 'pipe'], timeout: 30_000 },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve({ stdout: readFileSync(file, 'utf8'), stderr })
        : reject(new Error(`shape-probe ${mode} exited ${code}\n${stderr}`)),
    );
  }).finally(() => {
    closeSync(out);
    rmSync(dir, { recursive: true, force: true });
  });
}

describe('settleConnectionShapes and keepTickShapes', () => {
  it('this Node turns every later response into a dictionary when a full collection comes before the seventh', async () => {
    // The case the settling is for (docs/benchmarks.md, "Response shapes"). If a Node release stops
    // doing this, the settling is no longer needed: this test then says so.
    expect((await probe('none')).summary).toMatch(/^res DDD /);
  });

  it('this Node leaves nextTick’s tick-object properties megamorphic after such a collection', async () => {
    // The case keepTickShapes is for (docs/benchmarks.md, "Response shapes"): said as above.
    expect((await probe('none')).ticks.mega).toBeGreaterThan(0);
  });

  it('keeps responses and requests on fast properties, and nextTick monomorphic, through that collection', async () => {
    const { summary, ticks } = await probe('settle');
    expect(summary).toBe('res FFF req FFF');
    // Node 20 defines four properties there, Node 24 five.
    expect(ticks).toEqual({ mono: expect.any(Number), mega: 0 });
    expect(ticks.mono).toBeGreaterThanOrEqual(4);
  });

  it('settles TLS sockets too, and leaves nothing open (the probe exits by itself)', async () => {
    const { summary, ticks } = await probe('settle-tls');
    expect(summary).toBe('res FFF req FFF');
    expect(ticks.mega).toBe(0);
  });
});
