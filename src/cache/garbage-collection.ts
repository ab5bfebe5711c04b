import type { Logger } from '../observe/logger.js';
import type { BlobStore } from './blob-store.js';
import { type CollectResult, collectGarbage, type HeldContent } from './collect.js';

/** What is under way while the server runs, asked at the start of each collection. */
export interface RunningWork {
  /** Repositories with an upload under way (they stay hosted even while still empty). */
  uploading(): ReadonlySet<string>;
  /** Blobs a push was told are here (a HEAD's yes): kept like young ones. */
  promised(hex: string): boolean;
}

/**
 * Garbage collection in the running server (POST /_hubcache/gc): one collection at a time; a
 * request while one runs gets that one's result instead of starting a second sweep.
 */
export class GarbageCollection {
  readonly #collect: () => Promise<CollectResult>;
  readonly #log: Logger;
  #running: Promise<CollectResult> | undefined;

  constructor(
    store: BlobStore,
    hosted: HeldContent,
    dataDir: string,
    graceMs: number,
    work: RunningWork,
    log: Logger,
  ) {
    this.#collect = () =>
      collectGarbage(store, hosted, dataDir, graceMs, {
        uploading: work.uploading(),
        promised: (hex) => work.promised(hex),
      });
    this.#log = log;
  }

  async run(): Promise<CollectResult> {
    this.#running ??= this.#collect().finally(() => {
      this.#running = undefined;
    });
    const result = await this.#running;
    this.#log.info(result, 'garbage collected');
    return result;
  }
}
