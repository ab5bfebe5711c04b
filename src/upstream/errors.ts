/** The upstream could not be reached or did not answer in time: callers may serve stale content. */
export class UpstreamUnreachableError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamUnreachableError';
    this.code = code;
  }
}

/** The token endpoint refused us or answered nonsense. */
export class UpstreamAuthError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamAuthError';
  }
}

/**
 * The upstream answered 429 and asked us to wait (Retry-After): until then no request is sent, so a
 * rate-limited Docker Hub is not hammered by retries; cached content is served meanwhile.
 */
export class UpstreamBackoffError extends Error {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super(`upstream rate limit: backing off for ${retryAfterSeconds} s`);
    this.name = 'UpstreamBackoffError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
