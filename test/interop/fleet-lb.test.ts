import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { type Descriptor, ImageLayout } from '../fixtures/image-layout.js';
import { type NginxLb, startNginxLb } from '../fixtures/nginx-lb.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';
import { freePort } from '../fixtures/upstream-process.js';

const haveFleet = Boolean(
  requireProgram('ceph-mon') &&
    requireProgram('ceph-osd') &&
    requireProgram('radosgw') &&
    requireProgram('redis-server') &&
    requireProgram('nginx'),
);
const BUCKET = 'hubcache';

interface Replica {
  url: string;
  child: ChildProcess;
  exited: Promise<void>;
}

/** What a pull must bring: the manifest's config and layers, by digest. */
interface PushedImage {
  ref: string;
  blobs: Descriptor[];
}

/**
 * Issue 19, a fleet that behaves like one registry: three mirror processes sharing one S3 bucket (a
 * real Ceph RGW) and one Redis, behind Debian's nginx balancing round robin (no stickiness), in
 * front of the real token-auth docker-registry behind a counting front. A client pulls through
 * nginx as from one registry although its requests land on different replicas.
 */
describe.skipIf(!bedPrograms() || !haveFleet)('a fleet behind a round-robin load balancer', () => {
  let bed: TestBed;
  let rgw: Rgw;
  let redis: Redis;
  let lb: NginxLb;
  let lbDir = '';
  const replicas: Replica[] = [];
  const images: Record<'a' | 'b', PushedImage> = {
    a: { ref: 'library/fleet-a:1', blobs: [] },
    b: { ref: 'library/fleet-b:1', blobs: [] },
  };

  async function startReplica(): Promise<Replica> {
    const port = await freePort();
    const data = mkdtempSync(path.join(bed.work, 'replica-'));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/main.ts',
        '--listen',
        `127.0.0.1:${port}`,
        '--upstream',
        bed.front.url,
        '--data',
        data,
        '--log-level',
        process.env.TEST_LOG ? 'info' : 'warn',
        '--s3-bucket',
        BUCKET,
        '--s3-endpoint',
        rgw.endpoint,
        '--s3-path-style',
        '--s3-region',
        rgw.region,
        '--redis',
        redis.url,
      ],
      {
        stdio: process.env.TEST_LOG ? 'inherit' : 'ignore',
        env: {
          ...bed.env,
          AWS_ACCESS_KEY_ID: rgw.accessKeyId,
          AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
          AWS_CA_BUNDLE: undefined,
        },
      },
    );
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const replica = { url: `http://127.0.0.1:${port}`, child, exited };
    replicas.push(replica);
    for (let i = 0; i < 300; i++) {
      const up = await fetch(`${replica.url}/v2/`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (up) return replica;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`replica on port ${port} did not start`);
  }

  /** Signals the replica's PID and waits (bounded) for it to exit. */
  async function stopReplica(r: Replica, signal: NodeJS.Signals): Promise<void> {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return;
    r.child.kill(signal);
    const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
    await r.exited;
    clearTimeout(timer);
  }

  /** Registry API requests a replica has answered (the sum of its hubcache_requests_total). */
  async function answered(r: Replica): Promise<number> {
    const text = await fetch(`${r.url}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((res) =>
      res.text(),
    );
    let n = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('hubcache_requests_total{')) n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return n;
  }

  /** Builds an image of cold layers (content no other suite pushes) and pushes it upstream. */
  async function pushImage(name: 'a' | 'b', layerCount: number): Promise<void> {
    const layout = new ImageLayout(path.join(bed.work, `layout-${name}`));
    const layers = [];
    for (let i = 0; i < layerCount; i++) {
      layers.push(
        await layout.layer([
          { name: `etc/fleet-${name}-${i}`, content: `fleet ${name} layer ${i}\n` },
          { name: `fleet-${name}-${i}.bin`, random: 256 * 1024 },
        ]),
      );
    }
    const image = layout.image(layers);
    layout.tag(name, image.manifest);
    images[name].blobs = [image.config, ...layers];
    await pushLayout(layout.dir, name, `${new URL(bed.registry.url).host}/${images[name].ref}`, {
      env: bed.env,
      creds: PUSHER,
    });
  }

  /**
   * Pulls `image` with skopeo through nginx into a dir: layout and checks that every blob the
   * manifest names came, with its digest; returns what reached the upstream during the pull.
   */
  async function pullThroughLb(image: PushedImage, out: string): Promise<Map<string, number>> {
    const before = bed.front.requests.length;
    await pullImage(`${new URL(lb.url).host}/${image.ref}`, out, { env: bed.env });
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    expect([manifest.config.digest, ...manifest.layers.map((l) => l.digest)]).toEqual(
      image.blobs.map((b) => b.digest),
    );
    const files = readdirSync(out).filter((f) => /^[a-f0-9]{64}$/.test(f));
    expect(files.sort()).toEqual(image.blobs.map((b) => b.digest.slice('sha256:'.length)).sort());
    for (const file of files) {
      const hex = createHash('sha256')
        .update(readFileSync(path.join(out, file)))
        .digest('hex');
      expect(hex, `${image.ref}: ${file}`).toBe(file);
    }
    // Successful blob GETs only: a fresh token scope's first try is a 401.
    const fetched = new Map<string, number>();
    for (const r of bed.front.requests.slice(before)) {
      if (r.method !== 'GET' || r.status !== 200 || !r.path.includes('/blobs/')) continue;
      const digest = r.path.slice(r.path.lastIndexOf('/') + 1);
      fetched.set(digest, (fetched.get(digest) ?? 0) + 1);
    }
    return fetched;
  }

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 1 });
    await pushImage('a', 3);
    await pushImage('b', 2);
    [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
    await rgw.createBucket(BUCKET);
    for (let i = 0; i < 3; i++) await startReplica();
    lbDir = mkdtempSync(path.join(bed.work, 'nginx-'));
    lb = await startNginxLb(
      replicas.map((r) => r.url),
      lbDir,
    );
  }, 600_000);

  afterAll(async () => {
    await lb?.stop();
    for (const r of replicas) await stopReplica(r, 'SIGTERM').catch(() => {});
    await redis?.stop();
    await rgw?.stop();
    if (lbDir) rmSync(lbDir, { recursive: true, force: true });
    await bed?.stop();
  });

  afterEach(() => {
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('skopeo pulls through nginx with the right digests; the requests spread over all three replicas, each blob fetched upstream once for the fleet', async () => {
    const before = await Promise.all(replicas.map(answered));
    const fetched = await pullThroughLb(images.a, path.join(bed.work, 'pull-a'));
    const after = await Promise.all(replicas.map(answered));
    // Round robin: every replica answered part of the pull.
    for (const [i, n] of after.entries()) expect(n - (before[i] ?? 0), `replica ${i}`).toBeGreaterThan(0);
    // Whichever replica a blob's request landed on, the upstream saw it once.
    expect(Object.fromEntries(fetched)).toEqual(Object.fromEntries(images.a.blobs.map((b) => [b.digest, 1])));
  });

  it('GET /v2/_catalog gives the same answer through nginx as on each replica', async () => {
    const catalog = async (url: string) => {
      const res = await fetch(`${url}/v2/_catalog`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      return (await res.json()) as { repositories: string[] };
    };
    // As many through nginx as there are replicas: round robin asks each once.
    const throughLb = [];
    for (let i = 0; i < replicas.length; i++) throughLb.push(await catalog(lb.url));
    const direct = await Promise.all(replicas.map((r) => catalog(r.url)));
    const first = throughLb[0];
    expect(first?.repositories).toContain('library/fleet-a');
    for (const answer of [...throughLb, ...direct]) expect(answer).toEqual(first);
  });

  it('a replica killed with SIGKILL between two pulls: the next pull through nginx still succeeds', async () => {
    const victim = replicas[1] as Replica;
    const victimPid = victim.child.pid as number;
    process.kill(victimPid, 'SIGKILL');
    await victim.exited;
    const fetched = await pullThroughLb(images.b, path.join(bed.work, 'pull-b'));
    expect(Object.fromEntries(fetched)).toEqual(Object.fromEntries(images.b.blobs.map((b) => [b.digest, 1])));
    // nginx did try the dead replica (round robin reaches it within three requests) and retried
    // elsewhere: the refused connection is in its error log.
    expect(lb.errorLog()).toMatch(
      new RegExp(
        `connect\\(\\) failed \\(111: Connection refused\\).*upstream: "http://${new URL(victim.url).host}/`,
      ),
    );
  });
});
