import { writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { bucketArgs, type FakeS3, startFakeS3 } from './fake-s3.js';
import { mirrorFor, tempDataDir } from './harness.js';

// Replicas behind a load balancer: `docker login` gets its token from one replica and the push
// presents it to another. With the same --fleet-secret-file, every replica accepts it; with
// another secret, or none, it is refused (each replica's own key in its data directory).

let hub: FakeRegistry;
let s3: FakeS3;
let data: Awaited<ReturnType<typeof tempDataDir>>;
const running: RunningMirror[] = [];

beforeEach(async () => {
  hub = await startFakeRegistry();
  s3 = await startFakeS3();
  data = await tempDataDir();
});

afterEach(async () => {
  for (const m of running.splice(0)) await m.close();
  await s3.close();
  await hub.close();
  await data.remove();
});

const file = (name: string, text: string) => {
  const p = path.join(data.dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
};

async function replica(name: string, secret: string | undefined): Promise<RunningMirror> {
  const htpasswd = file('htpasswd', `alice:${bcrypt.hashSync('s3cret', 4)}\n`);
  const m = await mirrorFor(hub, path.join(data.dir, name), [
    ...bucketArgs(s3.url),
    ...['--htpasswd', htpasswd],
    ...(secret ? ['--fleet-secret-file', file(`${name}.secret`, secret)] : []),
  ]);
  running.push(m);
  return m;
}

/** A push token from `from`, as `docker login` then `docker push` get one. */
async function token(from: RunningMirror): Promise<string> {
  const res = await request(
    `${from.url}/_hubcache/token?service=hubcache&scope=repository:team/app:pull,push`,
    {
      headers: { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` },
    },
  );
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as { token: string }).token;
}

/** What `to` answers a push's first request carrying the token. */
async function startUpload(to: RunningMirror, bearer: string): Promise<number> {
  const res = await request(`${to.url}/v2/team/app/blobs/uploads/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}` },
  });
  await res.body.dump();
  return res.statusCode;
}

it('a token one replica issued is good on another with the same fleet secret, and refused by one with another secret', async () => {
  const secret = 'k'.repeat(48);
  const a = await replica('a', secret);
  const b = await replica('b', `${secret}\n`);
  const c = await replica('c', 'z'.repeat(48));
  const t = await token(a);
  expect(await startUpload(a, t)).toBe(202);
  expect(await startUpload(b, t)).toBe(202);
  expect(await startUpload(c, t)).toBe(401);
});

it('without a fleet secret each replica keeps its own key: a token from one is refused by the other', async () => {
  const a = await replica('a', undefined);
  const b = await replica('b', undefined);
  const t = await token(a);
  expect(await startUpload(a, t)).toBe(202);
  expect(await startUpload(b, t)).toBe(401);
});

it('rotation: a replica given the new secret and the old one accepts tokens from replicas still on the old', async () => {
  const old = 'o'.repeat(40);
  const fresh = 'n'.repeat(40);
  const a = await replica('a', old);
  const b = await replica('b', `${fresh}\n${old}`);
  expect(await startUpload(b, await token(a))).toBe(202);
  // b signs with the new secret: a (old only) refuses until it has been given both.
  expect(await startUpload(a, await token(b))).toBe(401);
});
