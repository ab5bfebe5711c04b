import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { Mirror } from './mirror.js';
import { createLogger, type Logger } from './observe/logger.js';
import { createListener } from './server.js';

export interface RunningMirror {
  mirror: Mirror;
  server: Server;
  /** http://host:port, with the port actually bound (0 in the config picks a free one). */
  url: string;
  close(): Promise<void>;
}

/** Builds the mirror from a Config and listens. Used by main.ts, the tests and the benchmarks. */
/**
 * Request headers at most (Node's default is 16 KiB): podman's partial pulls ask for up to 1,024
 * ranges of a layer in one Range header (containers/storage's limit), about 20 KB with the offsets
 * of a big layer. Beyond this, 431. Bounded in time by --client-header-timeout.
 */
export const MAX_HEADER_BYTES = 32 * 1024;

export async function startMirror(
  config: Config,
  log: Logger = createLogger(config.logLevel),
): Promise<RunningMirror> {
  const mirror = new Mirror(config, log);
  await mirror.init();
  // dockerd sends Connection: close on every request, others keep-alive: allow both without
  // holding idle sockets forever.
  const options = {
    keepAliveTimeout: 65_000,
    maxHeaderSize: MAX_HEADER_BYTES,
    // Slowloris: a client that dribbles its headers is cut off. Checked every second, not every 30.
    headersTimeout: config.clientHeaderTimeoutMs,
    requestTimeout: Math.max(300_000, config.clientHeaderTimeoutMs + 1000),
    connectionsCheckingInterval: Math.min(1000, config.clientHeaderTimeoutMs),
  };
  // HTTP/1.1 over TLS when a certificate is configured (Docker insists on TLS for mirrors that are
  // not on loopback); the same listener either way.
  const server = config.tls
    ? createHttpsServer(
        { ...options, cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) },
        createListener(mirror.serverContext),
      )
    : createServer(options, createListener(mirror.serverContext));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    mirror,
    server,
    url: `${config.tls ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await mirror.close();
      log.flush();
    },
  };
}
