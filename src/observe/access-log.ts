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
    const routineHit = line.cache === 'HIT' && line.status < 400 && line.complete && line.ms < SLOW_HIT_MS;
    if (!routineHit) {
      this.#log.info(line);
    } else if (this.#log.isLevelEnabled('debug')) {
      this.#log.debug(line);
    } else {
      this.#hits++;
      this.#hitBytes += line.bytes;
    }
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
