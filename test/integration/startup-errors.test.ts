import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeS3 } from './fake-s3.js';
import { tempDataDir } from './harness.js';

/**
 * An operator's start-up mistakes, each made with the real process: one line on stderr naming the
 * option, its value and the cause, exit code 1, no stack trace.
 */
let data: Awaited<ReturnType<typeof tempDataDir>>;
let readOnly: string | undefined;
const isRoot = process.getuid?.() === 0;

beforeAll(async () => {
  data = await tempDataDir();
  // A read-only mount: root ignores file modes, not a read-only mount (unmounted in afterAll).
  if (isRoot) {
    readOnly = path.join(data.dir, 'read-only');
    mkdirSync(readOnly);
    execFileSync('mount', ['--bind', readOnly, readOnly]);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly]);
  }
});

afterAll(async () => {
  if (readOnly) execFileSync('umount', [readOnly]);
  await data.remove();
});

/** Starts the mirror as main.ts runs it; its stderr and exit code (or what it did instead, after 20 s). */
function start(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ stderr: string; code: number | null }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', '--upstream', 'http://127.0.0.1:9', '--log-level', 'warn', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  // A process that hangs (or serves) is killed: it shows as a null exit code and what it printed.
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ stderr, code });
    }),
  );
}

function listening(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

it('a port another process listens on: one line naming --listen', async () => {
  const other = await listening();
  const { port } = other.address() as { port: number };
  try {
    const result = await start(['--listen', `127.0.0.1:${port}`, '--data', path.join(data.dir, 'a')]);
    expect(result).toEqual({
      stderr: `hubcache: --listen 127.0.0.1:${port}: address already in use (another process listens there)\n`,
      code: 1,
    });
  } finally {
    other.close();
  }
});

it('a missing TLS certificate: one line naming --tls-cert', async () => {
  const cert = path.join(data.dir, 'missing.crt');
  const key = path.join(data.dir, 'missing.key');
  const result = await start([
    '--listen',
    '127.0.0.1:0',
    '--data',
    path.join(data.dir, 'b'),
    '--tls-cert',
    cert,
    '--tls-key',
    key,
  ]);
  expect(result).toEqual({
    stderr: `hubcache: --tls-cert ${cert}: no such file or directory (ENOENT)\n`,
    code: 1,
  });
});

it('a missing TLS key (the certificate is there): one line naming --tls-key', async () => {
  const dir = path.join(data.dir, 'tls');
  mkdirSync(dir);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k.pem')].concat([
      '-out',
      path.join(dir, 'c.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
    ]),
    { stdio: 'ignore' },
  );
  const key = path.join(dir, 'missing.key');
  const result = await start([
    '--listen',
    '127.0.0.1:0',
    '--data',
    path.join(data.dir, 'c'),
    '--tls-cert',
    path.join(dir, 'c.pem'),
    '--tls-key',
    key,
  ]);
  expect(result).toEqual({
    stderr: `hubcache: --tls-key ${key}: no such file or directory (ENOENT)\n`,
    code: 1,
  });
});

it('a missing htpasswd file: one line naming --htpasswd', async () => {
  const file = path.join(data.dir, 'missing.htpasswd');
  const result = await start([
    '--listen',
    '127.0.0.1:0',
    '--data',
    path.join(data.dir, 'd'),
    '--htpasswd',
    file,
  ]);
  expect(result).toEqual({
    stderr: `hubcache: --htpasswd ${file}: no such file or directory (ENOENT)\n`,
    code: 1,
  });
});

it('a data folder under a regular file: one line naming --data (not a stack from the blob store)', async () => {
  const file = path.join(data.dir, 'a-file');
  writeFileSync(file, 'not a folder');
  const dir = path.join(file, 'cache');
  const result = await start(['--listen', '127.0.0.1:0', '--data', dir]);
  expect(result).toEqual({
    stderr: `hubcache: --data ${dir}: cannot create it: a part of the path is a file, not a directory (ENOTDIR)\n`,
    code: 1,
  });
});

it.runIf(isRoot)('a data folder on a read-only mount: EROFS, not a misleading ENOENT', async () => {
  const inside = path.join(readOnly as string, 'cache');
  expect(await start(['--listen', '127.0.0.1:0', '--data', inside])).toEqual({
    stderr: `hubcache: --data ${inside}: cannot create it: read-only file system (EROFS)\n`,
    code: 1,
  });
  // The folder itself exists: the write probe finds the mount read-only.
  expect(await start(['--listen', '127.0.0.1:0', '--data', readOnly as string])).toEqual({
    stderr: `hubcache: --data ${readOnly}: cannot write in it: read-only file system (EROFS)\n`,
    code: 1,
  });
});

it('--data /proc/x: one line at once (it hung with no output: recursive mkdir loops on procfs)', async () => {
  expect(await start(['--listen', '127.0.0.1:0', '--data', '/proc/x'])).toEqual({
    stderr:
      'hubcache: --data /proc/x: cannot create it: its parent refuses new folders (ENOENT, as /proc and /sys do)\n',
    code: 1,
  });
});

it('a misnamed S3 bucket: one line naming --s3-bucket (it used to start, say ready, and warn on every miss)', async () => {
  const s3 = await startFakeS3();
  try {
    const result = await start(
      ['--listen', '127.0.0.1:0', '--data', path.join(data.dir, 'bucket')].concat([
        '--s3-bucket',
        'cahce',
        '--s3-endpoint',
        s3.url,
        '--s3-path-style',
      ]),
      { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
    );
    // On Node 20 (past its end of life) the AWS SDK warns about it first: Node's own warning, not ours.
    const ours =
      Number(process.versions.node.split('.')[0]) < 22
        ? result.stderr.replace(
            /^\(node:\d+\) Warning: NodeVersionSupportWarning[\s\S]*?trace-warnings[^\n]*\n/,
            '',
          )
        : result.stderr;
    expect({ ...result, stderr: ours }).toEqual({
      stderr: 'hubcache: --s3-bucket cahce: the bucket does not exist (NoSuchBucket)\n',
      code: 1,
    });
  } finally {
    await s3.close();
  }
});

it('a fleet secret shorter than 32 bytes: one line naming --fleet-secret-file', async () => {
  const s3 = await startFakeS3();
  const secret = path.join(data.dir, 'fleet.secret');
  writeFileSync(secret, 'too short\n', { mode: 0o600 });
  try {
    const result = await start(
      ['--listen', '127.0.0.1:0', '--data', path.join(data.dir, 'fleet')].concat([
        '--s3-bucket',
        'cache',
        '--s3-endpoint',
        s3.url,
        '--s3-path-style',
        '--fleet-secret-file',
        secret,
      ]),
      { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
    );
    expect(result).toEqual({
      stderr: `hubcache: --fleet-secret-file ${secret}: a secret shorter than 32 bytes (make one: openssl rand -base64 48)\n`,
      code: 1,
    });
  } finally {
    await s3.close();
  }
});
