import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { Agent, type Dispatcher, request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, imageManifest, mirrorFor, OCI_MANIFEST, tempDataDir } from './harness.js';

/**
 * The trust model of docs/SECURITY.md, one statement at a time: who may read, who may push, what
 * a push may never take over, and what the operator endpoints show to whom.
 */

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * A client "on the network": connections from this host's own non-loopback address to the mirror
 * on 127.0.0.1 (Linux routes them over lo, and the mirror sees the other address). The mirror
 * keeps listening on loopback only.
 */
function networkAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this test needs a non-loopback IPv4 address on the machine (eth0)');
}

let network: Agent;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

async function send(
  url: string,
  method: Dispatcher.HttpMethod,
  options: { body?: Buffer | string; headers?: Record<string, string>; from?: 'network' } = {},
): Promise<Reply> {
  const res = await request(url, {
    method,
    headers: options.headers ?? {},
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.from === 'network' ? { dispatcher: network } : {}),
  });
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
}

const code = (r: Reply) => (JSON.parse(r.body.toString()) as { errors: { code: string }[] }).errors[0]?.code;

/** Blobs (POST ?digest=) then the manifest under `tag`; returns every answer's status. */
async function push(
  base: string,
  name: string,
  tag: string,
  options: { headers?: Record<string, string>; from?: 'network' } = {},
): Promise<{ statuses: number[]; digest: string; last: Reply }> {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }),
  );
  const layer = randomBytes(1024);
  const statuses: number[] = [];
  let last: Reply | undefined;
  for (const blob of [config, layer]) {
    last = await send(`${base}/v2/${name}/blobs/uploads/?digest=${sha(blob)}`, 'POST', {
      ...options,
      body: blob,
    });
    statuses.push(last.status);
  }
  const manifest = imageManifest(config, [layer]);

  last = await send(`${base}/v2/${name}/manifests/${tag}`, 'PUT', {
    ...options,
    body: manifest,
    headers: { ...options.headers, 'content-type': OCI_MANIFEST },
  });
  statuses.push(last.status);
  return { statuses, digest: sha(manifest), last };
}

let hub: FakeRegistry;
let mirror: RunningMirror | undefined;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
  network = new Agent({ localAddress: networkAddress() });
});

afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await network.close();
  await hub.close();
  await data.remove();
});

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function htpasswd(cost = 4): string {
  const file = path.join(data.dir, 'htpasswd');
  writeFileSync(file, `alice:${bcrypt.hashSync('s3cret', cost)}\n`);
  return file;
}

