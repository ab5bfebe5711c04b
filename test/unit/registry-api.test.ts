import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/oci/digest.js';
import type { UpstreamClient, UpstreamRequest } from '../../src/upstream/client.js';
import { RegistryApi, UpstreamStatusError } from '../../src/upstream/registry-api.js';

const DIGEST = parseDigest(`sha256:${'a'.repeat(64)}`);

/** A client answering every request with `status` (and `headers`), recording what was asked. */
function answering(status: number, headers: Record<string, string> = {}) {
  const asked: UpstreamRequest[] = [];
  const client = {
    async request(req: UpstreamRequest) {
      asked.push(req);
      return { status, headers, body: Readable.from([Buffer.from('{"tags":[]}')]) };
    },
  } as unknown as UpstreamClient;
  return { api: new RegistryApi(client, 'ghcr.test (https://ghcr.example)'), asked };
}

async function failure(promise: Promise<unknown>): Promise<UpstreamStatusError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UpstreamStatusError);
  return err as UpstreamStatusError;
}

describe('RegistryApi: one status check, the spec code each endpoint means', () => {
  it.each([
    [404, 'BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN'],
    [401, 'NAME_UNKNOWN', 'NAME_UNKNOWN', 'NAME_UNKNOWN'],
    [403, 'NAME_UNKNOWN', 'NAME_UNKNOWN', 'NAME_UNKNOWN'],
    [429, 'TOOMANYREQUESTS', 'TOOMANYREQUESTS', 'TOOMANYREQUESTS'],
    [500, 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE'],
    [502, 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE'],
  ] as const)('upstream %i: blob %s, manifest %s, tags %s', async (status, blob, manifest, tags) => {
    const { api } = answering(status);
    expect((await failure(api.getBlob('o/a', DIGEST))).code).toBe(blob);
    expect((await failure(api.headBlob('o/a', DIGEST))).code).toBe(blob);
    expect((await failure(api.getManifest('o/a', '1'))).code).toBe(manifest);
    expect((await failure(api.headManifest('o/a', '1'))).code).toBe(manifest);
    expect((await failure(api.tags('o/a', null, null))).code).toBe(tags);
  });

  it('a 429 names the registry that answered and keeps its Retry-After', async () => {
    const { api } = answering(429, { 'retry-after': '120' });
    const err = await failure(api.getManifest('o/a', '1'));
    expect(err.status).toBe(429);
    expect(err.message).toBe('upstream registry ghcr.test (https://ghcr.example) rate limit: retry later');
    expect(err.headers['Retry-After']).toBe('120');
    expect(err.missing).toBe(false);
  });

  it('401, 403 and 404 are "not there", not an outage', async () => {
    for (const status of [401, 403, 404]) {
      expect((await failure(answering(status).api.headBlob('o/a', DIGEST))).missing).toBe(true);
    }
  });

  it('asks manifests with the full Accept list and passes n and last of a tag list', async () => {
    const { api, asked } = answering(200);
    await api.headManifest('o/a', '1');
    await api.tags('o/a', '10', 'b');
    expect(asked[0]?.headers?.accept).toContain('application/vnd.oci.image.index.v1+json');
    expect(asked[1]?.path).toBe('/v2/o/a/tags/list?n=10&last=b');
  });

  it('serves this repository? 200 yes; 401, 403, 404 no; anything else cannot say', async () => {
    expect(await answering(200).api.servesRepository('o/a')).toBe(true);
    for (const status of [401, 403, 404])
      expect(await answering(status).api.servesRepository('o/a')).toBe(false);
    expect(await answering(503).api.servesRepository('o/a')).toBeUndefined();
  });
});
