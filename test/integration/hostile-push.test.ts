import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Agent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_UPSTREAM_FETCHES_PER_MANIFEST } from '../../src/hosted/head-promises.js';
import {
  MAX_UPLOAD_BYTES,
  MAX_UPLOAD_SESSIONS,
  MAX_UPLOAD_SESSIONS_PER_CLIENT,
} from '../../src/hosted/uploads.js';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  errorCode,
  get,
  mirrorFor,
  OCI_MANIFEST,
  pushBlob as pushBlobTo,
  type Reply,
  send,
  tempDataDir,
  waitFor,
} from './harness.js';

/**
 * Issue 13, the push side: every input from a client is hostile. Each test is an attack that
 * worked on d07d3e6 (the observation is in the commit that fixed it).
 */

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const code = errorCode;

const pushBlob = (name: string, bytes: Buffer) => pushBlobTo(base, name, bytes);

function manifestOf(config: { digest: string; size: number }, layers: { digest: string; size: number }[]) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    }),
  );
}

function putManifest(name: string, reference: string, manifest: Buffer): Promise<Reply> {
  return send(`${base}/v2/${name}/manifests/${reference}`, 'PUT', manifest, { 'content-type': OCI_MANIFEST });
}

const blobFile = (digest: string) =>
  path.join(data.dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of existsSync(dir) ? readdirSync(dir) : []) total += statSync(path.join(dir, name)).size;
  return total;
}

let hub: FakeRegistry;
let running: RunningMirror | undefined;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let base: string;

async function start(args: string[]): Promise<void> {
  await running?.close();
  running = await mirrorFor(hub, data.dir, args);
  base = running.url;
}

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await running?.close();
  running = undefined;
  await hub.close();
  await data.remove();
});

