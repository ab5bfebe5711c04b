import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { type Config, parseConfig } from '../config.js';

/** Under the image's HEALTHCHECK --timeout (3 s), so a slow answer is reported, not killed. */
export const HEALTHCHECK_TIMEOUT_MS = 2500;

/**
 * `hubcache healthcheck [options]`: GET /healthz on the mirror this configuration describes, with the
 * same parser (flags, HUBCACHE_* environment, --config file) the server reads, so the container's
 * HEALTHCHECK follows HUBCACHE_LISTEN and TLS instead of assuming http://127.0.0.1:5000.
 * Exit code 0 when /healthz answers 200, 1 otherwise (one line on stderr saying why).
 */
export async function runHealthcheck(args: string[]): Promise<number> {
  const config = parseConfig(args);
  const url = healthUrl(config);
  try {
    const status = await get(url, config.tls?.cert);
    if (status === 200) {
      process.stdout.write(`healthy: ${url} answered 200\n`);
      return 0;
    }
    process.stderr.write(`unhealthy: ${url} answered ${status}\n`);
  } catch (err) {
    process.stderr.write(`unhealthy: ${url}: ${(err as Error).message}\n`);
  }
  return 1;
}

/** The address to check: a wildcard listen address (every interface) is reached on loopback. */
export function healthUrl(config: Pick<Config, 'listen' | 'tls'>): URL {
  const { host, port } = config.listen;
  const target = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new URL(
    `${config.tls ? 'https' : 'http'}://${target.includes(':') ? `[${target}]` : target}:${port}/healthz`,
  );
}

/**
 * The status of a GET. Over TLS the mirror's own certificate is the one accepted (by fingerprint, not
 * by a CA or a name): this is a self-check on loopback, whose name the certificate rarely carries,
 * and an answer from a process holding another certificate is not this mirror's.
 */
function get(url: URL, certFile: string | undefined): Promise<number> {
  const expected =
    certFile === undefined ? undefined : new X509Certificate(readFileSync(certFile)).fingerprint256;
  const options = { signal: AbortSignal.timeout(HEALTHCHECK_TIMEOUT_MS), rejectUnauthorized: false };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      res.resume();
      if (expected !== undefined) {
        const seen = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        if (seen !== expected) {
          reject(new Error(`answered with a certificate other than ${certFile}`));
          return;
        }
      }
      resolve(res.statusCode ?? 0);
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, options, onResponse)
        : httpRequest(url, options, onResponse);
    req.on('error', (err) =>
      reject(err.name === 'AbortError' ? new Error(`no answer within ${HEALTHCHECK_TIMEOUT_MS} ms`) : err),
    );
    req.end();
  });
}
