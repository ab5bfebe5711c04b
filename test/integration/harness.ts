import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { type Dispatcher, request } from 'undici';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import type { Logger } from '../../src/observe/logger.js';
import type { FakeRegistry } from './fake-registry.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export async function get(
  url: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'HEAD' = 'GET',
): Promise<Reply> {
  const res = await request(url, { method, headers });
  const chunks: Buffer[] = [];
  for await (const chunk of res.body) chunks.push(chunk as Buffer);
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
}

export async function tempDataDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'hubcache-test-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** `log`: where the mirror logs (a test reading its lines); by default as its --log-level says. */
export async function mirrorFor(
  upstream: FakeRegistry | string,
  dataDir: string,
  extraArgs: string[] = [],
  log?: Logger,
): Promise<RunningMirror> {
  const url = typeof upstream === 'string' ? upstream : upstream.url;
  return startMirror(
    configWith({
      upstream: url,
      dataDir,
      listen: '127.0.0.1:0',
      extraArgs: [
        ...(process.env.TEST_LOG ? ['--log-level', 'debug'] : []),
        // The fake upstream's "CDN" answers as localhost.
        '--upstream-redirect-host',
        'localhost',
        ...extraArgs,
      ],
    }),
    ...(log ? [log] : []),
  );
}

/** A one-layer image in the fake upstream; returns its digests and the layer bytes. */
export function addImage(registry: FakeRegistry, repository: string, tag: string, layerSize = 1024) {
  const layer = randomBytes(layerSize);
  const layerDigest = registry.addBlob(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  );
  const configDigest = registry.addBlob(config);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: configDigest,
      size: config.length,
    },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
    ],
  };
  const manifestDigest = registry.addManifest(repository, tag, manifest, OCI_MANIFEST);
  return {
    layer,
    layerDigest,
    configDigest,
    manifestDigest,
    manifestBytes: Buffer.from(JSON.stringify(manifest)),
  };
}

/** A promise the test opens by hand: holds a fault-injected upstream body mid-way. */
export function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** An OCI image manifest over `config` and `layers`, as a pushing client writes it. */
export function imageManifest(config: Buffer, layers: Buffer[], extra: object = {}): Buffer {
  const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: digestOf(config),
        size: config.length,
      },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: digestOf(l),
        size: l.length,
      })),
      ...extra,
    }),
  );
}

/** Any request, its whole answer read (`get` for the rest: pushes, deletes, uploads). */
export async function send(
  url: string,
  method: Dispatcher.HttpMethod,
  body?: Buffer | string | Readable,
  headers: Record<string, string> = {},
  dispatcher?: Dispatcher,
): Promise<Reply> {
  const res = await request(url, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    ...(dispatcher ? { dispatcher } : {}),
  });
  const chunks: Buffer[] = [];
  for await (const chunk of res.body) chunks.push(chunk as Buffer);
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
}

/** The spec error code of an error answer. */
export const errorCode = (r: { body: Buffer }) =>
  (JSON.parse(r.body.toString()) as { errors: { code: string }[] }).errors[0]?.code;

/** Pushes a blob in one request (POST ?digest=), as skopeo does for small blobs; throws unless 201. */
export async function pushBlob(base: string, name: string, bytes: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const res = await send(`${base}/v2/${name}/blobs/uploads/?digest=${digest}`, 'POST', bytes, {
    'content-type': 'application/octet-stream',
  });
  if (res.status !== 201 || res.headers.location !== `/v2/${name}/blobs/${digest}`) {
    throw new Error(`blob push answered ${res.status} ${res.headers.location}: ${res.body.toString()}`);
  }
  return digest;
}

/**
 * The mirror as its own process (what kill -9 and a peak-RSS reading need), started as `npm start`
 * would, via tsx, on 127.0.0.1:`port`; resolves once /v2/ answers.
 */
export async function spawnMirror(port: number, args: string[]): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', '--listen', `127.0.0.1:${port}`, ...args],
    { stdio: 'ignore' },
  );
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  try {
    // Starting through tsx takes seconds, many more while other suites load the machine.
    await waitFor(
      () => {
        if (exited) throw new Error('mirror process exited before it answered /v2/');
        return fetch(`http://127.0.0.1:${port}/v2/`).then(
          (r) => r.ok,
          () => false,
        );
      },
      'the mirror process to answer /v2/',
      { timeoutMs: 30_000, everyMs: 50 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return child;
}

/**
 * Waits for a condition the code under test reaches on its own, with nothing to await: another
 * process coming up or handling a signal, a background eviction, a publish to the bucket after a
 * fill committed. Checked every `everyMs`; throws naming `what` after `timeoutMs`. For fills, await
 * `mirror.settled()` instead; for a TTL or cool-down, move the clock (`vi.setSystemTime`).
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 5000, everyMs = 20 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
