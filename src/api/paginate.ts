import { RegistryError } from '../oci/errors.js';

/**
 * The spec's `n`/`last` pagination over a sorted list: `last` is exclusive, `n=0` is an empty page
 * with no Link, and a Link with rel="next" says where the next page starts (RFC 5988).
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
    headers.Link = `<${path}?${next}>; rel="next"`;
  }
  return { items, headers };
}
