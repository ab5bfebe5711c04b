import { type Dispatcher, request } from 'undici';

/** Where `stats` and `prefetch` look for the mirror unless --url says otherwise. */
export const DEFAULT_MIRROR_URL = 'http://127.0.0.1:5000';

/** The failures of reaching a host at all, as opposed to an answer it gave. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** The mirror did not answer at all: the message names the URL tried and how to point elsewhere. */
export class MirrorUnreachableError extends Error {
  constructor(url: URL, code: string) {
    const which = url.href === new URL(DEFAULT_MIRROR_URL).href ? ' (the default)' : '';
    super(
      `cannot reach the mirror at ${url.origin}${which}: ${code}. Is it running? ` +
        'Point at it with --url http://HOST:PORT',
    );
    this.name = 'MirrorUnreachableError';
  }
}

/** --url's value: an http(s) URL, else a message naming the flag. */
export function mirrorUrl(text: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {}
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    throw new Error(`--url ${text}: expected the mirror's URL, e.g. --url http://HOST:PORT`);
  return url;
}

/**
 * A request to the mirror through undici's client, not fetch(): fetch refuses the ports of its
 * "bad ports" list (6000, 6665-6669, …), which a mirror may well listen on.
 */
export async function mirrorRequest(
  base: URL,
  path: string,
  options: Parameters<typeof request>[1] = undefined,
): Promise<Dispatcher.ResponseData<unknown>> {
  try {
    return await request(new URL(path, base), options);
  } catch (err) {
    const code = errorCode(err);
    if (code && UNREACHABLE.has(code)) throw new MirrorUnreachableError(base, code);
    throw err;
  }
}

/** The code of a connect error; Node reports an AggregateError when it tried IPv6 and IPv4. */
function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; errors?: { code?: unknown }[] };
  const code = e.code ?? e.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}
