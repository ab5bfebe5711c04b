import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { type Dockerd, startDockerd } from '../fixtures/dockerd.js';
import { fleetReplicaArgs } from '../fixtures/fleet.js';
import { type Descriptor, ImageLayout } from '../fixtures/image-layout.js';
import { type NginxLb, startNginxLb } from '../fixtures/nginx-lb.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { deltaSum, mirrorRequestCounts, requestDelta } from '../fixtures/request-counts.js';
import { requireProgram } from '../fixtures/require-program.js';
import { inspectRaw, pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';
import { freePort } from '../fixtures/upstream-process.js';

const haveFleet = Boolean(
  requireProgram('ceph-mon') &&
    requireProgram('ceph-osd') &&
    requireProgram('radosgw') &&
    requireProgram('redis-server') &&
    requireProgram('nginx'),
);
const haveDocker = Boolean(
  requireProgram('dockerd') && requireProgram('containerd') && requireProgram('runc'),
);
const BUCKET = 'hubcache';
/** What a manifest GET accepts (the reference registry's habit: every real client sends them all). */
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const MiB = 1024 * 1024;
const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

interface Replica {
  url: string;
  child: ChildProcess;
  exited: Promise<void>;
}

/** What a pull must bring: the manifest's config and layers, by digest (and the manifest's, when known). */
interface PushedImage {
  ref: string;
  blobs: Descriptor[];
  manifest?: string;
}

/**
 * Issue 19, a fleet that behaves like one registry: three mirror processes sharing one S3 bucket (a
 * real Ceph RGW), one Redis and one fleet secret, behind Debian's nginx balancing round robin (no
 * stickiness), in front of the real token-auth docker-registry behind a counting front. A client
 * pulls and pushes through nginx as to one registry although its requests land on different
 * replicas: a push's PATCH and PUT that reach a replica other than the one that took its POST are
 * forwarded to that one over the peer listeners (--peer-listen).
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
  /** team/app:1 and team/app:2, pushed through nginx by the tests (they share their first layer). */
  let appLayout: ImageLayout;
  const app: Record<'1' | '2', PushedImage> = {
    '1': { ref: 'team/app:1', blobs: [] },
    '2': { ref: 'team/app:2', blobs: [] },
  };
  /** The one file every replica reads its fleet secret from. */
  let secretFile = '';

  async function startReplica(): Promise<Replica> {
    const port = await freePort();
    const peerPort = await freePort();
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
        // What deploy/ ships (test/unit/deploy.test.ts).
        ...fleetReplicaArgs({
          bucket: BUCKET,
          s3Endpoint: rgw.endpoint,
          s3Region: rgw.region,
          redis: redis.url,
          secretFile,
          peerListen: `127.0.0.1:${peerPort}`,
        }),
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

  /** kill -9 of the second replica by its PID (once for the suite: later calls find it dead). */
  async function killVictim(): Promise<Replica> {
    const victim = replicas[1] as Replica;
    if (victim.child.exitCode === null && victim.child.signalCode === null) {
      process.kill(victim.child.pid as number, 'SIGKILL');
    }
    await victim.exited;
    return victim;
  }

  /** nginx's error log shows a connection to `victim` refused (and so retried on another replica). */
  function expectRefusedBy(victim: Replica): void {
    expect(lb.errorLog()).toMatch(
      new RegExp(
        `connect\\(\\) failed \\(111: Connection refused\\).*upstream: "http://${new URL(victim.url).host}/`,
      ),
    );
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
    if (image.manifest) expect(sha256(readFileSync(path.join(out, 'manifest.json')))).toBe(image.manifest);
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

  /**
   * Builds team/app:1 (three layers: ~300 KiB, 1 MiB, 3 MiB of incompressible bytes, so each is a
   * request body of its own size) and team/app:2 (app:1's first layer and a new 2 MiB one) in one
   * layout, tagged `1` and `2`.
   */
  async function buildApp(): Promise<void> {
    appLayout = new ImageLayout(path.join(bed.work, 'layout-app'));
    const base = await appLayout.layer([
      { name: 'etc/app-base', content: 'team app base\n' },
      { name: 'app/base.bin', random: 300 * 1024 },
    ]);
    const lib = await appLayout.layer([{ name: 'app/lib.bin', random: 1024 * 1024 }]);
    const code1 = await appLayout.layer([{ name: 'app/code-1.bin', random: 3 * 1024 * 1024 }]);
    const code2 = await appLayout.layer([{ name: 'app/code-2.bin', random: 2 * 1024 * 1024 }]);
    for (const [tag, layers] of [
      ['1', [base, lib, code1]],
      ['2', [base, code2]],
    ] as const) {
      const image = appLayout.image([...layers]);
      appLayout.tag(tag, image.manifest);
      app[tag].blobs = [image.config, ...layers];
      app[tag].manifest = image.manifest.digest;
    }
  }

  /** skopeo copy oci:LAYOUT:TAG docker://NGINX/team/app:TAG (plain HTTP, no credentials: loopback). */
  async function pushThroughLb(tag: '1' | '2'): Promise<void> {
    await pushLayout(appLayout.dir, tag, `${new URL(lb.url).host}/${app[tag].ref}`, { env: bed.env });
  }

  /** A manifest GET (full Accept) on `base`: status, Docker-Content-Digest, and the body's digest. */
  async function manifestOn(base: string, name: string, ref: string) {
    const res = await fetch(`${base}/v2/${name}/manifests/${ref}`, {
      headers: { accept: MANIFEST_ACCEPT },
      signal: AbortSignal.timeout(10_000),
    });
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, header: res.headers.get('docker-content-digest'), body: sha256(body) };
  }

  /** A GET of `base` + `p` answered 200 with JSON (catalog, tags list). */
  async function jsonOn(base: string, p: string): Promise<unknown> {
    const res = await fetch(`${base}${p}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    expect(res.status, `GET ${base}${p}: ${text}`).toBe(200);
    return JSON.parse(text);
  }

  /** Every blob of `image` GET by digest from `base`: 200 and bytes whose sha256 is the digest. */
  async function expectBlobsOn(base: string, image: PushedImage): Promise<void> {
    for (const blob of image.blobs) {
      const res = await fetch(`${base}/v2/team/app/blobs/${blob.digest}`, {
        signal: AbortSignal.timeout(30_000),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(res.status, `${base} ${blob.digest}`).toBe(200);
      expect(sha256(bytes), `${base} ${blob.digest}`).toBe(blob.digest);
    }
  }

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 1 });
    await pushImage('a', 3);
    await pushImage('b', 2);
    await buildApp();
    // 48 random base64 characters, readable by this user only (the mirror warns otherwise).
    secretFile = path.join(bed.work, 'fleet.secret');
    writeFileSync(secretFile, `${randomBytes(36).toString('base64')}\n`, { mode: 0o600 });
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

  it('skopeo pushes team/app:1 through nginx (the POST, PATCH and PUT of an upload land on different replicas): pulled back with the right digests, and every replica answers the same manifest, tags and catalog', async () => {
    const before = await Promise.all(replicas.map(answered));
    const countsBefore = await Promise.all(replicas.map((r) => mirrorRequestCounts(r.url)));
    await pushThroughLb('1');
    const after = await Promise.all(replicas.map(answered));
    // Round robin: every replica answered part of the push.
    for (const [i, n] of after.entries()) expect(n - (before[i] ?? 0), `replica ${i}`).toBeGreaterThan(0);
    // And an upload's PATCH or PUT reached a replica other than the one that took its POST: that
    // replica forwarded it to the owner (fleet-uploads.ts counts it with the outcome `hosted`; an
    // upload request answered by its owner has none).
    let forwarded = 0;
    for (const [i, r] of replicas.entries()) {
      const delta = requestDelta(countsBefore[i] ?? new Map(), await mirrorRequestCounts(r.url));
      forwarded += deltaSum(delta, 'upload PATCH hosted 202') + deltaSum(delta, 'upload PUT hosted 201');
    }
    expect(forwarded).toBeGreaterThan(0);

    // Back through nginx: the manifest skopeo pushed, byte for byte, and every blob; nothing of a
    // hosted repository comes from the upstream.
    const fetched = await pullThroughLb(app['1'], path.join(bed.work, 'pull-app-1'));
    expect(Object.fromEntries(fetched)).toEqual({});
    expect(sha256(await inspectRaw(`${new URL(lb.url).host}/team/app:1`, { env: bed.env }))).toBe(
      app['1'].manifest,
    );
    // Each replica on its own, whichever took the manifest PUT: the same manifest at once.
    for (const r of replicas) {
      expect(await manifestOn(r.url, 'team/app', '1'), r.url).toEqual({
        status: 200,
        header: app['1'].manifest,
        body: app['1'].manifest,
      });
    }
    const tags = await Promise.all(replicas.map((r) => jsonOn(r.url, '/v2/team/app/tags/list')));
    for (const answer of tags) expect(answer).toEqual({ name: 'team/app', tags: ['1'] });
    // As many catalogs through nginx as there are replicas: round robin asks each once.
    const catalogs = [];
    for (let i = 0; i < replicas.length; i++) catalogs.push(await jsonOn(lb.url, '/v2/_catalog'));
    catalogs.push(...(await Promise.all(replicas.map((r) => jsonOn(r.url, '/v2/_catalog')))));
    expect((catalogs[0] as { repositories: string[] }).repositories).toContain('team/app');
    for (const answer of catalogs) expect(answer).toEqual(catalogs[0]);
  });

  // Before the kill tests: all three replicas are alive, so round robin spreads dockerd's requests.
  it.skipIf(!haveDocker)(
    'dockerd pulls small:1 with nginx as its registry mirror, pushes it as team/docker:1 through nginx (uploads forwarded between replicas), and after docker rmi pulls it back with the digest it pushed; every replica serves that manifest',
    async () => {
      const lbHost = new URL(lb.url).host;
      const ref = `${lbHost}/team/docker:1`;
      // The fleet as dockerd's Docker Hub mirror; 127.0.0.0/8 registries are insecure (plain HTTP) by default.
      const dockerd: Dockerd = await startDockerd(lb.url, bed.env);
      try {
        const docker = (args: string[]) => dockerd.docker(args);
        await docker(['pull', 'small:1']);
        await docker(['tag', 'small:1', ref]);
        const countsBefore = await Promise.all(replicas.map((r) => mirrorRequestCounts(r.url)));
        const push = await docker(['push', ref]);
        const pushed = /1: digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(push.stdout)?.[1];
        expect(pushed, push.stdout).toBeDefined();
        // The push's uploads crossed replicas: a PATCH or PUT reached a replica that did not take its
        // POST, which forwarded it to the session's owner (`hosted` outcome, fleet-uploads.ts).
        const deltas = [];
        for (const [i, r] of replicas.entries()) {
          deltas.push(requestDelta(countsBefore[i] ?? new Map(), await mirrorRequestCounts(r.url)));
        }
        const forwarded = deltas.reduce(
          (n, d) => n + deltaSum(d, 'upload PATCH hosted 202') + deltaSum(d, 'upload PUT hosted 201'),
          0,
        );
        expect(forwarded, JSON.stringify(deltas)).toBeGreaterThan(0);

        // Gone from dockerd (both names: small:1 would otherwise keep the layers), then back through nginx.
        await docker(['rmi', ref, 'small:1']);
        expect((await docker(['images', '-q'])).stdout.trim()).toBe('');
        await docker(['pull', ref]);
        const repoDigest = (
          await docker(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])
        ).stdout.trim();
        expect(repoDigest).toBe(`${lbHost}/team/docker@${pushed}`);

        // Each replica on its own answers the manifest dockerd pushed (Docker schema2), byte for byte.
        for (const r of replicas) {
          expect(await manifestOn(r.url, 'team/docker', '1'), r.url).toEqual({
            status: 200,
            header: pushed,
            body: pushed,
          });
        }
      } finally {
        await dockerd.stop();
      }
    },
    300_000,
  );

  it('a replica killed with SIGKILL between two pushes: team/app:2 still pushes through nginx; both tags are served by the survivors and through nginx, and no blob of team/app:1 is lost', async () => {
    const victim = await killVictim();
    const survivors = replicas.filter((r) => r !== victim);
    await pushThroughLb('2');
    expectRefusedBy(victim);

    for (const base of [...survivors.map((r) => r.url), lb.url]) {
      for (const tag of ['1', '2'] as const) {
        expect(await manifestOn(base, 'team/app', tag), `${base} team/app:${tag}`).toEqual({
          status: 200,
          header: app[tag].manifest,
          body: app[tag].manifest,
        });
      }
      expect(await jsonOn(base, '/v2/team/app/tags/list'), base).toEqual({
        name: 'team/app',
        tags: ['1', '2'],
      });
      await expectBlobsOn(base, app['1']);
      await expectBlobsOn(base, app['2']);
    }
    for (const tag of ['1', '2'] as const) {
      const fetched = await pullThroughLb(app[tag], path.join(bed.work, `pull-app-${tag}-after-kill`));
      expect(Object.fromEntries(fetched)).toEqual({});
    }
  });

  it('a replica killed with SIGKILL between two pulls: the next pull through nginx still succeeds', async () => {
    const victim = await killVictim();
    const fetched = await pullThroughLb(images.b, path.join(bed.work, 'pull-b'));
    expect(Object.fromEntries(fetched)).toEqual(Object.fromEntries(images.b.blobs.map((b) => [b.digest, 1])));
    // nginx did try the dead replica (round robin reaches it within three requests) and retried
    // elsewhere: the refused connection is in its error log (this pull's, or the push's before it
    // when that was less than fail_timeout ago: nginx leaves a failed server alone for 5 s).
    expectRefusedBy(victim);
  });

  it("kill -9 of an upload's owner between two PATCHes: the rest of the upload through nginx completes on the survivors with the right digest", async () => {
    const owner = replicas[0] as Replica;
    const blob = randomBytes(3 * 1024 * 1024);
    const digest = sha256(blob);
    const send = async (url: string, method: string, body?: Buffer, headers: Record<string, string> = {}) => {
      const res = await fetch(url, {
        method,
        headers,
        ...(body ? { body } : {}),
        signal: AbortSignal.timeout(60_000),
      });
      return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
    };
    const chunk = (from: number, to: number) => ({
      'content-type': 'application/octet-stream',
      'content-range': `${from}-${to - 1}`,
    });
    // The session is opened on the replica about to die, and takes its first chunk there.
    const started = await send(`${owner.url}/v2/team/upload/blobs/uploads/`, 'POST');
    expect(started.status).toBe(202);
    const location = started.headers.get('location') as string;
    const first = await send(`${owner.url}${location}`, 'PATCH', blob.subarray(0, MiB), chunk(0, MiB));
    expect(first.status).toBe(202);
    process.kill(owner.child.pid as number, 'SIGKILL');
    await owner.exited;
    // The rest through the load balancer: whichever survivor gets it takes the session over.
    const second = await send(
      `${lb.url}${location}`,
      'PATCH',
      blob.subarray(MiB, 2 * MiB),
      chunk(MiB, 2 * MiB),
    );
    expect([second.status, second.headers.get('range')]).toEqual([202, `0-${2 * MiB - 1}`]);
    const last = await send(
      `${lb.url}${location}?digest=${digest}`,
      'PUT',
      blob.subarray(2 * MiB),
      chunk(2 * MiB, 3 * MiB),
    );
    expect(last.status).toBe(201);
    for (const r of replicas.filter(
      (x) => x !== owner && x.child.exitCode === null && x.child.signalCode === null,
    )) {
      const got = await send(`${r.url}/v2/team/upload/blobs/${digest}`, 'GET');
      expect(sha256(got.body)).toBe(digest);
    }
  });
});
