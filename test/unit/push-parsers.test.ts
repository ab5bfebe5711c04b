import { describe, expect, it } from 'vitest';
import { chunkStart } from '../../src/api/uploads.js';
import { parseScope } from '../../src/auth/token-service.js';
import { checkManifest } from '../../src/hosted/manifest-check.js';

const D = `sha256:${'a'.repeat(64)}`;
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const manifest = (extra: object = {}) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D, size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D, size: 10 }],
      ...extra,
    }),
  );

describe('token scopes', () => {
  it.each([
    ['repository:team/app:pull,push', { name: 'team/app', actions: ['pull', 'push'] }],
    ['repository:busybox:pull', { name: 'busybox', actions: ['pull'] }],
    ['repository:a/b:*', { name: 'a/b', actions: ['pull', 'push', 'delete'] }],
    ['registry:catalog:*', { name: '*', actions: ['pull'] }],
    ['repository:x:admin', { name: 'x', actions: [] }],
  ])('%s', (scope, expected) => {
    expect(parseScope(scope)).toEqual(expected);
  });

  it.each(['', 'repository', 'repository:pull', ':x:pull', 'other:x:pull'])('refuses %j', (scope) => {
    expect(parseScope(scope)).toBeUndefined();
  });
});

describe('Content-Range of a chunk', () => {
  it.each([
    ['0-99', 0],
    ['100-199', 100],
    ['bytes=100-199', 100],
    ['bytes 100-199/*', 100],
  ])('%s starts at %d', (header, start) => {
    expect(chunkStart(header)).toBe(start);
  });
  it('is optional', () => expect(chunkStart(undefined)).toBeUndefined());
  it.each(['abc', '10-5', '-5', '1-2-3'])('refuses %j with RANGE_INVALID', (header) => {
    expect(() => chunkStart(header)).toThrow(expect.objectContaining({ code: 'RANGE_INVALID' }));
  });
});

describe('pushed manifest checks', () => {
  it('accepts an OCI image manifest and lists what it refers to', () => {
    const m = checkManifest(manifest(), OCI);
    expect(m.mediaType).toBe(OCI);
    expect(m.blobs.map((b) => b.digest.value)).toEqual([D, D]);
    expect(m.artifactType).toBe('application/vnd.oci.image.config.v1+json');
  });

  it('takes the media type from the body when Content-Type is generic or absent', () => {
    expect(checkManifest(manifest(), undefined).mediaType).toBe(OCI);
    expect(checkManifest(manifest(), 'application/json').mediaType).toBe(OCI);
  });

  it('skips foreign layers (urls) in the existence check list, but keeps them described', () => {
    const m = checkManifest(
      manifest({
        layers: [
          {
            mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
            digest: D,
            size: 1,
            urls: ['https://x'],
          },
        ],
      }),
      OCI,
    );
    expect(m.blobs[1]?.foreign).toBe(true);
  });

  it.each([
    ['not JSON', Buffer.from('{'), OCI],
    ['an array', Buffer.from('[]'), OCI],
    [
      'schema 1',
      Buffer.from('{"schemaVersion":1}'),
      'application/vnd.docker.distribution.manifest.v1+prettyjws',
    ],
    ['no schemaVersion', Buffer.from('{"mediaType":"x"}'), OCI],
    [
      'an unknown type',
      manifest({ mediaType: 'application/vnd.example+json' }),
      'application/vnd.example+json',
    ],
    ['Content-Type disagreeing', manifest(), 'application/vnd.docker.distribution.manifest.v2+json'],
    ['a bad digest', manifest({ config: { mediaType: 'x', digest: 'sha256:12', size: 1 } }), OCI],
    ['a negative size', manifest({ config: { mediaType: 'x', digest: D, size: -1 } }), OCI],
    ['no layers', manifest({ layers: undefined }), OCI],
    [
      'an index without manifests',
      Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}'),
      'application/vnd.oci.image.index.v1+json',
    ],
    ['over 4 MiB', Buffer.alloc(4 * 1024 * 1024 + 1, 32), OCI],
  ])('refuses %s with MANIFEST_INVALID', (_what, body, type) => {
    expect(() => checkManifest(body, type)).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
  });
});
