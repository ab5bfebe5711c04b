import type { IncomingMessage } from 'node:http';
import type { BufferPool } from '../buffer-pool.js';
import type { BlobReads } from '../cache/blob-reads.js';
import type { BlobStore } from '../cache/blob-store.js';
import type { KnownContent } from '../cache/known-content.js';
import type { TagIndex } from '../cache/tag-index.js';
import type { TagLists } from '../cache/tag-lists.js';
import type { HeadPromises } from '../hosted/head-promises.js';
import type { HostedRepositories } from '../hosted/repositories.js';
import type { UploadSession, UploadSessions } from '../hosted/uploads.js';
import type { Logger } from '../observe/logger.js';
import type { Routes } from '../routing.js';
import type { Exchange } from './exchange.js';
import type { HitLane } from './hit-lane.js';

/** Who owns each upload session in a fleet, and the way to the owner (fleet-uploads.ts). */
export interface UploadOwners {
  claim(id: string, name: string): Promise<void>;
  /** Bytes [start, end) of a session were written here: staged for a takeover. */
  staged(session: UploadSession, start: number, end: number): Promise<void>;
  release(id: string): void;
  /** Answers the request through the session's owner; false when no other replica owns it. */
  forward(ex: Exchange, name: string, id: string): Promise<boolean>;
}

/**
 * What the /v2 handlers work with, and nothing more: built once by the Mirror (the composition
 * root), handed to every handler. Handlers translate HTTP into calls on these; the stores decide.
 */
export interface HandlerContext {
  readonly log: Logger;
  /** Every registry mirrored here, and which one a name means. */
  readonly routes: Pick<Routes, 'resolve' | 'onDefault'>;
  /** Mirrored blobs not (yet) known to be served from the store: the miss policy. */
  readonly blobs: BlobReads;
  /** The one content-addressed store (blobs and manifests, mirrored and hosted). */
  readonly store: BlobStore;
  /** Which mirrored names are known to have which stored content. */
  readonly known: KnownContent;
  /** Mirrored repositories (the catalog) and their tag lists. */
  readonly tags: Pick<TagIndex, 'repositories'>;
  readonly tagLists: TagLists;
  /** Repositories pushed here, their uploads, and the blob HEADs a push may rely on. */
  readonly hosted: HostedRepositories;
  readonly uploads: UploadSessions;
  /** Who a request comes from (auth/client-address.ts: behind --trusted-proxy, the forwarded client). */
  readonly clientOf: (req: IncomingMessage) => string;
  /** Replicas: upload sessions another replica owns are forwarded to it (fleet-uploads.ts). */
  readonly uploadOwners?: UploadOwners | undefined;
  readonly headPromises: HeadPromises;
  /** Hits answered again straight from the request target (hit-lane.ts): handlers offer what they served. */
  readonly lane: Pick<HitLane, 'offer'>;
  /** Read buffers of the blob hit path. */
  readonly buffers: BufferPool;
  /** --allow-delete */
  readonly allowDelete: boolean;
  /** --offline: no upstream is ever contacted. */
  readonly offline: boolean;
  /** Counts bytes pushed (metrics). */
  pushedBytes(bytes: number): void;
}
