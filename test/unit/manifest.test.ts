import { describe, expect, it } from 'vitest';
import {
  imageBlobs,
  manifestObject,
  manifestReferences,
  parseDescriptor,
  parseManifestJson,
} from '../../src/oci/manifest.js';

const hex = (c: string) => c.repeat(64);
const d = (c: string, size = 1) => ({ mediaType: 'x', digest: `sha256:${hex(c)}`, size });
const bytes = (doc: unknown) => Buffer.from(JSON.stringify(doc));

describe('manifest reading', () => {
  it('lists what any kind of manifest refers to: config, layers, index entries, schema 1 fsLayers', () => {
    expect(manifestReferences(bytes({ config: d('a'), layers: [d('b'), d('c')] }))).toEqual([
      hex('a'),
      hex('b'),
      hex('c'),
    ]);
    expect(manifestReferences(bytes({ manifests: [d('d')] }))).toEqual([hex('d')]);
    expect(manifestReferences(bytes({ fsLayers: [{ blobSum: `sha256:${hex('e')}` }] }))).toEqual([hex('e')]);
  });

  it('refers to nothing when the body is not a JSON object, or a digest is not sha256', () => {
    expect(manifestReferences(Buffer.from('{'))).toEqual([]);
    expect(manifestReferences(Buffer.from('null'))).toEqual([]);
    expect(manifestReferences(bytes({ layers: [{ digest: 'sha512:00' }] }))).toEqual([]);
  });

  it('gives the object of a body, and nothing for arrays, null or broken JSON', () => {
    expect(manifestObject(bytes({ schemaVersion: 2 }))).toEqual({ schemaVersion: 2 });
    expect(manifestObject(bytes([]))).toBeUndefined();
    expect(manifestObject(Buffer.from('null'))).toBeUndefined();
    expect(manifestObject(Buffer.from('{'))).toBeUndefined();
    expect(() => parseManifestJson(Buffer.from('{'))).toThrow(SyntaxError);
  });

  it('reads a subarray body as its own bytes', () => {
    const whole = Buffer.from(`xx${JSON.stringify({ a: 1 })}yy`);
    expect(manifestObject(whole.subarray(2, whole.length - 2))).toEqual({ a: 1 });
  });

  it('lists an image manifest’s blobs as written: config first, then layers', () => {
    expect(imageBlobs({ config: d('a'), layers: [d('b')] })).toEqual([d('a'), d('b')]);
    expect(imageBlobs({ manifests: [d('c')] })).toEqual([undefined]);
    expect(imageBlobs(null)).toEqual([]);
  });

  it('checks descriptors, naming where the bad one is', () => {
    expect(parseDescriptor({ ...d('a', 3), urls: ['https://x'] }, 'layers[0]')).toMatchObject({
      size: 3,
      foreign: true,
    });
    expect(() => parseDescriptor({ ...d('a'), size: -1 }, 'layers[2]')).toThrow(/layers\[2\]\.size/);
    expect(() => parseDescriptor({ ...d('a'), digest: 'sha256:12' }, 'config')).toThrow(
      expect.objectContaining({ code: 'MANIFEST_INVALID' }),
    );
  });
});
