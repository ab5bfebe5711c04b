import { describe, expect, it } from 'vitest';
import * as layout from '../../src/storage/layout.js';

// Existing data directories must keep working: these paths are the on-disk format.
describe('the data directory layout', () => {
  const hex = `ab${'0'.repeat(62)}`;
  const subject = `cd${'1'.repeat(62)}`;

  it('keeps blobs, temp files, pins, uploads and the token key where they always were', () => {
    expect(layout.blobsDir('/d')).toBe('/d/blobs/sha256');
    expect(layout.blobPrefixDir('/d', 'ab')).toBe('/d/blobs/sha256/ab');
    expect(layout.blobPath('/d', hex)).toBe(`/d/blobs/sha256/ab/${hex}`);
    expect(layout.tempDir('/d')).toBe('/d/tmp');
    expect(layout.tempPath('/d', 'pins.1234')).toBe('/d/tmp/pins.1234');
    expect(layout.pinsFile('/d')).toBe('/d/pins.json');
    expect(layout.uploadsDir('/d')).toBe('/d/uploads');
    expect(layout.uploadPath('/d', 'id')).toBe('/d/uploads/id');
    expect(layout.tokenKeyFile('/d')).toBe('/d/token.key');
  });

  it('keeps both repository trees in the reference registry’s shape', () => {
    expect(layout.treeRoot('/d', 'repositories')).toBe('/d/repositories');
    expect(layout.repositoryDir('/d', 'repositories', 'library/alpine')).toBe(
      '/d/repositories/library/alpine',
    );
    expect(layout.tagPath('/d', 'repositories', 'a/b', 'latest')).toBe('/d/repositories/a/b/_tags/latest');
    expect(layout.manifestMarker('/d', 'hosted', 'a/b', hex)).toBe(`/d/hosted/a/b/_manifests/${hex}`);
    expect(layout.layerLink('/d', 'a/b', hex)).toBe(`/d/hosted/a/b/_layers/${hex}`);
    expect(layout.referrerLink('/d', 'a/b', subject, hex)).toBe(`/d/hosted/a/b/_referrers/${subject}/${hex}`);
    expect(layout.deletedMarker('/d', 'a/b')).toBe('/d/hosted/a/b/_deleted');
    expect(layout.siblingTemp('/d/hosted/a/b/_tags/v1', 'r')).toBe('/d/hosted/a/b/_tags/.v1.r');
  });
});
