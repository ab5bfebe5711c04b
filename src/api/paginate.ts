import { RegistryError } from '../oci/errors.js';

/**
 * The spec's `n`/`last` pagination over a sorted list: `last` is exclusive, `n=0` is an empty page
 * with no Link, and a Link with rel="next" says where the next page starts (RFC 5988). `path` is the
 * path the client asked for (a registry prefix stays in it).
 */
export function paginate(
  sorted: string[],
  query: URLSearchParams,
  path: string,
): { items: string[]; headers: Record<string, string> } {
  // An empty n is no n (as distribution reads it); n=0 is the spec's empty page.
  const nText = query.get('n') || null;
  const last = query.get('last');
  let n: number | undefined;
  if (nText !== null) {
    n = Number(nText);
    if (!Number.isInteger(n) || n < 0)
      throw new RegistryError('PAGINATION_NUMBER_INVALID', undefined, { n: nText });
  }
  const start = last === null ? 0 : sorted.findIndex((s) => s > last);
  const rest = start === -1 ? [] : sorted.slice(start);
  if (n === undefined) return { items: rest, headers: {} };
  const items = rest.slice(0, n);
  const headers: Record<string, string> = {};
  if (n > 0 && rest.length > n) {
    const next = new URLSearchParams({ n: String(n), last: items[items.length - 1] ?? '' });
    headers.Link = `<${nextPage(path, query, next)}>; rel="next"`;
  }
  return { items, headers };
}

/**
 * The next page's URL (path and query): the request's own path and query (containerd's `ns` stays:
 * page 2 must reach the registry page 1 came from), with `page`'s parameters (n, last) replacing the
 * request's.
 */
export function nextPage(path: string, query: URLSearchParams, page: URLSearchParams): string {
  const next = new URLSearchParams(query);
  for (const key of page.keys()) next.delete(key);
  next.delete('n');
  next.delete('last');
  for (const [key, value] of page) next.append(key, value);
  return `${path}?${next}`;
}
