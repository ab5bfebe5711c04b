import type { Logger } from './logger.js';

/** What one /v2 request logs (server.ts logRequest). */
export interface RequestLine {
  method: string;
  path: string;
  status: number;
  /** What reached the client's socket. */
  bytes: number;
  complete: boolean;
  ms: number;
  cache: string | undefined;
}

/** A hit slower than this is worth a line of its own. */
export const SLOW_HIT_MS = 1000;
/** A fast, successful, complete hit: logged at debug, summed up at info. */
function isRoutineHit(cache: string | undefined, status: number, complete: boolean, ms: number): boolean {
  return cache === 'HIT' && status < 400 && complete && ms < SLOW_HIT_MS;
}

/** How often the hits not logged one by one are summed up in one line. */
const SUMMARY_EVERY_MS = 60_000;

/**
 * The access log. A line per request written to a file cost a quarter of a cache hit's CPU
 * (docs/benchmarks.md, "Logging and the hit path"), and
 * hits are what a mirror mostly serves and what an operator least needs to read one by one: a fast,
 * successful hit is logged at debug, and summed up at info once a minute (how many, how many
 * bytes) when there were any. Misses, errors, pushes and anything slow keep their line at info, as
 * every request does with `--log-level debug`. The counts per request are in /metrics either way.
 */
export class AccessLog {
  readonly #log: Logger;
  readonly #timer: NodeJS.Timeout;
  #hits = 0;
  #hitBytes = 0;

  constructor(log: Logger, summaryEveryMs = SUMMARY_EVERY_MS) {
    this.#log = log;
    this.#timer = setInterval(() => this.flush(), summaryEveryMs);
    this.#timer.unref();
  }

  record(line: RequestLine): void {
    if (this.summedUp(line.cache, line.status, line.complete, line.ms, line.bytes)) return;
    if (isRoutineHit(line.cache, line.status, line.complete, line.ms)) this.#log.debug(line);
    else this.#log.info(line);
  }

  /**
   * Counts a routine hit into the summary and says so, when hits are not logged one by one (not
   * at debug); false for anything that gets a line of its own, which the caller then records. The
   * hit path asks this first, before it builds the line.
   */
  summedUp(cache: string | undefined, status: number, complete: boolean, ms: number, bytes: number): boolean {
    if (!isRoutineHit(cache, status, complete, ms) || this.#log.isLevelEnabled('debug')) return false;
    this.#hits++;
    this.#hitBytes += bytes;
    return true;
  }

  /** The summary line of the hits not logged one by one, if there were any. */
  flush(): void {
    if (this.#hits === 0) return;
    this.#log.info(
      { hits: this.#hits, bytes: this.#hitBytes },
      'cache hits served (logged one by one at debug)',
    );
    this.#hits = 0;
    this.#hitBytes = 0;
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
