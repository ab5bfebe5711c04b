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
