import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fleetMarks, type MarkSources } from '../../src/shared/bucket-marks.js';
import type { RepositoryRecords } from '../../src/shared/hosted-records.js';

const hexOf = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const HOUR = 3_600_000;

/** A manifest naming a config and layers (hex), as a body. */
function manifest(config: string, layers: string[], children: string[] = []): Buffer {
  const d = (hex: string) => ({ digest: `sha256:${hex}`, size: 1, mediaType: 'x/y' });
  return Buffer.from(
    JSON.stringify(
      children.length
        ? { schemaVersion: 2, manifests: children.map(d) }
        : { schemaVersion: 2, config: d(config), layers: layers.map(d) },
    ),
  );
}

function sources(over: Partial<MarkSources>, bodies: Map<string, Buffer>): MarkSources {
  return {
    hostedRecords: undefined,
    tags: { repositories: async () => [], taggedManifests: async () => [] },
    localHosted: async () => new Set(),
    localMirrored: async () => new Set(),
    manifest: async (hex) => bodies.get(hex),
    linkExpiryMs: HOUR,
    ...over,
  };
}

describe('what the fleet names (shared/bucket-marks.ts)', () => {
  it("mirrored: a tag's manifest, an index's children and every blob they name", async () => {
    const [layer, config] = [hexOf('layer'), hexOf('config')];
    const child = manifest(config, [layer]);
    const index = manifest('', [], [hexOf(child)]);
    const bodies = new Map([
      [hexOf(child), child],
      [hexOf(index), index],
    ]);
    const marks = await fleetMarks(
      sources(
        {
          tags: {
            repositories: async () => ['library/alpine'],
            taggedManifests: async () => [hexOf(index), hexOf('not stored anywhere')],
          },
        },
        bodies,
      ),
    );
    expect([...marks.mirrored].sort()).toEqual(
      [hexOf(index), hexOf(child), layer, config, hexOf('not stored anywhere')].sort(),
    );
    expect(marks.hosted.size).toBe(0);
  });

  it('hosted: manifests and links are kept; an old link no manifest names is unlinked (kept this time); none is when a body is missing', async () => {
    const [layer, config, lone, young] = ['layer', 'config', 'lone', 'young'].map(hexOf) as [
      string,
      string,
      string,
      string,
    ];
    const body = manifest(config, [layer]);
    const now = Date.now();
    const repo = (manifests: string[], links: [string, number][]): RepositoryRecords => ({
      tags: new Map(),
      manifests: new Map(manifests.map((m) => [m, { mt: 'x/y', s: null, at: now }])),
      links: new Map(links.map(([h, at]) => [h, { at }])),
      deletedAt: 0,
    });
    const records: Record<string, RepositoryRecords> = {
      'team/app': repo(
        [hexOf(body)],
        [
          [layer, now - 2 * HOUR],
          [config, now - 2 * HOUR],
          [lone, now - 2 * HOUR],
          [young, now - 60_000],
        ],
      ),
      // Its manifest's body is nowhere to be read: what it names is unknown, nothing is unlinked.
      'team/unknown': repo([hexOf('missing body')], [[lone, now - 2 * HOUR]]),
    };
    const expired: [string, string[]][] = [];
    const marks = await fleetMarks(
      sources(
        {
          hostedRecords: { names: async () => Object.keys(records), read: async (n) => records[n] },
          expireLinks: async (name, hexes) => {
            expired.push([name, hexes]);
          },
        },
        new Map([[hexOf(body), body]]),
      ),
    );
    expect(expired).toEqual([['team/app', [lone]]]);
    for (const h of [hexOf(body), layer, config, lone, young, hexOf('missing body')])
      expect(marks.hosted.has(h)).toBe(true);
  });

  it('stops (throws) rather than mark from an incomplete read', async () => {
    await expect(
      fleetMarks(
        sources(
          {
            tags: {
              repositories: async () => {
                throw new Error('redis down');
              },
              taggedManifests: async () => [],
            },
          },
          new Map(),
        ),
      ),
    ).rejects.toThrow('redis down');
  });
});
