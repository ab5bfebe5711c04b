import picomatch from 'picomatch';
import type { TagTtlRule } from '../config.js';

/**
 * A tag's TTL by pattern: `latest` can be rechecked every minute while `v1.2.3` is trusted for a day
 * (tags that never move need not cost upstream HEADs). First matching rule wins; a pattern with ':'
 * or '/' is matched against `repository:tag`, any other against the tag alone.
 */
export function tagTtl(rules: TagTtlRule[], defaultMs: number): (repository: string, tag: string) => number {
  const compiled = rules.map((rule) => ({
    whole: rule.pattern.includes(':') || rule.pattern.includes('/'),
    match: picomatch(rule.pattern, { dot: true }),
    ttlMs: rule.ttlMs,
  }));
  return (repository, tag) => {
    for (const rule of compiled) {
      if (rule.match(rule.whole ? `${repository}:${tag}` : tag)) return rule.ttlMs;
    }
    return defaultMs;
  };
}
