import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { Agent, request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { requireProgram } from '../fixtures/require-program.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror | undefined;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await upstream.close();
  await data.remove();
});

describe('client authentication (htpasswd, bcrypt)', () => {
  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('--anonymous-pull: pulls open, pushes through the token flow with credentials (as docker login + push does)', async () => {
    const hash = bcrypt.hashSync('s3cret', 4);
    const file = path.join(data.dir, 'htpasswd');
    writeFileSync(file, `alice:${hash}\n`);
    mirror = await mirrorFor(upstream, data.dir, ['--htpasswd', file, '--anonymous-pull']);
    const img = addImage(upstream, 'library/alpine', '1');
    // /v2/ challenges with Bearer (so Docker fetches a token, anonymously for pulls).
    const ping = await get(`${mirror.url}/v2/`);
    expect(ping.status).toBe(401);
    const challenge = ping.headers['www-authenticate'] as string;
    expect(challenge).toMatch(
      /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/_hubcache\/token",service="hubcache"$/,
    );
    expect((await get(`${mirror.url}/v2/alpine/manifests/1`)).headers['docker-content-digest']).toBe(
      img.manifestDigest,
    );
    expect((await get(`${mirror.url}/v2/_catalog`)).status).toBe(200);
    // An anonymous push: 401 naming the scope to ask for.
    const anon = await request(`${mirror.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
    expect(anon.statusCode).toBe(401);
    expect(anon.headers['www-authenticate']).toMatch(/scope="repository:team\/app:pull,push"/);
    await anon.body.dump();
    const realm = /realm="([^"]+)"/.exec(challenge)?.[1] as string;
    const scope = 'repository:team/app:pull,push';
    // Anonymous token: pull only, so the push is still refused (insufficient scope).
    const anonToken = JSON.parse(
      (await get(`${realm}?service=hubcache&scope=${scope}`)).body.toString(),
    ).token;
    const refused = await request(`${mirror.url}/v2/team/app/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${anonToken}` },
    });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['www-authenticate']).toMatch(/error="insufficient_scope"/);
    await refused.body.dump();
    // Wrong credentials: no token at all.
    expect((await get(`${realm}?scope=${scope}`, { authorization: basic('alice', 'nope') })).status).toBe(
      401,
    );
    const token = JSON.parse(
      (
        await get(`${realm}?service=hubcache&scope=${scope}`, { authorization: basic('alice', 's3cret') })
      ).body.toString(),
    ).token;
    const bearer = { authorization: `Bearer ${token}` };
    const blob = Buffer.from('hello');
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const pushed = await request(`${mirror.url}/v2/team/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      headers: bearer,
      body: blob,
    });
    expect(pushed.statusCode).toBe(201);
    await pushed.body.dump();
    expect((await get(`${mirror.url}/v2/team/app/blobs/${digest}`)).body.toString()).toBe('hello');
    // A token for one repository does not open another; a forged one opens nothing.
    const other = await request(`${mirror.url}/v2/team/other/blobs/uploads/`, {
      method: 'POST',
      headers: bearer,
    });
    expect(other.statusCode).toBe(401);
    await other.body.dump();
    const forged = `${Buffer.from(JSON.stringify({ sub: 'x', access: { 'team/other': ['push'] }, exp: 9e9 })).toString('base64url')}.${token.split('.')[1]}`;
    const withForged = await request(`${mirror.url}/v2/team/other/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${forged}` },
    });
    expect(withForged.statusCode).toBe(401);
    await withForged.body.dump();
  });

  it('answers 401 with a Basic challenge without valid credentials, and serves with them', async () => {
    // htpasswd -B writes $2y$; bcryptjs writes $2b$ (the same algorithm).
    const hash = bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$');
    const file = path.join(data.dir, 'htpasswd');
    writeFileSync(file, `# users\nalice:${hash}\n`);
    mirror = await mirrorFor(upstream, data.dir, ['--htpasswd', file]);
    const img = addImage(upstream, 'library/alpine', '1');

    const anonymous = await get(`${mirror.url}/v2/`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="hubcache"');
    expect(JSON.parse(anonymous.body.toString()).errors[0].code).toBe('UNAUTHORIZED');
    expect((await get(`${mirror.url}/v2/`, { authorization: basic('alice', 'wrong') })).status).toBe(401);
    expect((await get(`${mirror.url}/v2/`, { authorization: basic('mallory', 's3cret') })).status).toBe(401);

    const ok = await get(`${mirror.url}/v2/alpine/manifests/1`, { authorization: basic('alice', 's3cret') });
    expect(ok.status).toBe(200);
    expect(ok.headers['docker-content-digest']).toBe(img.manifestDigest);
    // Writes need credentials too; with them, a push reaches the push checks (an empty manifest is invalid).
    const anonymousPut = await request(`${mirror.url}/v2/alpine/manifests/1`, { method: 'PUT' });
    expect(anonymousPut.statusCode).toBe(401);
    await anonymousPut.body.dump();
    const put = await request(`${mirror.url}/v2/alpine/manifests/1`, {
      method: 'PUT',
      headers: { authorization: basic('alice', 's3cret') },
    });
    expect(put.statusCode).toBe(400);
    expect(JSON.parse(await put.body.text()).errors[0].code).toBe('MANIFEST_INVALID');
    // Operators' endpoints stay open.
    expect((await get(`${mirror.url}/metrics`)).status).toBe(200);
    expect((await get(`${mirror.url}/healthz`)).status).toBe(200);
  });

  it('refuses to start with an htpasswd file that is not bcrypt', async () => {
    const file = path.join(data.dir, 'htpasswd');
    writeFileSync(file, 'alice:$apr1$abc$def\n');
    await expect(mirrorFor(upstream, data.dir, ['--htpasswd', file])).rejects.toThrow(/bcrypt/);
  });
});

const openssl = requireProgram('openssl');

describe.skipIf(!openssl)('TLS', () => {
  it('serves the registry API over HTTPS with the configured certificate', async () => {
    const key = path.join(data.dir, 'key.pem');
    const cert = path.join(data.dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    mirror = await mirrorFor(upstream, data.dir, ['--tls-cert', cert, '--tls-key', key]);
    expect(mirror.url.startsWith('https://')).toBe(true);
    const img = addImage(upstream, 'library/alpine', '1');
    const dispatcher = new Agent({ connect: { ca: readFileSync(cert) } });
    const res = await request(`${mirror.url}/v2/alpine/manifests/1`, { dispatcher });
    expect(res.statusCode).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifestDigest);
    await res.body.dump();
    // A client that does not trust the certificate is refused by TLS itself.
    await expect(request(`${mirror.url}/v2/`)).rejects.toThrow();
    await dispatcher.close();
  });
});
