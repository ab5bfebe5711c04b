import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import type { Config } from './config.js';
import { Mirror } from './mirror.js';
import { createLogger, type Logger } from './observe/logger.js';
import { createApp } from './server.js';

export interface RunningMirror {
  mirror: Mirror;
  server: ServerType;
  /** http://host:port, with the port actually bound (0 in the config picks a free one). */
  url: string;
  close(): Promise<void>;
}

/** Builds the mirror from a Config and listens. Used by main.ts, the tests and the benchmarks. */
export async function startMirror(
  config: Config,
  log: Logger = createLogger(config.logLevel),
): Promise<RunningMirror> {
  const mirror = new Mirror(config, log);
  await mirror.init();
  const app = createApp(mirror);
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: config.listen.host, port: config.listen.port }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
  // dockerd sends Connection: close on every request, others keep-alive: allow both without
  // holding idle sockets forever.
  if ('keepAliveTimeout' in server) server.keepAliveTimeout = 65_000;
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    mirror,
    server,
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      });
      await mirror.close();
      log.flush();
    },
  };
}
