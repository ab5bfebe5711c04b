import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/** test/fixtures/shape-probe.ts in its own process (V8 flags a test worker cannot take). */
function probe(mode: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--allow-natives-syntax', '--expose-gc', '--import', 'tsx', 'test/fixtures/shape-probe.ts', mode],
      { timeout: 30_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

describe('settleConnectionShapes', () => {
  it('this Node turns every later response into a dictionary when a full collection comes before the seventh', async () => {
    // The case the settling is for (docs/benchmarks.md, "Response shapes"). If a Node release stops
    // doing this, the settling is no longer needed: this test then says so.
    expect(await probe('none')).toMatch(/^res DDD /);
  });

  it('keeps responses and requests on fast properties through that collection', async () => {
    expect(await probe('settle')).toBe('res FFF req FFF');
  });

  it('settles TLS sockets too, and leaves nothing open (the probe exits by itself)', async () => {
    expect(await probe('settle-tls')).toBe('res FFF req FFF');
  });
});
