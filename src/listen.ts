import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createSecureContext } from 'node:tls';
import { ClientAddresses } from './auth/client-address.js';
import { parseHtpasswd } from './auth/client-auth.js';
import type { Config } from './config.js';
import { PEER_BLOBS } from './fleet-blobs.js';
import { PEER_UPLOADS } from './fleet-uploads.js';
import { Mirror } from './mirror.js';
import { keepTickShapes, settleConnectionShapes } from './object-shapes.js';
import { createLogger, type Logger } from './observe/logger.js';
import { parseDigest } from './oci/digest.js';
import { createPeerListener } from './peer/listener.js';
import { createListener, servePeerUpload } from './server.js';
import { type FleetKeys, fleetKeys } from './shared/fleet-keys.js';
import { fileCause, fileError, listenError, StartupError } from './startup-errors.js';

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
  // The operator's mistakes first, each as one line naming the option (startup-errors.ts), before
  // anything is built: the data folder, then the files read at start.
  await checkDataDir(config.dataDir);
  const tls = config.tls && readTls(config.tls);
  if (config.htpasswd) checkHtpasswd(config.htpasswd);
  try {
    new ClientAddresses(config.trustedProxies);
  } catch (err) {
    throw new StartupError('--trusted-proxy', config.trustedProxies.join(','), (err as Error).message);
  }
  const fleet = config.shared?.fleetSecretFile
    ? readFleetSecret(config.shared.fleetSecretFile, log)
    : undefined;
  if (config.shared && config.htpasswd && !fleet) {
    log.warn(
      'replicas without --fleet-secret-file: a token one replica issues is refused by the others (behind a load balancer, logins and pushes fail)',
    );
  }
  const mirror = new Mirror(config, log, fleet);
  try {
    await mirror.init();
  } catch (err) {
    // A failed start-up check leaves the shared clients connected (ioredis would retry for ever).
    await mirror.close();
    throw err;
  }
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
  settleConnectionShapes(Boolean(tls));
  keepTickShapes();
  // HTTP/1.1 over TLS when a certificate is configured (Docker insists on TLS for mirrors that are
  // not on loopback); the same listener either way.
  const server = tls
    ? createHttpsServer({ ...options, ...tls }, createListener(mirror.serverContext))
    : createServer(options, createListener(mirror.serverContext));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => resolve());
    });
  } catch (err) {
    await mirror.close();
    const { host, port } = config.listen;
    throw listenError(`${host.includes(':') ? `[${host}]` : host}:${port}`, err);
  }
  // A client that stops reading a response (or sending a body) holds its socket, an open blob file
  // and read buffers for as long as it likes: after this long without a byte moving either way, the
  // socket is destroyed (Node's default for a server without a 'timeout' listener). Idle keep-alive
  // connections go sooner (keepAliveTimeout).
  server.setTimeout(config.clientIdleTimeoutMs);
  let peer: Server | undefined;
  try {
    if (config.shared?.peer && fleet) peer = await listenPeers(mirror, fleet, config.shared.peer.listen, log);
  } catch (err) {
    server.close();
    server.closeAllConnections();
    await mirror.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    mirror,
    server,
    url: `${config.tls ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`,
    async close() {
      for (const s of peer ? [server, peer] : [server]) {
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        });
      }
      await mirror.close();
      log.flush();
    },
  };
}

/** How long the data folder's probe may take: a hung network mount fails the start instead of hanging it. */
export const DATA_PROBE_TIMEOUT_MS = 10_000;

/**
 * Creates the data folder if needed and proves it takes a write, an fsync and a rename (what every
 * stored blob needs), with a probe file under a temporary name, in at most `timeoutMs`. Without
 * it, a read-only mount surfaced as ENOENT from deep in the blob store, and `--data /proc/x`
 * hung for ever: Node's recursive mkdir retries without end when mkdir answers ENOENT under a
 * parent that exists (procfs and sysfs do), so the folders are made one level at a time here.
 */
