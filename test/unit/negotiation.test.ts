import { describe, expect, it } from 'vitest';
import {
  acceptedTypes,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  OCI_INDEX,
  OCI_MANIFEST,
  type PlatformEntry,
} from '../../src/oci/media-types.js';
import { negotiate } from '../../src/oci/negotiation.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

function index(mediaType: string, manifests: PlatformEntry[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
}

const child = (digest: string, mediaType: string, architecture: string, os = 'linux'): PlatformEntry => ({
  digest,
  mediaType,
  size: 500,
  platform: { os, architecture },
});

const DOCKER_LIST_BODY = index(DOCKER_LIST, [
  child(d('a'), DOCKER_MANIFEST, 'arm64'),
  child(d('b'), DOCKER_MANIFEST, 'amd64', 'windows'),
  child(d('c'), DOCKER_MANIFEST, 'amd64'),
  child(d('e'), DOCKER_MANIFEST, '386'),
]);

const NOTHING = new Uint8Array();

describe('negotiate (manifest by tag)', () => {
  it('serves anything to a client that sent no Accept header', () => {
    expect(negotiate(OCI_INDEX, NOTHING, acceptedTypes(undefined))).toEqual({ kind: 'serve' });
  });

  it('serves anything to a client that accepts */*', () => {
    expect(negotiate(OCI_MANIFEST, NOTHING, acceptedTypes(`${DOCKER_MANIFEST}, */*`))).toEqual({
      kind: 'serve',
    });
  });

  it('serves a type the client names', () => {
    expect(
      negotiate(DOCKER_LIST, DOCKER_LIST_BODY, acceptedTypes(`${DOCKER_MANIFEST}, ${DOCKER_LIST}`)),
    ).toEqual({
      kind: 'serve',
    });
  });

  it('gives a client that accepts no index the linux/amd64 child', () => {
    expect(negotiate(DOCKER_LIST, DOCKER_LIST_BODY, acceptedTypes(DOCKER_MANIFEST))).toEqual({
      kind: 'child',
      digest: d('c'),
    });
  });

  it('gives the linux/amd64 child of an OCI index to an OCI-manifest-only client', () => {
    const body = index(OCI_INDEX, [
      child(d('a'), OCI_MANIFEST, 'arm64'),
      child(d('f'), OCI_MANIFEST, 'amd64'),
    ]);
    expect(negotiate(OCI_INDEX, body, acceptedTypes(OCI_MANIFEST))).toEqual({
      kind: 'child',
      digest: d('f'),
    });
  });

  it('refuses an OCI manifest to a Docker-only client', () => {
    const choice = negotiate(OCI_MANIFEST, NOTHING, acceptedTypes(`${DOCKER_MANIFEST}, ${DOCKER_LIST}`));
    expect(choice.kind).toBe('none');
  });

  it('refuses an index whose linux/amd64 child is a type the client does not accept', () => {
    const body = index(OCI_INDEX, [child(d('f'), OCI_MANIFEST, 'amd64')]);
    const choice = negotiate(OCI_INDEX, body, acceptedTypes(DOCKER_MANIFEST));
    expect(choice.kind).toBe('none');
  });

  it('refuses an index with no linux/amd64 child', () => {
    const body = index(DOCKER_LIST, [
      child(d('a'), DOCKER_MANIFEST, 'arm64'),
      child(d('b'), DOCKER_MANIFEST, 'amd64', 'windows'),
    ]);
    expect(negotiate(DOCKER_LIST, body, acceptedTypes(DOCKER_MANIFEST)).kind).toBe('none');
  });

  it('refuses an index whose bytes are no index', () => {
    expect(
      negotiate(DOCKER_LIST, new TextEncoder().encode('garbage'), acceptedTypes(DOCKER_MANIFEST)).kind,
    ).toBe('none');
  });
});
