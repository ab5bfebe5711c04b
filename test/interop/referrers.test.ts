import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY = 'application/vnd.oci.empty.v1+json';
const SIG = 'application/vnd.example.signature.v1+json';
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Issue 14 item 4 against the reference registry 2.8, which has no referrers API (it answers 404):
 * an artifact whose `subject` is library/alpine's manifest, and the referrers tag `sha256-<hex>`
 * naming it, are pushed to the upstream as a client without the API does (spec "Referrers Tag
 * Schema"); the mirror's referrers endpoint answers them as the index, and an empty index for a
 * subject without referrers.
 */
describe.skipIf(!bedPrograms())(
  'referrers through the mirror from a registry without the referrers API',
  () => {
    let bed: TestBed;
    let token: string;

    /** A raw request to the real registry with a push token for library/alpine. */
    async function upstream(
      method: string,
      path: string,
      body?: Buffer,
      contentType?: string,
    ): Promise<Response> {
      return fetch(`${bed.registry.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(contentType ? { 'content-type': contentType } : {}),
        },
        ...(body ? { body } : {}),
      });
    }

    beforeAll(async () => {
      bed = await startTestBed({ bigMiB: 1 });
      const realm = new URL(bed.tokens.realm);
      realm.searchParams.set('service', bed.tokens.service);
      realm.searchParams.set('scope', 'repository:library/alpine:pull,push');
      const res = await fetch(realm, {
        headers: { authorization: `Basic ${Buffer.from(PUSHER).toString('base64')}` },
      });
      token = ((await res.json()) as { token: string }).token;
    }, 180_000);
    afterAll(async () => {
      await bed?.stop();
    });

    it('serves the referrers tag schema index of the upstream as the referrers list', async () => {
      const subject = bed.images.alpine;
      // The empty config and one signature "layer", as cosign/notation/oras write an artifact.
      const empty = Buffer.from('{}');
      const sig = Buffer.from('a signature');
      for (const blob of [empty, sig]) {
        const put = await upstream(
          'POST',
          `/v2/library/alpine/blobs/uploads/?digest=${sha256(blob)}`,
          blob,
          'application/octet-stream',
        );
        expect([201, 202], await put.text()).toContain(put.status);
        if (put.status === 202) {
          const location = new URL(String(put.headers.get('location')), bed.registry.url);
          location.searchParams.set('digest', sha256(blob));
          const done = await upstream(
            'PUT',
            `${location.pathname}${location.search}`,
            blob,
            'application/octet-stream',
          );
          expect(done.status, await done.text()).toBe(201);
        }
      }
      const artifact = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: SIG,
          config: { mediaType: EMPTY, digest: sha256(empty), size: empty.length },
          layers: [{ mediaType: SIG, digest: sha256(sig), size: sig.length }],
          subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
        }),
      );
      const put = await upstream(
        'PUT',
        `/v2/library/alpine/manifests/${sha256(artifact)}`,
        artifact,
        OCI_MANIFEST,
      );
      expect(put.status, await put.text()).toBe(201);
      const descriptor = {
        mediaType: OCI_MANIFEST,
        digest: sha256(artifact),
        size: artifact.length,
        artifactType: SIG,
      };
      const index = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor] }),
      );
      const tag = `sha256-${subject.digest.slice('sha256:'.length)}`;
      const putIndex = await upstream('PUT', `/v2/library/alpine/manifests/${tag}`, index, OCI_INDEX);
      expect(putIndex.status, await putIndex.text()).toBe(201);
      // The reference registry 2.8 really lacks the API: this is the fallback case.
      expect((await upstream('GET', `/v2/library/alpine/referrers/${subject.digest}`)).status).toBe(404);

      const res = await fetch(`${bed.mirror.url}/v2/library/alpine/referrers/${subject.digest}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(OCI_INDEX);
      expect(await res.json()).toEqual({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor] });
      const filtered = await fetch(
        `${bed.mirror.url}/v2/library/alpine/referrers/${subject.digest}?artifactType=${encodeURIComponent('other/type')}`,
      );
      expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
      expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toEqual([]);
      // The artifact itself pulls through by digest, as a client following the list does.
      const pulled = await fetch(`${bed.mirror.url}/v2/library/alpine/manifests/${descriptor.digest}`, {
        headers: { accept: OCI_MANIFEST },
      });
      expect(pulled.status).toBe(200);
      expect(Buffer.from(await pulled.arrayBuffer()).equals(artifact)).toBe(true);
    });

    it('answers an empty index for a subject without referrers', async () => {
      const res = await fetch(`${bed.mirror.url}/v2/library/alpine/referrers/${bed.images.multi.digest}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    });
  },
);
