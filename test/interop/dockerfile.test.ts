import { type ChildProcess, exec, execFile, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../fixtures/upstream-process.js';

/**
 * No Docker engine runs on these machines, so this test performs the Dockerfile's own steps, read
 * from the Dockerfile: each stage's COPY and RUN in a folder of its own, COPY --from between
 * stages, then the ENTRYPOINT with the image's ENV, and checks the result answers /healthz and
 * /v2/. A Dockerfile whose steps stop working fails here. Then the HEALTHCHECK command, run as
 * Docker runs it (in the image's folder, with the container's environment), on another port than
 * 5000 and with TLS (healthy), and with nothing listening (unhealthy).
 */
const root = path.resolve(import.meta.dirname, '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-dockerfile-'));

const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

/** The final stage's folder, ENV, ENTRYPOINT and HEALTHCHECK command, after the build steps ran. */
let image: { dir: string; env: Record<string, string>; entrypoint: string[]; healthcheck: string[] };

// The build runs asynchronously: a synchronous `npm ci` would block the worker's RPC with vitest.
beforeAll(async () => {
  const lines = readFileSync(path.join(root, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages = new Map<string, string>();
  let dir = '';
  let env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let healthcheck: string[] = [];
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
        await promisify(exec)(args, { cwd: dir, env: { ...process.env, ...env } });
        break;
      case 'ENTRYPOINT':
        entrypoint = JSON.parse(args);
        break;
      case 'HEALTHCHECK': {
        // HEALTHCHECK [--interval=… …] CMD ["exec", "form"]
        const cmd = /\bCMD\s+(\[.*\])\s*$/.exec(args)?.[1];
        if (cmd) healthcheck = JSON.parse(cmd);
        break;
      }
    }
  }
  image = { dir, env, entrypoint, healthcheck };
}, 300_000);

/** The ENTRYPOINT with the image's ENV and `extra` on top (a container started with -e). */
function run(extra: Record<string, string>): ChildProcess {
  const [command = '', ...args] = image.entrypoint;
  const child = spawn(command, args, {
    cwd: image.dir,
    env: { ...process.env, ...image.env, ...extra },
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

/** Docker's health probe: the HEALTHCHECK command in the container (same ENV and -e variables). */
async function healthcheck(extra: Record<string, string>): Promise<{ status: number; output: string }> {
  const [command = '', ...args] = image.healthcheck;
  const options = { cwd: image.dir, env: { ...process.env, ...image.env, ...extra }, timeout: 30_000 };
  return promisify(execFile)(command, args, options).then(
    (r) => ({ status: 0, output: `${r.stdout}${r.stderr}`.trim() }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      status: typeof err.code === 'number' ? err.code : -1,
      output: `${err.stdout ?? ''}${err.stderr ?? ''}`.trim(),
    }),
  );
}

/** /healthz's status once the process answers (over https, whatever the certificate). */
async function waitForHealthz(url: string): Promise<number> {
  const status = () =>
    new Promise<number>((resolve) =>
      httpsGet(url, { rejectUnauthorized: false }, (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      }).on('error', () => resolve(0)),
    );
  let health = 0;
  for (let i = 0; i < 200 && health !== 200; i++) {
    health = url.startsWith('https:')
      ? await status()
      : await fetch(url).then(
          (r) => r.status,
          () => 0,
        );
    if (health !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  return health;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  return exited;
}

it('builds and starts as the Dockerfile says; its HEALTHCHECK follows HUBCACHE_LISTEN to another port', async () => {
  expect(image.entrypoint[0]).toBe('node');
  expect(image.healthcheck.length).toBeGreaterThan(0);
  const port = await freePort();
  // 0.0.0.0 as the image's default listens: the check must reach it on loopback.
  const env = { HUBCACHE_LISTEN: `0.0.0.0:${port}`, HUBCACHE_DATA: path.join(work, 'data') };
  const child = run(env);
  try {
    expect(await waitForHealthz(`http://127.0.0.1:${port}/healthz`)).toBe(200);
    const v2 = await fetch(`http://127.0.0.1:${port}/v2/`);
    expect(v2.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(await healthcheck(env)).toEqual({
      status: 0,
      output: `healthy: http://127.0.0.1:${port}/healthz answered 200`,
    });
  } finally {
    await stop(child);
  }
  // Nothing listens any more: unhealthy.
  const down = await healthcheck(env);
  expect(down.status).not.toBe(0);
  expect(down.output).toBe(
    `unhealthy: http://127.0.0.1:${port}/healthz: connect ECONNREFUSED 127.0.0.1:${port}`,
  );
});

it('the HEALTHCHECK follows TLS (a self-signed certificate), and says unhealthy when nothing listens', async () => {
  const tls = path.join(work, 'tls');
  mkdirSync(tls);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=hubcache.example'].concat([
      '-keyout',
      path.join(tls, 'key.pem'),
      '-out',
      path.join(tls, 'cert.pem'),
    ]),
    { stdio: 'ignore' },
  );
  const port = await freePort();
  const env = {
    HUBCACHE_LISTEN: `127.0.0.1:${port}`,
    HUBCACHE_DATA: path.join(work, 'data-tls'),
    HUBCACHE_TLS_CERT: path.join(tls, 'cert.pem'),
    HUBCACHE_TLS_KEY: path.join(tls, 'key.pem'),
  };
  const child = run(env);
  try {
    // The test's own probe: /healthz over TLS (any certificate) once the process listens.
    expect(await waitForHealthz(`https://127.0.0.1:${port}/healthz`)).toBe(200);
    expect(await healthcheck(env)).toEqual({
      status: 0,
      output: `healthy: https://127.0.0.1:${port}/healthz answered 200`,
    });
    // The same port spoken to in plain HTTP is not this configuration: unhealthy.
    const { HUBCACHE_TLS_CERT: _cert, HUBCACHE_TLS_KEY: _key, ...plain } = env;
    expect((await healthcheck(plain)).status).not.toBe(0);
  } finally {
    await stop(child);
  }
  expect((await healthcheck(env)).status).not.toBe(0);
});
