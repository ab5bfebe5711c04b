import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/fixtures/upstream-process.js';
import { nodeFlagsOf } from './node-flags.js';

export interface ServerProcess {
  url: string;
  pid: number;
  /** Resident memory now, bytes. */
  rss(): number;
  stop(): Promise<void>;
}

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`${url}: the server exited (${child.exitCode})`);
    if (
      await fetch(url).then(
        (r) => r.status < 500,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not come up`);
}

function processOf(child: ChildProcess, url: string): ServerProcess {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url,
    pid: child.pid ?? 0,
    rss: () => {
      try {
        return (
          Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
        );
      } catch {
        return 0;
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * The built mirror (npm run build) as its own process, logging at info as by default, to /dev/null
 * (or appended to `options.logFile`: a bench's --logs, to see why a figure is what it is).
 * `BENCH_NODE_FLAGS` adds Node flags to its own, to look inside a figure (`--cpu-prof
 * --cpu-prof-dir=DIR`, `--trace-gc`). `options.checkout`: another checkout's build (its dist/ and
 * its Node flags), to compare builds; this one by default.
 */
export async function startMirrorProcess(
  upstream: string,
  dataDir: string,
  extra: string[] = [],
  options: { logFile?: string; port?: number; checkout?: string } = {},
): Promise<ServerProcess> {
  const checkout = options.checkout ?? '.';
  const port = options.port ?? (await freePort());
  const log = options.logFile === undefined ? undefined : openSync(options.logFile, 'a');
  const child = spawn(
    process.execPath,
    [
      ...nodeFlagsOf(checkout),
      ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      'dist/main.js',
      '--listen',
      `127.0.0.1:${port}`,
      '--upstream',
      upstream,
      '--data',
      dataDir,
      ...extra,
    ],
    { cwd: path.resolve(checkout), stdio: log === undefined ? 'ignore' : ['ignore', log, log] },
  );
  // The child has its own copy of the descriptor.
  if (log !== undefined) closeSync(log);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(`${url}/v2/`, child);
  return processOf(child, url);
}

/**
 * nginx serving the same blob files as static files: the physical limit of this disk and loopback
 * (sendfile, one worker). Blob URLs map to `<root>/blobs/<hex>`, manifest URLs to
 * `<root>/manifests/<name>/<reference>`.
 */
export async function startNginx(root: string): Promise<ServerProcess> {
  const port = await freePort();
  const prefix = path.join(root, '.nginx');
  mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location ~ ^/v2/.+/blobs/sha256:([a-f0-9]+)$ { default_type application/octet-stream; try_files /blobs/$1 =404; }
    location ~ ^/v2/(.+)/manifests/([^/]+)$ { default_type application/vnd.oci.image.manifest.v1+json; try_files /manifests/$1/$2 =404; }
    location = /v2/ { return 200 '{}'; }
  }
}
`,
  );
  const child = spawn('nginx', ['-c', conf, '-p', prefix], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(`${url}/v2/`, child);
  return processOf(child, url);
}

/** What the bare server holds: a URL path → the file with its bytes, media type and digest. */
export type BareObjects = Record<string, { file: string; type: string; digest: string }>;

/** bench/lib/bare-server.ts as its own process (the runtime's ceiling on the hit path). */
export async function startBareNode(objects: BareObjects, workDir: string): Promise<ServerProcess> {
  const port = await freePort();
  const mapFile = path.join(workDir, 'bare-objects.json');
  writeFileSync(mapFile, JSON.stringify(objects));
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bare-server.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(port), mapFile], {
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(`${url}/v2/`, child);
  return processOf(child, url);
}
