import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { request as undiciRequest } from 'undici';
import { afterEach, expect, it } from 'vitest';
import { signPeer } from '../../src/peer/auth.js';
import { PeerClient, PeerUnavailableError } from '../../src/peer/client.js';
import { createPeerListener, type PeerRoutes } from '../../src/peer/listener.js';
import { fleetKeys } from '../../src/shared/fleet-keys.js';

const fleet = fleetKeys('f'.repeat(48)).peer;
const stranger = fleetKeys('s'.repeat(48)).peer;
const listenerId = randomUUID();
const callerId = randomUUID();

let servers: Server[] = [];
let clients: PeerClient[] = [];
/** Held handlers still waiting: released in afterEach so nothing outlives its test. */
let holds: (() => void)[] = [];

afterEach(async () => {
  for (const release of holds) release();
  holds = [];
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        }),
    ),
  );
  clients = [];
  servers = [];
});

/** Log lines the listener wrote, parsed. */
function logSink(): { log: pino.Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      raw.push(String(chunk));
      done();
    },
  });
  const log = pino({ level: 'warn' }, sink);
  return {
    log,
    get lines() {
      return raw.flatMap((r) => r.trim().split('\n')).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}

const routes = (entered: (n: string) => void): PeerRoutes => [
  {
    method: 'GET',
    pattern: /^\/_peer\/v1\/echo\/(.+)$/,
    async handle(_req, res, match, replica) {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-peer': replica });
      res.write(`${match[1]}:`);
      res.end('bytes');
    },
  },
  {
    method: 'GET',
    pattern: /^\/_peer\/v1\/hold\/(\d+)$/,
    async handle(_req, res, match) {
      res.writeHead(200);
      res.flushHeaders();
      await new Promise<void>((resolve) => {
        holds.push(resolve);
        entered(match[1] as string);
      });
      res.end('released');
    },
  },
  {
    // A route outside the prefix is never reached: the listener refuses the path first.
    method: 'GET',
    pattern: /^\/v2\/$/,
    async handle(_req, res) {
      res.writeHead(200);
      res.end('public API on the peer port');
    },
  },
  {
    method: 'GET',
    pattern: /^\/_peer\/v1\/throw$/,
    async handle() {
      throw new Error('handler bug');
    },
  },
  {
    method: 'GET',
    pattern: /^\/_peer\/v1\/throw-mid-body$/,
    async handle(_req, res) {
      // Chunked: ending here would be a well-formed short body; only a cut connection says "broken".
      res.writeHead(200);
      await new Promise<void>((resolve) => res.write('partial', () => resolve()));
      throw new Error('handler bug mid-body');
    },
  },
];

interface Started {
  url: URL;
  client: PeerClient;
  sink: ReturnType<typeof logSink>;
  /** TCP connections the listener accepted so far. */
  connections: () => number;
  /** Resolves when the hold handler for `n` has been entered. */
  held(n: string): Promise<void>;
}

async function start(options: { maxStreams?: number } = {}): Promise<Started> {
  const sink = logSink();
  const waiting = new Map<string, () => void>();
  const entered = new Map<string, Promise<void>>();
  const held = (n: string) => {
    let p = entered.get(n);
    if (!p) {
      p = new Promise<void>((resolve) => waiting.set(n, resolve));
      entered.set(n, p);
    }
    return p;
  };
  const server = createPeerListener({
    ring: fleet,
    self: listenerId,
    log: sink.log,
    maxStreams: options.maxStreams,
    routes: routes((n) => {
      void held(n);
      waiting.get(n)?.();
    }),
  });
  servers.push(server);
  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  const client = new PeerClient(fleet, callerId);
  clients.push(client);
  return { url: new URL(`http://127.0.0.1:${port}/`), client, sink, held, connections: () => connections };
}

async function text(body: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of body) out += String(chunk);
  return out;
}

it('answers a signed ping with 204 naming the listening replica', async () => {
  const { url, client } = await start();
  const res = await client.request(url, 'GET', '/_peer/v1/ping');
  await text(res.body);
  expect(res.status).toBe(204);
  expect(res.headers['x-hubcache-replica']).toBe(listenerId);
});

it('streams a route’s bytes and tells the handler which replica asked', async () => {
  const { url, client } = await start();
  const res = await client.request(url, 'GET', '/_peer/v1/echo/abc');
  expect(res.status).toBe(200);
  expect(res.headers['x-peer']).toBe(callerId);
  expect(await text(res.body)).toBe('abc:bytes');
});

it('refuses a request without authorization or with garbage in it: 401, a small JSON body, a warning without the header', async () => {
  const { url, sink } = await start();
  const none = await undiciRequest(new URL('/_peer/v1/ping', url));
  expect(none.statusCode).toBe(401);
  expect(await none.body.json()).toEqual({ error: 'unauthorized' });
  const garbage = 'HubcachePeer v1 not-a-uuid.1.secret-looking-garbage';
  const bad = await undiciRequest(new URL('/_peer/v1/ping', url), { headers: { authorization: garbage } });
  expect(bad.statusCode).toBe(401);
  expect(bad.headers['www-authenticate']).toBe('HubcachePeer');
  await bad.body.text();
  // Unsigned, even a path that does not exist is 401: a stranger learns nothing about the routes.
  const outside = await undiciRequest(new URL('/v2/', url));
  await outside.body.text();
  expect(outside.statusCode).toBe(401);
  const reasons = sink.lines.filter((l) => l.msg === 'peer request refused').map((l) => l.reason);
  expect(reasons).toEqual(['missing', 'malformed', 'missing']);
  expect(sink.text()).not.toContain('secret-looking-garbage');
});

