import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nodeFlagsOf } from '../../bench/lib/node-flags.js';

describe('the Node flags the mirror runs with', () => {
  it('npm start and the Dockerfile give the same ones, the young generation bounded among them', () => {
    const flags = nodeFlagsOf('.');
    expect(flags).toContain('--max-semi-space-size=8');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1];
    expect(JSON.parse(entrypoint ?? '[]')).toEqual(['node', ...flags, 'dist/main.js']);
  });
});
