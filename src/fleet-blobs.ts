import type { PeerBlobs } from './cache/blob-cache.js';
import type { Digest } from './oci/digest.js';
import type { PeerClient } from './peer/client.js';
import type { ReplicaRegistry } from './shared/replica-registry.js';

/** Where a replica serves a blob it holds or is downloading to the others: `<prefix><digest>`. */
export const PEER_BLOBS = '/_peer/v1/blobs/';

/**
 * Peer streaming: a replica that finds another holding a cold blob's download lock reads the blob
 * from that replica as it arrives there (its peer listener's blob route, a FillReader on its fill)
 * instead of waiting for it to verify, publish and announce. The bytes are checked again here, as
 * from any source (cache/blob-cache.ts). Nothing to be had (the holder unknown, not answering, or
 * without the blob yet): undefined, and the caller waits for the announcement as before.
 */
export class FleetBlobs implements PeerBlobs {
  readonly #registry: ReplicaRegistry;
  readonly #client: PeerClient;

  constructor(registry: ReplicaRegistry, client: PeerClient) {
    this.#registry = registry;
    this.#client = client;
  }

  async open(
    holder: string,
    digest: Digest,
  ): Promise<{ body: import('node:stream').Readable; size: number } | undefined> {
    const peer = await this.#registry.peerOf(holder).catch(() => undefined);
    if (!peer) return undefined;
    const res = await this.#client
      .request(peer, 'GET', `${PEER_BLOBS}${digest.value}`)
      .catch(() => undefined);
    if (!res) return undefined;
    const size = Number(res.headers['content-length']);
    if (res.status !== 200 || !Number.isSafeInteger(size) || size < 0) {
      res.body.destroy();
      return undefined;
    }
    return { body: res.body, size };
  }
}
