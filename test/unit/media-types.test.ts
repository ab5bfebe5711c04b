import { describe, expect, it } from 'vitest';
import {
  acceptedTypes,
  bareMediaType,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  declaredMediaType,
  indexEntries,
  isIndexType,
  MANIFEST_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  UPSTREAM_ACCEPT,
} from '../../src/oci/media-types.js';

const bytes = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

// containerd's Accept header on a manifest HEAD (PROTOCOL.md §1.4).
const CONTAINERD_ACCEPT = `${DOCKER_MANIFEST}, ${DOCKER_LIST}, ${OCI_MANIFEST}, ${OCI_INDEX}, */*`;

describe('acceptedTypes', () => {
  it('answers "*" when there is no Accept header', () => {
    expect(acceptedTypes(undefined)).toEqual(new Set(['*']));
    expect(acceptedTypes('')).toEqual(new Set(['*']));
    expect(acceptedTypes([])).toEqual(new Set(['*']));
  });

  it('lists each type of a comma-separated header', () => {
    expect(acceptedTypes(`${DOCKER_MANIFEST}, ${DOCKER_LIST}`)).toEqual(
      new Set([DOCKER_MANIFEST, DOCKER_LIST]),
    );
  });

  it('merges several Accept headers, as dockerd sends them', () => {
    expect(acceptedTypes([DOCKER_MANIFEST, `${OCI_MANIFEST}, ${OCI_INDEX}`])).toEqual(
      new Set([DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX]),
    );
  });

  it('maps */* to "*" alongside the named types', () => {
    expect(acceptedTypes(CONTAINERD_ACCEPT)).toEqual(
      new Set([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, '*']),
    );
  });

  it('maps application/* to "*"', () => {
    expect(acceptedTypes('application/*')).toEqual(new Set(['*']));
  });

  it('drops parameters and lower-cases the type', () => {
    expect(acceptedTypes('Application/VND.OCI.Image.Manifest.v1+JSON; q=0.9')).toEqual(
      new Set([OCI_MANIFEST]),
    );
  });

  it.each(['q=0', 'q=0.0', 'q=0.000', 'q = 0'])('excludes a type marked %s (not acceptable)', (q) => {
    expect(acceptedTypes(`${DOCKER_MANIFEST}, ${OCI_INDEX}; ${q}`)).toEqual(new Set([DOCKER_MANIFEST]));
  });

  it('keeps a type with a small but non-zero q', () => {
    expect(acceptedTypes(`${OCI_INDEX}; q=0.01`)).toEqual(new Set([OCI_INDEX]));
  });

  it('excludes */*;q=0 rather than turning it into a wildcard', () => {
    expect(acceptedTypes(`${DOCKER_MANIFEST}, */*;q=0`)).toEqual(new Set([DOCKER_MANIFEST]));
  });
});

describe('bareMediaType', () => {
  it('strips parameters and whitespace and lower-cases', () => {
    expect(bareMediaType(' Application/JSON ; charset=utf-8')).toBe('application/json');
    expect(bareMediaType(undefined)).toBe('');
  });
});

describe('isIndexType and the type lists', () => {
  it('knows both index types and no others', () => {
    expect(isIndexType(OCI_INDEX)).toBe(true);
    expect(isIndexType(DOCKER_LIST)).toBe(true);
    expect(isIndexType(OCI_MANIFEST)).toBe(false);
    expect(isIndexType(DOCKER_MANIFEST)).toBe(false);
  });

  it('asks upstream for the four schema2/OCI types and never schema1', () => {
    expect(new Set(UPSTREAM_ACCEPT.split(', '))).toEqual(MANIFEST_TYPES);
    expect(UPSTREAM_ACCEPT).not.toContain('v1+prettyjws');
  });
});

describe('indexEntries', () => {
  it('returns the children of an index with their platforms', () => {
    const manifests = [
      {
        mediaType: OCI_MANIFEST,
        digest: `sha256:${'1'.repeat(64)}`,
        size: 10,
        platform: { os: 'linux', architecture: 'amd64' },
      },
      {
        mediaType: OCI_MANIFEST,
        digest: `sha256:${'2'.repeat(64)}`,
        size: 11,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      },
    ];
    expect(indexEntries(bytes({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }))).toEqual(manifests);
  });

  it('returns an empty list for an index with no children', () => {
    expect(indexEntries(bytes({ schemaVersion: 2, manifests: [] }))).toEqual([]);
  });

  it.each([
    ['a single manifest', bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] })],
    ['manifests that is not an array', bytes({ manifests: {} })],
    ['JSON null', bytes(null)],
    ['invalid JSON', new TextEncoder().encode('{"manifests": [')],
    ['no bytes', new Uint8Array()],
  ])('answers undefined for %s', (_what, body) => {
    expect(indexEntries(body)).toBeUndefined();
  });
});

describe('declaredMediaType', () => {
  it('returns the mediaType field', () => {
    expect(declaredMediaType(bytes({ schemaVersion: 2, mediaType: DOCKER_MANIFEST }))).toBe(DOCKER_MANIFEST);
  });

  it.each([
    ['an OCI manifest that omits it', bytes({ schemaVersion: 2, config: {}, layers: [] })],
    ['a non-string mediaType', bytes({ mediaType: 2 })],
    ['invalid JSON', new TextEncoder().encode('not json')],
    ['JSON null', bytes(null)],
  ])('answers undefined for %s', (_what, body) => {
    expect(declaredMediaType(body)).toBeUndefined();
  });
});