describe('reads with --htpasswd (no --anonymous-pull): nothing without valid credentials, whichever route', () => {
  it('the token endpoint gives no token to a request without credentials, so no token reads anything', async () => {
    mirror = await mirrorFor(hub, data.dir, ['--htpasswd', htpasswd()]);
    const base = mirror.url;
    // Private content: a hosted image pushed by alice.
    const pushed = await push(base, 'team/secret', 'v1', {
      headers: { authorization: basic('alice', 's3cret') },
    });
    expect(pushed.statuses).toEqual([201, 201, 201]);

    for (const scope of ['repository:team/secret:pull', 'registry:catalog:*']) {
      const token = await send(`${base}/_hubcache/token?service=hubcache&scope=${scope}`, 'GET');
      expect(token.status, scope).toBe(401);
      expect(token.headers['www-authenticate']).toMatch(/^Basic /);
    }
    // Whatever a client presents without valid credentials, nothing private is read.
    const attempts: Record<string, string>[] = [
      {},
      { authorization: basic('alice', 'wrong') },
      { authorization: 'Bearer e30.AAAA' },
      { authorization: 'Bearer ' },
    ];
    for (const headers of attempts) {
      for (const p of [
        '/v2/team/secret/manifests/v1',
        `/v2/team/secret/manifests/${pushed.digest}`,
        '/v2/team/secret/tags/list',
        '/v2/_catalog',
        `/v2/team/secret/referrers/${pushed.digest}`,
      ]) {
        const res = await send(`${base}${p}`, 'GET', { headers });
        expect(res.status, `${p} ${JSON.stringify(headers)}`).toBe(401);
      }
    }
    // With credentials, a token works (the flow itself is intact).
    const ok = await send(
      `${base}/_hubcache/token?service=hubcache&scope=repository:team/secret:pull`,
      'GET',
      {
        headers: { authorization: basic('alice', 's3cret') },
      },
    );
    const token = (JSON.parse(ok.body.toString()) as { token: string }).token;
    const read = await send(`${base}/v2/team/secret/manifests/v1`, 'GET', {
      headers: { authorization: `Bearer ${token}`, accept: OCI_MANIFEST },
    });
    expect(read.status).toBe(200);
    // A pull token for one repository reads no other, and not the catalog.
    expect(
      (await send(`${base}/v2/_catalog`, 'GET', { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(401);
  });

  it('the dashboard and its summary, which name repositories, need credentials from the network', async () => {
    mirror = await mirrorFor(hub, data.dir, ['--htpasswd', htpasswd()]);
    for (const p of ['/ui/', '/_hubcache/summary']) {
      expect((await send(`${mirror.url}${p}`, 'GET', { from: 'network' })).status, p).toBe(401);
      const authed = await send(`${mirror.url}${p}`, 'GET', {
        from: 'network',
        headers: { authorization: basic('alice', 's3cret') },
      });
      expect(authed.status, p).toBe(200);
      expect((await send(`${mirror.url}${p}`, 'GET')).status, `${p} from loopback`).toBe(200);
    }
  });

  it('the Bearer realm names the address the client connected to (or --public-url), never its Host header', async () => {
    mirror = await mirrorFor(hub, data.dir, ['--htpasswd', htpasswd(), '--anonymous-pull']);
    const port = new URL(mirror.url).port;
    const ping = await send(`${mirror.url}/v2/`, 'GET', { headers: { host: 'evil.example:80' } });
    expect(ping.status).toBe(401);
    expect(ping.headers['www-authenticate']).toBe(
      `Bearer realm="http://127.0.0.1:${port}/_hubcache/token",service="hubcache"`,
    );
    await mirror.close();
    mirror = await mirrorFor(hub, data.dir, [
      '--htpasswd',
      htpasswd(),
      '--anonymous-pull',
      '--public-url',
      'https://mirror.example:5000',
    ]);
    const named = await send(`${mirror.url}/v2/`, 'GET', { headers: { host: 'evil.example' } });
    expect(named.headers['www-authenticate']).toBe(
      'Bearer realm="https://mirror.example:5000/_hubcache/token",service="hubcache"',
    );
  });

  it('a flood of wrong passwords for a known user is bounded (429), and a valid user is still served', async () => {
    // Cost 10: what `htpasswd -B` writes by default, tens of milliseconds of JavaScript each.
    mirror = await mirrorFor(hub, data.dir, ['--htpasswd', htpasswd(10)]);
    const good = basic('alice', 's3cret');
    expect((await send(`${mirror.url}/v2/`, 'GET', { headers: { authorization: good } })).status).toBe(200);
    const url = mirror.url;
    const flood = Array.from({ length: 150 }, (_, i) =>
      send(`${url}/v2/`, 'GET', { headers: { authorization: basic('alice', `wrong-${i}`) } }),
    );
    const during = await send(`${url}/v2/`, 'GET', { headers: { authorization: good } });
    const statuses = (await Promise.all(flood)).map((r) => r.status);
    expect(during.status).toBe(200);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(100);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
  });
});

describe('pushes with the default start (no --htpasswd)', () => {
  it('takes anonymous pushes from the mirror host, refuses them from the network (403 DENIED)', async () => {
    mirror = await mirrorFor(hub, data.dir);
    const remote = await push(mirror.url, 'team/app', '1', { from: 'network' });
    expect(remote.statuses).toEqual([403, 403, 403]);
    expect(code(remote.last)).toBe('DENIED');
    // Reads from the network stay open, as a pull-through mirror's must.
    const img = addImage(hub, 'other/small', 'v1');
    const pull = await send(`${mirror.url}/v2/other/small/manifests/v1`, 'GET', {
      from: 'network',
      headers: { accept: OCI_MANIFEST },
    });
    expect(pull.headers['docker-content-digest']).toBe(img.manifestDigest);
    // The seeds' loopback workflow is unchanged.
    expect((await push(mirror.url, 'team/app', '1')).statuses).toEqual([201, 201, 201]);
    // --anonymous-push anywhere widens it (the operator's explicit choice).
    await mirror.close();
    mirror = await mirrorFor(hub, data.dir, ['--anonymous-push', 'anywhere']);
    expect((await push(mirror.url, 'team/app2', '1', { from: 'network' })).statuses).toEqual([201, 201, 201]);
  });

  it('never lets a push take over a name the upstream serves, for any client or ?ns=', async () => {
    mirror = await mirrorFor(hub, data.dir);
    const img = addImage(hub, 'other/small', 'v1');
    const served = addImage(hub, 'other/big', 'v1');
    // A node pulled other/small through the mirror (cached); other/big is upstream, never pulled.
    const pulled = await send(`${mirror.url}/v2/other/small/manifests/v1?ns=docker.io`, 'GET', {
      headers: { accept: OCI_MANIFEST },
    });
    expect(pulled.status).toBe(200);
    for (const name of ['other/small', 'other/big']) {
      const attempt = await push(mirror.url, name, 'v1');
      expect(attempt.statuses, name).toEqual([403, 403, 403]);
      expect(code(attempt.last)).toBe('DENIED');
    }
    // Every client still gets the upstream's images.
    for (const [name, digest] of [
      ['other/small', img.manifestDigest],
      ['other/big', served.manifestDigest],
    ]) {
      for (const q of ['', '?ns=docker.io']) {
        const res = await send(`${mirror.url}/v2/${name}/manifests/v1${q}`, 'GET', {
          headers: { accept: OCI_MANIFEST },
        });
        expect(res.headers['docker-content-digest'], `${name}${q}`).toBe(digest);
      }
    }
    // A name the upstream does not serve is free; a one-component name never shadows library/NAME.
    expect((await push(mirror.url, 'other/mine', 'v1')).statuses).toEqual([201, 201, 201]);
    expect((await push(mirror.url, 'small', 'v1')).statuses).toEqual([201, 201, 201]);
    // The operator may host a mirrored name on purpose.
    await mirror.close();
    mirror = await mirrorFor(hub, data.dir, ['--hosted', 'other/*']);
    expect((await push(mirror.url, 'other/small', 'v2')).statuses).toEqual([201, 201, 201]);
  });

  it('a first push to a two-component name waits (503) while the upstream cannot say whether it serves it', async () => {
    mirror = await mirrorFor(hub, data.dir);
    hub.fault = () => ({ kind: 'status', status: 503 });
    const attempt = await push(mirror.url, 'team/new', '1');
    expect(attempt.statuses).toEqual([503, 503, 503]);
    expect(code(attempt.last)).toBe('UNAVAILABLE');
    hub.fault = undefined;
    // The verdict "cannot say" is not remembered.
    expect((await push(mirror.url, 'team/new', '1')).statuses).toEqual([201, 201, 201]);
  });
});

describe('names that meet Object.prototype', () => {
  it('constructor and __proto__ are names like any other (no 500), with and without auth', async () => {
    mirror = await mirrorFor(hub, data.dir, ['--htpasswd', htpasswd(), '--anonymous-pull']);
    for (const name of ['constructor', '__proto__', 'team/constructor', 'hasownproperty']) {
      const token = await send(
        `${mirror.url}/_hubcache/token?service=hubcache&scope=repository:${name}:pull`,
        'GET',
      );
      expect(token.status, name).toBe(200);
      const t = (JSON.parse(token.body.toString()) as { token: string }).token;
      for (const p of ['manifests/latest', 'tags/list', `blobs/sha256:${'a'.repeat(64)}`]) {
        const res = await send(`${mirror.url}/v2/${name}/${p}`, 'GET', {
          headers: { authorization: `Bearer ${t}` },
        });
        expect(res.status, `${name}/${p}`).toBeLessThan(500);
      }
    }
    await mirror.close();
    mirror = await mirrorFor(hub, data.dir);
    for (const name of ['constructor', '__proto__', 'team/__proto__', 'tostring']) {
      for (const p of ['manifests/latest', 'tags/list', `blobs/sha256:${'a'.repeat(64)}`, 'blobs/uploads/']) {
        const method = p === 'blobs/uploads/' ? 'POST' : 'GET';
        const res = await send(`${mirror.url}/v2/${name}/${p}`, method);
        expect(res.status, `${method} ${name}/${p}`).toBeLessThan(500);
      }
    }
  });
});