describe('upload sessions', () => {
  it('are capped per client address and in total (429 + Retry-After), hold no file descriptor between requests, and cached pulls and /readyz go on', async () => {
    await start([]);
    const img = addImage(hub, 'library/alpine', '3.20', 4096);
    expect((await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    await (running as RunningMirror).mirror.settled(); // the fill is renamed into place after the last byte
    const server = (running as RunningMirror).server;
    const connections = () => new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)));
    const fdsBefore = readdirSync('/proc/self/fd').length;

    // 12 client addresses (all of 127/8 is loopback on Linux), each trying 20 more sessions than its cap.
    const addresses = Array.from({ length: 12 }, (_, i) => `127.0.0.${i + 1}`);
    const perAddress = MAX_UPLOAD_SESSIONS_PER_CLIENT + 20;
    const agents = addresses.map((localAddress) => new Agent({ localAddress, connections: 4 }));
    const outcomes = await Promise.all(
      agents.map(async (agent) => {
        const results: Reply[] = [];
        const lanes = Array.from({ length: 4 }, async () => {
          while (results.length < perAddress) {
            results.push(await send(`${base}/v2/flood/app/blobs/uploads/`, 'POST', undefined, {}, agent));
          }
        });
        await Promise.all(lanes);
        return results;
      }),
    );
    const all = outcomes.flat();
    const accepted = all.filter((r) => r.status === 202);
    const refused = all.filter((r) => r.status !== 202);
    expect(accepted.length).toBe(MAX_UPLOAD_SESSIONS);
    for (const results of outcomes) {
      expect(results.filter((r) => r.status === 202).length).toBeLessThanOrEqual(
        MAX_UPLOAD_SESSIONS_PER_CLIENT,
      );
    }
    expect(refused.length).toBe(all.length - MAX_UPLOAD_SESSIONS);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(code(r)).toBe('TOOMANYREQUESTS');
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }

    // At the cap, the mirror still serves: a cached blob (no upstream) and readiness.
    const upstreamBefore = hub.requests.length;
    const hit = await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`);
    expect(hit.status).toBe(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hub.requests.length).toBe(upstreamBefore);
    expect((await get(`${base}/readyz`)).status).toBe(200);

    // A thousand sessions, and no file descriptor held for any of them (only sockets come and go).
    await Promise.all(agents.map((a) => a.close()));
    // Only this test's own client (the global dispatcher) stays connected: a connection or two.
    await waitFor(async () => (await connections()) <= 2, 'the flood connections to close');
    // (A margin for what else this process opens meanwhile: one fd per session would be 1,000 more.)
    expect(readdirSync('/proc/self/fd').length - fdsBefore).toBeLessThan(100);

    // A session ended frees its place.
    const mine = accepted.find((r) => r.headers.location)?.headers.location as string;
    expect((await send(`${base}${mine}`, 'DELETE')).status).toBe(204);
    const again = await send(`${base}/v2/flood/app/blobs/uploads/`, 'POST');
    expect(again.status).toBe(202);
  });

  it('a chunked PATCH is cut once the disk nears --min-free-space, and the upload stops growing', async () => {
    // Only 16 MiB may be written before the disk is "full".
    const s = await statfs(data.dir);
    const allowed = 16 * 1024 * 1024;
    await start(['--min-free-space', String(s.bavail * s.bsize - allowed)]);
    const session = await send(`${base}/v2/fill/disk/blobs/uploads/`, 'POST');
    expect(session.status).toBe(202);
    const location = session.headers.location as string;
    const total = 160 * 1024 * 1024;
    const chunk = randomBytes(1024 * 1024);
    // A stream: undici sends it chunked, with no Content-Length to check up front.
    async function* body() {
      for (let sent = 0; sent < total; sent += chunk.length) yield chunk;
    }
    const res = await send(`${base}${location}`, 'PATCH', Readable.from(body()));
    expect(res.status).toBe(503);
    expect(code(res)).toBe('UNAVAILABLE');
    expect(dirBytes(path.join(data.dir, 'uploads'))).toBeLessThan(4 * allowed);
  });

  it('an upload announcing more than the upload size limit is refused before a byte is read', async () => {
    await start([]);
    const session = await send(`${base}/v2/big/blob/blobs/uploads/`, 'POST');
    const location = session.headers.location as string;
    // undici would insist on sending the body it announces: the headers alone, by a raw client.
    const { connect } = await import('node:net');
    const url = new URL(base);
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(Number(url.port), url.hostname);
      let out = '';
      socket.setTimeout(5000, () => socket.destroy());
      socket.on('data', (d) => {
        out += d.toString('latin1');
        if (out.includes('\r\n\r\n') && out.includes('}')) socket.destroy();
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(out));
      socket.write(
        `PATCH ${location} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: ${MAX_UPLOAD_BYTES + 1}\r\n\r\n`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"BLOB_UPLOAD_INVALID"');
  });
});

describe('pushes and the size bound', () => {
  it('30 pushes of 1 MiB images with --max-size 4MiB all succeed, and each pulls back', async () => {
    await start(['--max-size', '4MiB']);
    const pushed: { name: string; digest: string; layer: Buffer }[] = [];
    for (let i = 0; i < 30; i++) {
      const name = `team/img${i}`;
      const config = Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', n: i }));
      const layer = randomBytes(1024 * 1024);
      await pushBlob(name, config);
      // The layer as docker sends it: a session, one chunk, the closing PUT.
      const session = await send(`${base}/v2/${name}/blobs/uploads/`, 'POST');
      const location = session.headers.location as string;
      expect((await send(`${base}${location}`, 'PATCH', layer)).status).toBe(202);
      const done = await send(`${base}${location}?digest=${sha(layer)}`, 'PUT');
      expect(done.status, done.body.toString()).toBe(201);
      const manifest = manifestOf({ digest: sha(config), size: config.length }, [
        { digest: sha(layer), size: layer.length },
      ]);
      const put = await putManifest(name, '1', manifest);
      expect(put.status, `push ${i}: ${put.body.toString()}`).toBe(201);
      pushed.push({ name, digest: sha(manifest), layer });
    }
    for (const p of pushed) {
      const m = await get(`${base}/v2/${p.name}/manifests/1`, { accept: OCI_MANIFEST });
      expect(m.status).toBe(200);
      expect(m.headers['docker-content-digest']).toBe(p.digest);
      expect((await get(`${base}/v2/${p.name}/blobs/${sha(p.layer)}`)).body.equals(p.layer)).toBe(true);
    }
  });
});

describe('manifest PUTs', () => {
  it('a manifest listing 500 unknown digests costs no upstream request; HEAD-confirmed ones at most the bound', async () => {
    await start([]);
    const config = Buffer.from('{"os":"linux"}');
    await pushBlob('attack/app', config);
    const layers = Array.from({ length: 499 }, () => ({ digest: sha(randomBytes(32)), size: 1000 }));
    const before = hub.requests.length;
    const put = await putManifest(
      'attack/app',
      '1',
      manifestOf({ digest: sha(config), size: config.length }, layers),
    );
    expect(code(put)).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(hub.requests.length - before).toBe(0);
    // Nor does the refused PUT leave its made-up digests held in memory (until a collection).
    const hosted = (running as RunningMirror).mirror.hosted;
    expect(layers.filter((l) => hosted.holds(l.digest.slice(7)))).toEqual([]);

    // Blobs a HEAD on the mirrored name said the upstream has: fetched, but never more than the bound.
    const upstreamLayers = Array.from({ length: 40 }, () => randomBytes(1000));
    for (const l of upstreamLayers) hub.addBlob(l);
    for (const l of upstreamLayers) {
      expect((await get(`${base}/v2/attack/big/blobs/${sha(l)}`, {}, 'HEAD')).status).toBe(200);
    }
    await pushBlob('attack/big', config);
    const fetchesBefore = hub.count('GET', /\/blobs\//);
    const big = await putManifest(
      'attack/big',
      '1',
      manifestOf(
        { digest: sha(config), size: config.length },
        upstreamLayers.map((l) => ({ digest: sha(l), size: l.length })),
      ),
    );
    expect(code(big)).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(hub.count('GET', /\/blobs\//) - fetchesBefore).toBeLessThanOrEqual(
      MAX_UPSTREAM_FETCHES_PER_MANIFEST,
    );
  });

  it('a manifest over 4 MiB gets a JSON error the client can read, not a reset connection', async () => {
    await start([]);
    const body = Buffer.alloc(5 * 1024 * 1024, 0x20);
    const res = await send(`${base}/v2/big/manifest/manifests/1`, 'PUT', body, {
      'content-type': OCI_MANIFEST,
    });
    expect(res.status).toBe(400);
    expect(code(res)).toBe('MANIFEST_INVALID');
    // The connection is still good for the next request.
    expect((await get(`${base}/v2/`)).status).toBe(200);
  });

  it('concurrent PUTs of one tag: the digest served is the one on disk, before and after a restart', async () => {
    await start([]);
    const config = Buffer.from('{"os":"linux"}');
    await pushBlob('race/tag', config);
    for (let round = 0; round < 5; round++) {
      const manifests = Array.from({ length: 20 }, (_, i) =>
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            config: {
              mediaType: 'application/vnd.oci.image.config.v1+json',
              digest: sha(config),
              size: config.length,
            },
            layers: [],
            annotations: { round: String(round), n: String(i) },
          }),
        ),
      );
      const puts = await Promise.all(manifests.map((m) => putManifest('race/tag', 'latest', m)));
      for (const p of puts) expect(p.status).toBe(201);
      const served = (await get(`${base}/v2/race/tag/manifests/latest`)).headers['docker-content-digest'];
      const onDisk = JSON.parse(
        readFileSync(path.join(data.dir, 'hosted', 'race', 'tag', '_tags', 'latest'), 'utf8'),
      ).digest;
      expect(served, `round ${round}`).toBe(onDisk);
    }
    const before = (await get(`${base}/v2/race/tag/manifests/latest`)).headers['docker-content-digest'];
    await start([]);
    const after = (await get(`${base}/v2/race/tag/manifests/latest`)).headers['docker-content-digest'];
    expect(after).toBe(before);
  });
});

describe('retention', () => {
  it('a HEAD on a hosted name changes no retention: no link file, and GC removes the blob', async () => {
    await start(['--gc-grace', '0']);
    const config = Buffer.from('{"os":"linux"}');
    await pushBlob('mine', config);
    // A blob stored by a pull through, that no hosted manifest uses.
    const pulled = randomBytes(3000);
    hub.addBlob(pulled);
    expect((await get(`${base}/v2/library/x/blobs/${sha(pulled)}`)).status).toBe(200);
    await (running as RunningMirror).mirror.settled();
    // An anonymous HEAD on the hosted name: not its blob (issue 14: content is scoped), and no link either.
    expect((await get(`${base}/v2/mine/blobs/${sha(pulled)}`, {}, 'HEAD')).status).toBe(404);
    expect(existsSync(path.join(data.dir, 'hosted', 'mine', '_layers', sha(pulled).slice(7)))).toBe(false);
    const gc = await send(`${base}/_hubcache/gc`, 'POST');
    expect(gc.status).toBe(200);
    expect(existsSync(blobFile(sha(pulled)))).toBe(false);
  });

  it('GC racing pushes (--gc-grace 0) never answers 500', async () => {
    await start(['--gc-grace', '0']);
    const statuses: number[] = [];
    const note = (r: Reply) => {
      statuses.push(r.status);
      return r;
    };
    for (let round = 0; round < 50; round++) {
      const name = `race/r${round}`;
      const layer = randomBytes(2000);
      const config = Buffer.from(`{"round":${round}}`);
      const push = (async () => {
        note(await send(`${base}/v2/${name}/blobs/uploads/?digest=${sha(config)}`, 'POST', config));
        const session = note(await send(`${base}/v2/${name}/blobs/uploads/`, 'POST'));
        const location = session.headers.location as string;
        note(await send(`${base}${location}`, 'PATCH', layer));
        note(await send(`${base}${location}?digest=${sha(layer)}`, 'PUT'));
        note(
          await putManifest(
            name,
            '1',
            manifestOf({ digest: sha(config), size: config.length }, [
              { digest: sha(layer), size: layer.length },
            ]),
          ),
        );
      })();
      const collections = (async () => {
        for (let i = 0; i < 4; i++) note(await send(`${base}/_hubcache/gc`, 'POST'));
      })();
      await Promise.all([push, collections]);
    }
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
