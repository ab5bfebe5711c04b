import { describe, expect, it } from 'vitest';
import { nextPage, paginate } from '../../src/api/paginate.js';
import { RegistryError } from '../../src/oci/errors.js';

const TAGS = ['1.0', '1.1', '2.0', 'edge', 'latest'];
const PATH = '/v2/library/alpine/tags/list';

const page = (query: string, tags: string[] = TAGS) => paginate(tags, new URLSearchParams(query), PATH);

describe('paginate', () => {
  it('returns everything and no Link without n or last', () => {
    expect(page('')).toEqual({ items: TAGS, headers: {} });
  });

  it('returns the first n items and a Link to the next page', () => {
    const { items, headers } = page('n=2');
    expect(items).toEqual(['1.0', '1.1']);
    expect(headers.Link).toBe(`<${PATH}?n=2&last=1.1>; rel="next"`);
  });

  it('starts after last, exclusive', () => {
    expect(page('n=2&last=1.1')).toEqual({
      items: ['2.0', 'edge'],
      headers: { Link: `<${PATH}?n=2&last=edge>; rel="next"` },
    });
  });

  it('walks every item exactly once by following Link', () => {
    const seen: string[] = [];
    let query = 'n=2';
    for (let guard = 0; guard < 10; guard++) {
      const { items, headers } = page(query);
      seen.push(...items);
      if (!headers.Link) break;
      const m = /^<([^>]+)>; rel="next"$/.exec(headers.Link);
      expect(m?.[1]?.startsWith(`${PATH}?`)).toBe(true);
      query = new URL(m?.[1] ?? '', 'http://mirror').search;
    }
    expect(seen).toEqual(TAGS);
  });

  it('gives no Link on the last page, even when it is exactly full', () => {
    expect(page('n=2&last=2.0')).toEqual({ items: ['edge', 'latest'], headers: {} });
    expect(page('n=5')).toEqual({ items: TAGS, headers: {} });
  });

  it('starts after a last that is not in the list, by order', () => {
    expect(page('last=1.5').items).toEqual(['2.0', 'edge', 'latest']);
  });

  it('returns nothing after a last beyond every item', () => {
    expect(page('last=zzz')).toEqual({ items: [], headers: {} });
  });

  it('returns an empty list and no Link for n=0', () => {
    expect(page('n=0')).toEqual({ items: [], headers: {} });
  });

  it('applies last without n', () => {
    expect(page('last=edge')).toEqual({ items: ['latest'], headers: {} });
  });

  it('encodes a last that needs escaping in the Link', () => {
    const { headers } = page('n=1', ['a+b&c', 'z']);
    expect(headers.Link).toBe(`<${PATH}?n=1&last=a%2Bb%26c>; rel="next"`);
    expect(page('n=1&last=a%2Bb%26c', ['a+b&c', 'z']).items).toEqual(['z']);
  });

  it.each(['-1', 'abc', '1.5', 'Infinity'])('answers n=%s with PAGINATION_NUMBER_INVALID (400)', (n) => {
    try {
      page(`n=${n}`);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as RegistryError).code).toBe('PAGINATION_NUMBER_INVALID');
      expect((err as RegistryError).status).toBe(400);
    }
  });

  it('treats an empty n as no limit, not as n=0 (as distribution does)', () => {
    expect(page('n=')).toEqual({ items: TAGS, headers: {} });
  });
});

describe('the Link keeps the path and query the client used', () => {
  it('keeps a registry prefix in the path and containerd’s ns in the query', () => {
    const path = '/v2/ghcr.io/owner/app/tags/list';
    const { headers } = paginate(TAGS, new URLSearchParams('ns=ghcr.io&n=2'), path);
    expect(headers.Link).toBe(`<${path}?ns=ghcr.io&n=2&last=1.1>; rel="next"`);
  });

  it('nextPage replaces the pagination parameters, whatever their order', () => {
    const page = new URLSearchParams('last=x&n=1');
    expect(nextPage('/v2/a/tags/list', new URLSearchParams('n=5&ns=r.io&last=a'), page)).toBe(
      '/v2/a/tags/list?ns=r.io&last=x&n=1',
    );
  });
});
