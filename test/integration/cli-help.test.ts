import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli-harness.js';

const SUBCOMMANDS = ['prefetch', 'gc', 'stats'];

describe('hubcache --help and --version', () => {
  it('--help lists every subcommand in a Commands section, one line each', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    const section = stdout.slice(stdout.indexOf('\nCommands:\n'));
    expect(section).not.toBe(stdout);
    for (const name of ['serve', ...SUBCOMMANDS]) expect(section).toMatch(new RegExp(`\\n  ${name} +\\S`));
    expect(stdout).toContain('hubcache <command> --help');
  });

  it.each(SUBCOMMANDS)('`hubcache %s --help` shows its own usage and exits 0', async (name) => {
    const { code, stdout } = await runCli([name, '--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^Usage: hubcache ${name} `));
  });

  it('--version and -V print the version in package.json', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const { code, stdout } = await runCli([flag]);
      expect(code).toBe(0);
      expect(stdout.trim()).toBe(version);
    }
  });
});
