import type { Logger } from '../observe/logger.js';

/** Asked on by a replica that needs a blob with no upstream (hosted) the bucket lacks: its hex. */
export const REPAIR_ASK = 'hubcache:repair:ask';
/** Announced by a replica that published it again: its hex. */
export const REPAIR_DONE = 'hubcache:repair:done';
/** A replica answers an ask for one blob at most once per this (Redis may repeat asks: it is not trusted). */
const ANSWER_EVERY_MS = 60_000;
/** Blobs published again at once by one replica, and asks remembered, at most. */
const AT_ONCE = 2;
const REMEMBERED = 10_000;
/** How long a client's request waits for another replica to publish the blob again. */
export const REPAIR_WAIT_MS = 5_000;

/** The Redis channels (shared/fleet-locks.ts). */
export interface RepairChannels {
  listen(channel: string, onMessage: (message: string) => void): Promise<void>;
  publish(channel: string, message: string): Promise<unknown>;
}

/**
 * Hosted blobs have no upstream: when the bucket's copy is gone (removed as bad, lost, or never
 * published, e.g. pushed before the fleet secret was set) a replica that needs one asks the fleet,
 * and every replica that holds it on its own disk (verified when it was stored) publishes it again.
 * The asking request waits up to REPAIR_WAIT_MS for the announcement, then reads the bucket again,
 * checking the copy as always; without an answer it is BLOB_UNKNOWN, as before.
 *
 * An ask from Redis only makes a replica upload a blob it already holds to the bucket, at most once
 * a minute per blob and two at a time: it cannot make it serve or store anything.
 */
export class BlobRepair {
  readonly #channels: RepairChannels;
  /** Whether this replica holds a blob on its own disk, and publishing it to the bucket. */
  readonly #holds: (hex: string) => Promise<boolean>;
  readonly #republish: (hex: string) => Promise<void>;
  readonly #log: Logger;
  readonly #answered = new Map<string, number>();
  readonly #waiting = new Map<string, Set<() => void>>();
  #running = 0;
  /** Blobs this replica published again for others. */
  repaired = 0;

  constructor(
    channels: RepairChannels,
    holds: (hex: string) => Promise<boolean>,
    republish: (hex: string) => Promise<void>,
    log: Logger,
  ) {
    this.#channels = channels;
    this.#holds = holds;
    this.#republish = republish;
    this.#log = log;
  }

  async init(): Promise<void> {
    await this.#channels.listen(REPAIR_ASK, (hex) => void this.#answer(hex));
    await this.#channels.listen(REPAIR_DONE, (hex) => {
      for (const wake of this.#waiting.get(hex) ?? []) wake();
    });
  }

  /**
   * Asks the fleet for a blob the bucket lacks; true when a replica announced it published it
   * again within `waitMs`.
   */
  async ask(hex: string, waitMs = REPAIR_WAIT_MS): Promise<boolean> {
    let wake!: () => void;
    const done = new Promise<boolean>((resolve) => {
      wake = () => resolve(true);
      setTimeout(() => resolve(false), waitMs).unref();
    });
    const set = this.#waiting.get(hex) ?? new Set();
    set.add(wake);
    this.#waiting.set(hex, set);
    try {
      await this.#channels.publish(REPAIR_ASK, hex);
      return await done;
    } catch {
      return false;
    } finally {
      set.delete(wake);
      if (set.size === 0) this.#waiting.delete(hex);
    }
  }

  async #answer(hex: string): Promise<void> {
    if (!/^[a-f0-9]{64}$/.test(hex)) return;
    const now = Date.now();
    if (now - (this.#answered.get(hex) ?? 0) < ANSWER_EVERY_MS || this.#running >= AT_ONCE) return;
    if (this.#answered.size >= REMEMBERED) this.#answered.clear();
    this.#answered.set(hex, now);
    this.#running++;
    try {
      if (!(await this.#holds(hex))) return;
      await this.#republish(hex);
      this.repaired++;
      this.#log.warn(
        { digest: `sha256:${hex}` },
        'shared store lacked a blob another replica needed: published again',
      );
      await this.#channels.publish(REPAIR_DONE, hex);
    } catch (err) {
      this.#log.warn(
        { digest: `sha256:${hex}`, err: (err as Error).message },
        'publishing a blob again failed',
      );
    } finally {
      this.#running--;
    }
  }
}
