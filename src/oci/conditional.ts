/**
 * If-None-Match (RFC 9110 §13.1.2): whether a GET/HEAD of a representation with `etag` is answered
 * 304. The field is `*` or a list of entity tags; comparison is weak (§8.8.3.2: `W/"a"` matches
 * `"a"`), since a 304 only tells the client its copy is still good. An entity tag's opaque part may
 * hold a comma, so the list is read tag by tag, not split on commas; a member that is not an entity
 * tag is skipped (it can match nothing). Several header lines are one list (§5.3).
 */
export function ifNoneMatch(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const field = Array.isArray(header) ? header.join(', ') : header;
  const wanted = opaque(etag);
  let i = 0;
  while (i < field.length) {
    const c = field[i];
    if (c === ' ' || c === '\t' || c === ',') {
      i++;
      continue;
    }
    if (c === '*') return true;
    const start = field.startsWith('W/"', i) ? i + 2 : c === '"' ? i : -1;
    const end = start === -1 ? -1 : field.indexOf('"', start + 1);
    if (end === -1) {
      // Not an entity tag: skip to the next member.
      const comma = field.indexOf(',', i);
      if (comma === -1) return false;
      i = comma + 1;
      continue;
    }
    if (field.slice(start, end + 1) === wanted) return true;
    i = end + 1;
  }
  return false;
}

/** The quoted part of an entity tag, without a weak marker. */
function opaque(etag: string): string {
  return etag.startsWith('W/') ? etag.slice(2) : etag;
}
