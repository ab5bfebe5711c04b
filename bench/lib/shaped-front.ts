import { Agent, createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * An upstream shaped like the internet, in front of a registry (and its token server) on loopback:
 * every request waits one round trip before it is forwarded, a new TCP connection one more (its
 * handshake), and each connection's response bodies leave at most at `bytesPerSecond` (a TCP flow's
 * share of a real path; a client gets more only by opening more connections). Benchmarks only.
 */
export interface ShapedFront {
  url: string;
  /** Requests forwarded, with the registry's status. */
  requests: { method: string; path: string; status: number }[];
  count(method: string, pattern: RegExp, status?: number): number;
  close(): Promise<void>;
}

export async function startShapedFront(
  registry: string,
  tokenRealm: string,
  shape: { rttMs: number; bytesPerSecond: number },
): Promise<ShapedFront> {
  const target = new URL(registry);
  const issuer = new URL(tokenRealm);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  /** Per client connection: whether it carried a request yet, and when its link is free again. */
  const links = new WeakMap<Socket, { used: boolean; freeAt: number }>();
  const front: ShapedFront = {
    url: '',
    requests: [],
    count: (method, pattern, status = 200) =>
      front.requests.filter((r) => r.method === method && r.status === status && pattern.test(r.path)).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
  const server: Server = createServer((req, res) => {
    const socket = req.socket;
    let link = links.get(socket);
    if (!link) {
      link = { used: false, freeAt: 0 };
      links.set(socket, link);
    }
    const delay = link.used ? shape.rttMs : 2 * shape.rttMs;
    link.used = true;
    const state = link;
    const path = req.url ?? '/';
    const toIssuer = path.split('?')[0] === issuer.pathname;
    const to = toIssuer ? issuer : target;
    setTimeout(() => {
      const out = httpRequest(
        {
          host: to.hostname,
          port: to.port,
          method: req.method,
          path,
          headers: { ...req.headers, host: to.host },
          agent,
        },
        (upRes) => {
          const challenge = upRes.headers['www-authenticate'];
          if (typeof challenge === 'string')
            upRes.headers['www-authenticate'] = challenge.replace(
              `realm="${issuer.href}"`,
              `realm="${front.url}${issuer.pathname}"`,
            );
          if (!toIssuer)
            front.requests.push({
              method: req.method ?? 'GET',
              path: path.split('?')[0] ?? path,
              status: upRes.statusCode ?? 0,
            });
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.on('data', (chunk: Buffer) => {
            res.write(chunk);
            const now = performance.now();
            state.freeAt = Math.max(now, state.freeAt) + (chunk.length / shape.bytesPerSecond) * 1000;
            const wait = state.freeAt - now;
            if (wait > 1) {
              upRes.pause();
              setTimeout(() => upRes.resume(), wait);
            }
          });
          upRes.on('end', () => res.end());
          upRes.on('error', () => res.destroy());
          res.on('close', () => upRes.destroy());
        },
      );
      out.on('error', () => res.destroy());
      req.pipe(out);
    }, delay);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return front;
}
