import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runStats } from '../../src/commands/stats.js';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  gate,
  get,
  mirrorFor,
  OCI_MANIFEST,
  pushBlob,
  send,
  tempDataDir,
  waitFor,
} from './harness.js';

let upstream: FakeRegistry;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let mirror: RunningMirror;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (no HELP/TYPE lines). */
function samples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`not a sample: ${l}`);
      const labels = Object.fromEntries(
        [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1] as string, x[2] as string]),
      );
      return { name: m[1] as string, labels, value: Number(m[3]) };
    });
}

/**
 * docs/observing.md's hit-ratio PromQL, `sum(rate(A[5m])) / sum(rate(B[5m]))`, evaluated over counters
 * that start at zero: what Prometheus computes over a window holding all of them, A / B.
 */
function evaluateDocsPromql(metrics: Sample[]): number {
  const readme = readFileSync('docs/observing.md', 'utf8');
  const block = /\*\*Hit ratio\*\*[\s\S]*?```promql\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('docs/observing.md has no hit-ratio PromQL block');
  const query = block.replace(/\s+/g, ' ').trim();
  const shape = /^sum\(rate\((\w+)\{([^}]*)\}\[5m\]\)\) \/ sum\(rate\((\w+)\{([^}]*)\}\[5m\]\)\)$/.exec(
    query,
  );
  if (!shape) throw new Error(`unexpected PromQL shape: ${query}`);
  const selector = (name: string, matchers: string) => {
    const tests = [...matchers.matchAll(/(\w+)(=~|!~|!=|=)"([^"]*)"/g)].map(([, label, op, value]) => {
      // PromQL regular expressions are anchored at both ends.
      const re = new RegExp(`^(?:${value})$`);
      return (s: Sample) => {
        const v = s.labels[label as string] ?? '';
        if (op === '=') return v === value;
        if (op === '!=') return v !== value;
        if (op === '=~') return re.test(v);
        return !re.test(v);
      };
    });
    return metrics
      .filter((s) => s.name === name && tests.every((t) => t(s)))
      .reduce((a, s) => a + s.value, 0);
  };
  const [, aName, aMatchers, bName, bMatchers] = shape as unknown as string[];
  return selector(aName as string, aMatchers as string) / selector(bName as string, bMatchers as string);
}

/** What `hubcache stats --url` prints, run in this process. */
async function stats(url: string): Promise<{ hitRatio: number | null; requests: number }> {
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    await runStats(['--url', url]);
  } finally {
    write.mockRestore();
  }
  return JSON.parse(out);
}

describe('the hit ratio', () => {
  it('is the same number in the summary, in `hubcache stats` and in the PromQL of docs/observing.md over /metrics', async () => {
    // Layer prefetch off: the outcomes counted are those of client requests alone.
    mirror = await mirrorFor(upstream, data.dir, ['--prefetch-layers', '0']);
    const base = mirror.url;
    const img = addImage(upstream, 'library/alpine', '1', 300_000);
    const manifest = `${base}/v2/alpine/manifests/1`;
    const blob = `${base}/v2/alpine/blobs/${img.layerDigest}`;
    const accept = { accept: OCI_MANIFEST };
    const outcomes: (string | undefined)[] = [];
    const seen = (r: { headers: Record<string, unknown> }) => outcomes.push(r.headers['x-cache'] as string);

    seen(await get(manifest, accept)); // MISS
    seen(await get(manifest, accept)); // HIT
    seen(await get(manifest, accept, 'HEAD')); // HIT
    // Two clients on one cold blob: the second joins the first's download.
    const held = gate();
    upstream.fault = (r) =>
      r.path.includes(img.layerDigest) ? { kind: 'gate', after: 1000, open: held.opened } : undefined;
    const first = request(blob);
    const digest = parseDigest(img.layerDigest);
    await waitFor(() => mirror.mirror.blobs.inflight(digest) !== undefined, 'the download to start');
    const fill = mirror.mirror.blobs.inflight(digest) as NonNullable<
      ReturnType<typeof mirror.mirror.blobs.inflight>
    >;
    while (fill.written < 1000) await fill.changed();
    const second = request(blob);
    const replies = await Promise.all([first, second]);
    held.open();
    for (const r of replies) {
      seen(r); // MISS, COALESCED
      await r.body.arrayBuffer();
    }
    upstream.fault = undefined;
    await mirror.mirror.settled();
    seen(await get(blob)); // HIT
    seen(await get(blob, {}, 'HEAD')); // HIT
    seen(await get(`${base}/v2/alpine/blobs/${img.configDigest}`, {}, 'HEAD')); // MISS: asked upstream
    // Past its TTL by hand: the same digest upstream, then the upstream down.
    const invalidate = `${base}/_hubcache/invalidate?repository=alpine&tag=1`;
    expect((await send(invalidate, 'POST')).status).toBeLessThan(300);
    seen(await get(manifest, accept)); // REVALIDATED
    expect((await send(invalidate, 'POST')).status).toBeLessThan(300);
    upstream.fault = () => ({ kind: 'status', status: 503 });
    seen(await get(manifest, accept)); // STALE
    // Neither hits nor misses: a tag list served stale, an invalid name, hosted content.
    expect((await get(`${base}/v2/alpine/tags/list`)).headers['x-cache']).toBe('STALE');
    expect((await get(`${base}/v2/Bad/manifests/1`)).status).toBe(400);
    upstream.fault = undefined;
    const pushed = await pushBlob(base, 'mine', Buffer.from('hosted bytes'));
    expect((await get(`${base}/v2/mine/blobs/${pushed}`)).headers['x-cache']).toBe('HOSTED');

    expect(outcomes).toEqual([
      'MISS',
      'HIT',
      'HIT',
      'MISS',
      'COALESCED',
      'HIT',
      'HIT',
      'MISS',
      'REVALIDATED',
      'STALE',
    ]);
    const expected = 6 / 10;
    const summary = JSON.parse((await get(`${base}/_hubcache/summary`)).body.toString());
    expect(summary).toMatchObject({ hits: 6, requests: 10 });
    expect(summary.hitRatio).toBe(expected);
    const printed = await stats(base);
    expect(printed).toMatchObject({ requests: 10, hitRatio: expected });
    const metrics = samples((await get(`${base}/metrics`)).body.toString());
    expect(evaluateDocsPromql(metrics)).toBe(expected);
  });
});