export async function checkDataDir(dir: string, timeoutMs = DATA_PROBE_TIMEOUT_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StartupError(
            '--data',
            dir,
            `no answer to a write within ${timeoutMs / 1000} s (a hung mount?)`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    await Promise.race([probeDataDir(dir), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function probeDataDir(dir: string): Promise<void> {
  const cause = (text: string, err?: unknown) => new StartupError('--data', dir, text, { cause: err });
  await makeFolder(dir, cause);
  const probe = path.join(dir, `.hubcache-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const file = await open(probe, 'wx');
    try {
      await file.writeFile('hubcache start-up probe\n');
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(probe, `${probe}.done`);
  } catch (err) {
    throw cause(`cannot write in it: ${fileCause(err)}`, err);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
    await rm(`${probe}.done`, { force: true }).catch(() => undefined);
  }
}

/**
 * mkdir -p, one level at a time: an ENOENT under a parent that exists is an answer, not a retry.
 * `cause` makes the StartupError for `--data`, naming the folder that failed when it is a parent.
 */
async function makeFolder(dir: string, cause: (text: string, err?: unknown) => StartupError, root = dir) {
  const which = dir === root ? 'it' : dir;
  const create = async (): Promise<'made' | 'exists' | 'no parent'> => {
    try {
      await mkdir(dir);
      return 'made';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return 'exists';
      if (code === 'ENOENT' && path.dirname(dir) !== dir) return 'no parent';
      throw cause(`cannot create ${which}: ${fileCause(err)}`, err);
    }
  };
  let outcome = await create();
  if (outcome === 'no parent') {
    await makeFolder(path.dirname(dir), cause, root);
    outcome = await create();
    // procfs and sysfs answer ENOENT to a new folder under one that exists.
    if (outcome === 'no parent') {
      throw cause(`cannot create ${which}: its parent refuses new folders (ENOENT, as /proc and /sys do)`);
    }
  }
  if (outcome === 'exists' && !(await stat(dir)).isDirectory()) {
    throw cause(`${which} is a file, not a directory`);
  }
}

/** The certificate and key, read and checked: each mistake names its own option. */
function readTls(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (option: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw fileError(option, file, err);
    }
  };
  const cert = read('--tls-cert', files.cert);
  const key = read('--tls-key', files.key);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new StartupError('--tls-cert', files.cert, 'not a PEM certificate', { cause: err });
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new StartupError('--tls-key', files.key, 'not a PEM private key without passphrase', {
      cause: err,
    });
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new StartupError('--tls-key', files.key, `does not match the certificate ${files.cert}`, {
      cause: err,
    });
  }
  return { cert, key };
}

/** The htpasswd file exists and parses (ClientAuth reads it again: a few lines). */
/** Upload requests other replicas forward to this one (fleet-uploads.ts): the peer listener's routes. */
const PEER_UPLOAD = new RegExp(
  `^${PEER_UPLOADS}(.+)/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`,
);

/** A blob another replica waits for while this one downloads it (fleet-blobs.ts). */
const PEER_BLOB = new RegExp(`^${PEER_BLOBS}(sha256:[a-f0-9]{64})$`);

/** The listener other replicas reach this one on (--peer-listen): signed requests only. */
async function listenPeers(
  mirror: Mirror,
  fleet: FleetKeys,
  at: { host: string; port: number },
  log: Logger,
): Promise<Server> {
  const routes = ['GET', 'PATCH', 'PUT', 'DELETE'].map((method) => ({
    method,
    pattern: PEER_UPLOAD,
    handle: (req: IncomingMessage, res: ServerResponse, match: RegExpExecArray) =>
      servePeerUpload(mirror.serverContext, req, res, match[1] as string, match[2] as string),
  }));
  routes.push({
    method: 'GET',
    pattern: PEER_BLOB,
    handle: async (_req: IncomingMessage, res: ServerResponse, match: RegExpExecArray) => {
      const found = await mirror.blobs.openForPeer(parseDigest(match[1] as string));
      if (!found) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': found.size, 'content-type': 'application/octet-stream' });
      await pipeline(found.body, res);
    },
  });
  const server = createPeerListener({ ring: fleet.peer, self: mirror.replicaId as string, log, routes });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.host, () => resolve());
    });
  } catch (err) {
    throw listenError(`${at.host}:${at.port}`, err, '--peer-listen');
  }
  return server;
}

/** The fleet's keys from the secret file, or a StartupError naming --fleet-secret-file. */
function readFleetSecret(file: string, log: Logger): FleetKeys {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError('--fleet-secret-file', file, err);
  }
  let keys: FleetKeys;
  try {
    keys = fleetKeys(text);
  } catch (err) {
    throw new StartupError('--fleet-secret-file', file, (err as Error).message, { cause: err });
  }
  // Whoever reads it can mint tokens for every repository: say so, without refusing (a container's
  // mounted secret may show other modes than the operator chose).
  if (statSync(file).mode & 0o004)
    log.warn({ file }, '--fleet-secret-file is readable by every user of this host');
  return keys;
}

function checkHtpasswd(file: string): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError('--htpasswd', file, err);
  }
  try {
    parseHtpasswd(text, file);
  } catch (err) {
    // parseHtpasswd names the file and line (`FILE:3: ...`); the option's value already names the file.
    const message = (err as Error).message;
    const rest = message.startsWith(file)
      ? message.slice(file.length).replace(/^:(\d+):/, 'line $1:')
      : message;
    throw new StartupError('--htpasswd', file, rest.replace(/^: /, ''), { cause: err });
  }
}
