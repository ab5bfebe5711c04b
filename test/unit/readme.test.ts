import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mirrorHostsToml } from '../fixtures/containerd.js';
import { userDaemonJson } from '../fixtures/debian13-dockerd.js';
import { mirrorRegistriesConf } from '../fixtures/podman.js';

// README's client snippets must be the configurations the interop suites run the real clients
// with, so the documentation cannot drift from what is tested.
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const MIRROR = 'http://127.0.0.1:5000';

describe('README client snippets', () => {
  it('quotes the containerd hosts.toml the containerd suite uses', () => {
    expect(readme).toContain(`\`\`\`toml\n${mirrorHostsToml(MIRROR)}\`\`\``);
  });

  it('quotes the registries.conf the podman suite uses', () => {
    expect(readme).toContain(`\`\`\`toml\n${mirrorRegistriesConf(new URL(MIRROR).host)}\`\`\``);
  });

  it('quotes the registry-mirrors entry the dockerd suite writes into daemon.json', () => {
    expect(readme).toContain(`{ "registry-mirrors": ["${MIRROR}"] }`);
  });

  it('quotes the daemon.json the dockerd 26 suite runs with the containerd image store', () => {
    expect(readme).toContain(
      `\`\`\`json\n${JSON.stringify(userDaemonJson(MIRROR, 'containerd'), null, 2)}\n\`\`\``,
    );
  });
});
