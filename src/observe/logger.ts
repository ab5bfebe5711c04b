import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Async destination: the hit path must not wait on a write(2) per request (docs/PERFORMANCE.md lesson 5).
 * Credentials and tokens never reach a log line: the upstream client logs hosts and statuses only,
 * and these paths are redacted as a second line of defence.
 */
export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: null,
      redact: ['headers.authorization', 'password', 'token', '*.password', '*.token'],
    },
    pino.destination({ sync: false }),
  );
}
