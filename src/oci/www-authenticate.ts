/**
 * RFC 9110 §11.6.1 / RFC 6750 §3 challenges: `Bearer realm="…",service="…",scope="a:b:pull,push"`.
 * Quoted values may contain commas and escaped quotes, so a plain split(',') is wrong (the bug
 * docs/PROTOCOL.md §1.2 names in other proxies).
 */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const token = () => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  while (i < n) {
    skipWs();
    while (i < n && header[i] === ',') {
      i++;
      skipWs();
    }
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    for (;;) {
      skipWs();
      const save = i;
      const key = token();
      skipWs();
      if (!key || header[i] !== '=') {
        // Not a parameter: either the next challenge's scheme or a token68; rewind.
        i = save;
        break;
      }
      i++;
      skipWs();
      if (header[i] === '=' || i >= n || header[i] === ',') {
        // `abc==`: a padded token68, not a parameter (a value can't start with '=').
        i = save;
        break;
      }
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++;
      } else {
        const start = i;
        while (i < n && header[i] !== ',' && header[i] !== ' ') i++;
        value = header.slice(start, i);
      }
      challenge.params[key.toLowerCase()] = value;
      skipWs();
      if (header[i] === ',') {
        // Empty list elements (`a="x",,b="y"`) are ignored (RFC 9110 §5.6.1).
        while (header[i] === ',' || header[i] === ' ' || header[i] === '\t') i++;
        continue;
      }
      break;
    }
    if (Object.keys(challenge.params).length === 0) {
      // token68 (e.g. `Basic abc==`) or a bare scheme: skip to the next comma.
      while (i < n && header[i] !== ',') i++;
    }
  }
  return challenges;
}
