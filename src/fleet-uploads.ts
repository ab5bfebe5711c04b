import type { Exchange } from './api/exchange.js';
import type { Logger } from './observe/logger.js';
import { RegistryError } from './oci/errors.js';
import { type PeerClient, PeerUnavailableError } from './peer/client.js';
import { forwardUpload } from './peer/upload-proxy.js';
import type { ReplicaRegistry } from './shared/replica-registry.js';

/** Where an owner takes a forwarded upload request: `<prefix><name>/<session>`. */
export const PEER_UPLOADS = '/_peer/v1/uploads/';

/**
 * Upload sessions across replicas: a session is owned by the replica that opened it (its bytes,
 * its running sha256), and recorded in Redis (shared/replica-registry.ts). A PATCH, PUT, GET or
 * DELETE of it that a load balancer sends to another replica is forwarded to the owner over the
 * peer listener (peer/upload-proxy.ts) and answered as the owner answers. The owner gone (killed,
 * restarted), the session is gone with it: BLOB_UPLOAD_UNKNOWN, and the client starts that blob
 * again (docs/scaling-out.md).
 */
export class FleetUploads {
  readonly #registry: ReplicaRegistry;
  readonly #client: PeerClient;
  readonly #ttlMs: number;
  readonly #log: Logger;

  constructor(registry: ReplicaRegistry, client: PeerClient, ttlMs: number, log: Logger) {
    this.#registry = registry;
    this.#client = client;
    this.#ttlMs = ttlMs;
    this.#log = log;
  }

  /** A session opened here: recorded before the client learns its id (503 when Redis does not take it). */
  async claim(id: string, name: string): Promise<void> {
    try {
      await this.#registry.claimUpload(id, name, this.#ttlMs);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'redis: upload session not recorded');
      throw new RegistryError(
        'UNAVAILABLE',
        "the fleet's shared records are unavailable: no upload started",
        {},
      );
    }
  }

  release(id: string): void {
    void this.#registry.releaseUpload(id);
  }

  /**
   * Forwards a request for a session this replica does not hold to its owner, if another live
   * replica owns it under this name. False: nobody else does (the caller answers as for an
   * unknown session).
   */
  async forward(ex: Exchange, name: string, id: string): Promise<boolean> {
    const owned = await this.#registry.uploadOwner(id).catch(() => undefined);
    if (!owned || owned.name !== name) return false;
    const peer = await this.#registry.peerOf(owned.owner);
    if (!peer) return false;
    ex.outcome = 'HOSTED';
    const query = ex.query.toString();
    const path = `${PEER_UPLOADS}${name}/${id}${query ? `?${query}` : ''}`;
    try {
      await forwardUpload(this.#client, peer, path, ex.req, ex.res);
    } catch (err) {
      if (err instanceof PeerUnavailableError && !ex.res.headersSent) {
        throw new RegistryError('UNAVAILABLE', 'the replica holding this upload does not answer: retry', {});
      }
      throw err;
    }
    return true;
  }
}