it('refuses a request signed with another fleet’s key, and a valid header replayed on another path', async () => {
  const { url, sink } = await start();
  const outsider = new PeerClient(stranger, callerId);
  clients.push(outsider);
  const res = await outsider.request(url, 'GET', '/_peer/v1/ping');
  await text(res.body);
  expect(res.status).toBe(401);
  const captured = signPeer(fleet, { method: 'GET', path: '/_peer/v1/ping', replica: callerId });
  const replayed = await undiciRequest(new URL('/_peer/v1/echo/secret', url), {
    headers: { authorization: captured },
  });
  await replayed.body.text();
  expect(replayed.statusCode).toBe(401);
  expect(sink.lines.map((l) => l.reason)).toEqual(['bad signature', 'bad signature']);
  expect(sink.text()).not.toContain(captured);
});

it('answers 404 outside /_peer/v1/ even when signed, and for an unknown peer route', async () => {
  const { url, client } = await start();
  for (const path of ['/v2/', '/_peer/v2/ping', '/_peer/v1/nothing-here']) {
    const res = await client.request(url, 'GET', path);
    await text(res.body);
    expect(res.status, path).toBe(404);
  }
});

it('answers 503 with Retry-After: 1 beyond maxStreams requests in progress, and frees the slots when they end', async () => {
  const { url, client, held } = await start({ maxStreams: 2 });
  const first = client.request(url, 'GET', '/_peer/v1/hold/1');
  const second = client.request(url, 'GET', '/_peer/v1/hold/2');
  await Promise.all([held('1'), held('2')]);
  const third = await client.request(url, 'GET', '/_peer/v1/echo/x');
  await text(third.body);
  expect(third.status).toBe(503);
  expect(third.headers['retry-after']).toBe('1');
  for (const release of holds) release();
  for (const res of await Promise.all([first, second])) {
    expect(res.status).toBe(200);
    expect(await text(res.body)).toBe('released');
  }
  const after = await client.request(url, 'GET', '/_peer/v1/echo/x');
  expect(after.status).toBe(200);
  expect(await text(after.body)).toBe('x:bytes');
});

it('answers 500 when a handler throws before its headers, and cuts the response when it throws after', async () => {
  const { url, client } = await start();
  const res = await client.request(url, 'GET', '/_peer/v1/throw');
  expect(res.status).toBe(500);
  expect(JSON.parse(await text(res.body))).toEqual({ error: 'internal error' });
  const cut = await client.request(url, 'GET', '/_peer/v1/throw-mid-body');
  expect(cut.status).toBe(200);
  await expect(text(cut.body)).rejects.toThrow();
  // The listener still serves after both.
  const ping = await client.request(url, 'GET', '/_peer/v1/ping');
  await text(ping.body);
  expect(ping.status).toBe(204);
});

it('throws PeerUnavailableError naming the peer when nothing listens on its port', async () => {
  const { url, client } = await start();
  const closed = servers.pop() as Server;
  await new Promise<void>((resolve) => {
    closed.close(() => resolve());
    closed.closeAllConnections();
  });
  const err = await client.request(url, 'GET', '/_peer/v1/ping').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(PeerUnavailableError);
  expect((err as PeerUnavailableError).code).toBe('ECONNREFUSED');
  expect((err as Error).message).toContain(url.origin);
});

it('refuses a peer URL with userinfo, a path or another scheme without connecting, and without the password in the message', async () => {
  const { url, client, connections } = await start();
  for (const bad of [
    `http://peer:hunter2@${url.host}/`,
    `http://${url.host}/mirror/`,
    `http://${url.host}/?x=1`,
    `ftp://${url.host}/`,
  ]) {
    const err = await client.request(new URL(bad), 'GET', '/_peer/v1/ping').catch((e: unknown) => e);
    expect(err, bad).toBeInstanceOf(PeerUnavailableError);
    expect((err as PeerUnavailableError).code).toBe('EPEERURL');
    expect((err as Error).message).not.toContain('hunter2');
  }
  expect(connections()).toBe(0);
  // The good form works against the same listener: the refusals above were about the URL only.
  const ok = await client.request(url, 'GET', '/_peer/v1/ping');
  await text(ok.body);
  expect(ok.status).toBe(204);
});

it('bounds headers, whole requests and idle sockets like the public port, and refuses an unanchored route', () => {
  const server = createPeerListener({ ring: fleet, self: listenerId, log: logSink().log, routes: [] });
  expect(server.headersTimeout).toBe(10_000);
  expect(server.requestTimeout).toBe(300_000);
  expect(server.timeout).toBe(60_000);
  const custom = createPeerListener({
    ring: fleet,
    self: listenerId,
    log: logSink().log,
    routes: [],
    headersTimeoutMs: 2000,
    idleTimeoutMs: 5000,
  });
  expect(custom.headersTimeout).toBe(2000);
  expect(custom.timeout).toBe(5000);
  const unanchored = { method: 'GET', pattern: /\/_peer\/v1\/blobs\//, handle: async () => {} };
  expect(() =>
    createPeerListener({ ring: fleet, self: listenerId, log: logSink().log, routes: [unanchored] }),
  ).toThrow(/anchor/);
});
