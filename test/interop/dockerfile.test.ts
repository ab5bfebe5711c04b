import { execSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../fixtures/upstream-process.js';

/**
 * No Docker engine runs on these machines, so this test performs the Dockerfile's own steps, read
 * from the Dockerfile: each stage's COPY and RUN in a folder of its own, COPY --from between
 * stages, then the ENTRYPOINT with the image's ENV, and checks the result answers /healthz and
 * /v2/. A Dockerfile whose steps stop working fails here.
 */
const root = path.resolve(import.meta.dirname, '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-dockerfile-'));

afterAll(() => rmSync(work, { recursive: true, force: true }));

it('builds and starts as the Dockerfile says', async () => {
  const lines = readFileSync(path.join(root, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages = new Map<string, string>();
  let dir = '';
  let env: Record<string, string> = {};
  let entrypoint: string[] = [];
  for (const line of lines) {
    const [instruction = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    switch (instruction.toUpperCase()) {
      case 'FROM': {
        const name = /\bAS\s+(\S+)/i.exec(args)?.[1] ?? `stage${stages.size}`;
        dir = path.join(work, name);
        mkdirSync(dir, { recursive: true });
        stages.set(name, dir);
        env = {};
        break;
      }
      case 'WORKDIR':
        break; // each stage's folder stands for its WORKDIR
      case 'ENV':
        for (const m of args.matchAll(/(\w+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
        break;
      case 'COPY': {
        const from = /--from=(\S+)/.exec(args)?.[1];
        const parts = args.replace(/--\S+/g, '').trim().split(/\s+/);
        const dest = parts.pop() as string;
        for (const src of parts) {
          const base = from ? (stages.get(from) as string) : root;
          const target =
            dest.endsWith('/') || parts.length > 1
              ? path.join(dir, dest, path.basename(src))
              : path.join(dir, dest);
          cpSync(path.join(base, src.replace(/^\/app\//, '')), target, { recursive: true });
        }
        break;
      }
      case 'RUN':
        // Steps that need root in an image (creating /data, chown) have no meaning here.
        if (/mkdir -p \/data|chown/.test(args)) break;
        execSync(args, { cwd: dir, stdio: 'pipe', env: { ...process.env, ...env } });
        break;
      case 'ENTRYPOINT':
        entrypoint = JSON.parse(args);
        break;
    }
  }
  expect(entrypoint[0]).toBe('node');
  const port = await freePort();
  const child = spawn(entrypoint[0] as string, entrypoint.slice(1), {
    cwd: dir,
    env: {
      ...process.env,
      ...env,
      HUBCACHE_LISTEN: `127.0.0.1:${port}`,
      HUBCACHE_DATA: path.join(work, 'data'),
    },
    stdio: 'ignore',
  });
  try {
    let health = 0;
    for (let i = 0; i < 100 && health !== 200; i++) {
      health = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status,
        () => 0,
      );
      if (health !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(health).toBe(200);
    const v2 = await fetch(`http://127.0.0.1:${port}/v2/`);
    expect(v2.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  } finally {
    child.kill('SIGTERM');
  }
}, 300_000);
