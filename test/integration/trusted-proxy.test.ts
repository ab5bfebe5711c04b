import { request } from 'undici';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { mirrorFor, tempDataDir } from './harness.js';

// Behind a reverse proxy on the mirror host every client looks local: with --trusted-proxy the
// rules about the client (anonymous pushes from the mirror host only, the operator endpoints) look
// at the client the proxy names in X-Forwarded-For; without it, the header changes nothing.

let hub: FakeRegistry;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let mirror: RunningMirror | undefined;

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await hub.close();
  await data.remove();
});

async function status(url: string, method: 'POST' | 'GET', forwardedFor?: string): Promise<number> {
  const res = await request(url, {
    method,
    headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {},
  });
  await res.body.dump();
  return res.statusCode;
}

it('with --trusted-proxy, an anonymous push the proxy forwards for a network client is refused; the mirror host still pushes', async () => {
  mirror = await mirrorFor(hub, data.dir, ['--trusted-proxy', '127.0.0.1']);
  const upload = `${mirror.url}/v2/team/app/blobs/uploads/`;
  expect(await status(upload, 'POST', '203.0.113.9')).toBe(403);
  // A client writing "127.0.0.1" itself: its proxy appends the real address, which counts.
  expect(await status(upload, 'POST', '127.0.0.1, 203.0.113.9')).toBe(403);
  expect(await status(`${mirror.url}/_hubcache/gc`, 'POST', '203.0.113.9')).toBe(403);
  expect(await status(upload, 'POST')).toBe(202);
});

it('without --trusted-proxy, X-Forwarded-For is ignored (anyone can send it)', async () => {
  mirror = await mirrorFor(hub, data.dir);
  expect(await status(`${mirror.url}/v2/team/app/blobs/uploads/`, 'POST', '203.0.113.9')).toBe(202);
});
