import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { Exchange } from '../../src/api/exchange.js';
import { HitLane, LANE_MAX_BODY_BYTES } from '../../src/api/hit-lane.js';

/** A request and what was written for it (status, headers, body). */
function exchange(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const written: { status?: number; headers?: unknown; body?: Buffer | undefined; ended: boolean } = {
    ended: false,
  };
  const res = {
    writeHead(status: number, h: unknown) {
      written.status = status;
      written.headers = h;
    },
    end(body?: unknown, cb?: () => void) {
      written.body = Buffer.isBuffer(body) ? body : undefined;
      written.ended = true;
      if (typeof cb === 'function') cb();
    },
    getHeader: () => undefined,
  } as unknown as ServerResponse;
  const ex: Exchange = {
    req: { url, headers, method } as unknown as IncomingMessage,
    res,
    method,
    path: url,
    query: new URLSearchParams(),
    endpoint: 'blob',
    repository: 'library/app',
    upstream: 'registry-1.docker.io',
    outcome: 'HIT',
    bytes: 0,
    sent: 0,
  };
  return { ex, written };
}

const always = { byAccept: false, stillServed: () => true };

describe('HitLane', () => {
  it('answers only what was offered, as it was sent, and counts its answers', () => {
    const lane = new HitLane({ enabled: true, hostedGeneration: () => 0 });
    const body = Buffer.from('layer');
    lane.offer(exchange('/v2/library/app/blobs/sha256:a').ex, { 'Content-Type': 'x' }, body, always);
    const other = exchange('/v2/library/app/blobs/sha256:b');
    expect(lane.serve(other.ex)).toBe(false);
    const again = exchange('/v2/library/app/blobs/sha256:a');
    expect(lane.serve(again.ex)).toBe(true);
    expect(again.written).toMatchObject({ status: 200, body, ended: true });
    // A flat list (name, value, …), as Node's writeHead takes it: see hit-lane.ts flat().
    const list = again.written.headers as string[];
    const sent = Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : [])));
    expect(sent).toMatchObject({ 'Content-Type': 'x', 'Content-Length': '5', 'X-Cache': 'HIT' });
    expect(again.ex).toMatchObject({ outcome: 'HIT', bytes: 5, sent: 0, repository: 'library/app' }); // sent: read from bytes by the request log once finished
    const head = exchange('/v2/library/app/blobs/sha256:a', {}, 'HEAD');
    expect(lane.serve(head.ex)).toBe(true);
    expect(head.written.body).toBeUndefined();
    expect(lane.answers).toBe(2);
  });

  it('drops an entry its handler no longer serves, and keeps nothing it must not', () => {
    let served = true;
    const lane = new HitLane({ enabled: true, hostedGeneration: () => 0 });
    const url = '/v2/library/app/blobs/sha256:a';
    lane.offer(exchange(url).ex, {}, Buffer.from('x'), { byAccept: false, stillServed: () => served });
    served = false;
    expect(lane.serve(exchange(url).ex)).toBe(false);
    expect(lane.size).toBe(0);
    // Not a HIT, a Range, a body over the bound, a write, a disabled lane: nothing kept.
    const miss = exchange(url);
    miss.ex.outcome = 'MISS';
    lane.offer(miss.ex, {}, Buffer.from('x'), always);
    lane.offer(exchange(url, { range: 'bytes=0-0' }).ex, {}, Buffer.from('x'), always);
    lane.offer(exchange(url).ex, {}, Buffer.alloc(LANE_MAX_BODY_BYTES + 1), always);
    lane.offer(exchange(url, {}, 'PUT').ex, {}, Buffer.from('x'), always);
    new HitLane({ enabled: false, hostedGeneration: () => 0 }).offer(
      exchange(url).ex,
      {},
      Buffer.from('x'),
      always,
    );
    // A padded target or Accept (keys are memory too): not kept.
    lane.offer(exchange(`${url}?pad=${'x'.repeat(4096)}`).ex, {}, Buffer.from('x'), always);
    lane.offer(exchange(url, { accept: 'x'.repeat(4096) }).ex, {}, Buffer.from('x'), {
      ...always,
      byAccept: true,
    });
    expect(lane.size).toBe(0);
  });

  it('is bounded in entries and bytes, the oldest dropped first', () => {
    const lane = new HitLane({ enabled: true, hostedGeneration: () => 0 });
    const body = Buffer.alloc(LANE_MAX_BODY_BYTES);
    for (let i = 0; i < 1000; i++) lane.offer(exchange(`/v2/a/blobs/${i}`).ex, {}, body, always);
    // 16 MiB of 64 KiB bodies.
    expect(lane.size).toBe(256);
    expect(lane.serve(exchange('/v2/a/blobs/0').ex)).toBe(false);
    expect(lane.serve(exchange('/v2/a/blobs/999').ex)).toBe(true);
    for (let i = 0; i < 5000; i++) lane.offer(exchange(`/v2/b/blobs/${i}`).ex, {}, Buffer.from('x'), always);
    expect(lane.size).toBe(4096);
  });

  it('an answer by Accept is kept per Accept; a change of hosted names empties the lane', () => {
    let generation = 0;
    const lane = new HitLane({ enabled: true, hostedGeneration: () => generation });
    const url = '/v2/library/app/manifests/1';
    const byAccept = { byAccept: true, stillServed: () => true };
    lane.offer(exchange(url, { accept: 'a' }).ex, {}, Buffer.from('index'), byAccept);
    lane.offer(exchange(url, { accept: 'b' }).ex, {}, Buffer.from('manifest'), byAccept);
    const b = exchange(url, { accept: 'b' });
    expect(lane.serve(b.ex)).toBe(true);
    expect(b.written.body?.toString()).toBe('manifest');
    expect(lane.serve(exchange(url, { accept: 'c' }).ex)).toBe(false);
    generation++;
    expect(lane.serve(exchange(url, { accept: 'a' }).ex)).toBe(false);
    expect(lane.size).toBe(0);
  });
});
