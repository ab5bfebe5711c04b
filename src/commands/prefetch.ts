import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { Agent, request } from 'undici';
import { imageBlobs, parseManifestJson } from '../oci/manifest.js';
import { indexEntries, isIndexType, UPSTREAM_ACCEPT } from '../oci/media-types.js';

interface Totals {
  images: number;
  manifests: number;
  blobs: number;
  bytes: number;
  alreadyCached: number;
}

/**
 * `hubcache prefetch IMAGE…`: warms a running mirror before a deploy by pulling through it, as a
 * client would: manifest (and the chosen platforms of an index), config and layers. Bodies are read
 * and dropped here; the mirror keeps them. Prints progress to stderr and a summary to stdout.
 */
export async function runPrefetch(argv: string[]): Promise<void> {
  const command = new Command('hubcache prefetch')
    .description('pull images through a running mirror so they are cached before they are needed')
    .argument('[images...]', 'images, e.g. alpine:3.20 library/nginx:1.27 user/app@sha256:…')
    .option('--url <url>', 'the running mirror', 'http://127.0.0.1:5000')
    .option('--file <file>', 'read images from a file, one per line (# comments)')
    .option('--platform <os/arch...>', 'platforms to fetch from multi-arch images', ['linux/amd64'])
    .option('--all-platforms', 'fetch every platform of multi-arch images')
    .option('--pin', 'keep these images through the size bound (never evicted)');
  command.parse(argv, { from: 'user' });
  const opts = command.opts<{
    url: string;
    file?: string;
    platform: string[];
    allPlatforms?: boolean;
    pin?: boolean;
  }>();
  const fetched = new Set<string>();
  const images = [...command.args];
  if (opts.file) {
    for (const line of readFileSync(opts.file, 'utf8').split('\n')) {
      const image = line.replace(/#.*/, '').trim();
      if (image) images.push(image);
    }
  }
  if (images.length === 0) command.error('error: no images given');
  const dispatcher = new Agent({ connections: 8 });
  const totals: Totals = { images: 0, manifests: 0, blobs: 0, bytes: 0, alreadyCached: 0 };
  const started = performance.now();
  const progress = (what: string) =>
    process.stderr.write(
      `\r\x1b[K[${totals.images}/${images.length}] ${(totals.bytes / 1024 / 1024).toFixed(1)} MiB ${what}`,
    );

  const fetchBody = async (path: string, accept?: string) => {
    const res = await request(new URL(path, opts.url), { dispatcher, headers: accept ? { accept } : {} });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200)
      throw new Error(`${path}: ${res.statusCode} ${body.toString().slice(0, 200)}`);
    if (res.headers['x-cache'] === 'HIT') totals.alreadyCached++;
    const digest = res.headers['docker-content-digest'];
    if (typeof digest === 'string') fetched.add(digest);
    totals.bytes += body.length;
    return { body, type: String(res.headers['content-type'] ?? '') };
  };

  for (const image of images) {
    const { name, reference } = splitImage(image);
    progress(image);
    const top = await fetchBody(`/v2/${name}/manifests/${reference}`, UPSTREAM_ACCEPT);
    totals.manifests++;
    const manifests: Buffer[] = [];
    if (isIndexType(top.type)) {
      for (const child of indexEntries(top.body) ?? []) {
        const platform = `${child.platform?.os}/${child.platform?.architecture}`;
        if (!opts.allPlatforms && !opts.platform.includes(platform)) continue;
        manifests.push((await fetchBody(`/v2/${name}/manifests/${child.digest}`, UPSTREAM_ACCEPT)).body);
        totals.manifests++;
      }
    } else {
      manifests.push(top.body);
    }
    for (const manifest of manifests) {
      const blobs = imageBlobs(parseManifestJson(manifest)).filter((b): b is { digest: string } =>
        Boolean((b as { digest?: unknown } | undefined)?.digest),
      );
      await Promise.all(
        blobs.map(async (b) => {
          await fetchBody(`/v2/${name}/blobs/${b.digest}`);
          totals.blobs++;
          progress(image);
        }),
      );
    }
    totals.images++;
  }
  let pinned: number | undefined;
  if (opts.pin) {
    const res = await request(new URL('/_hubcache/pins', opts.url), {
      dispatcher,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ digests: [...fetched] }),
    });
    const answer = (await res.body.json()) as { pinned?: number };
    if (res.statusCode !== 200)
      throw new Error(`pinning failed: ${res.statusCode} ${JSON.stringify(answer)}`);
    pinned = answer.pinned;
  }
  await dispatcher.close();
  process.stderr.write('\n');
  process.stdout.write(
    `${JSON.stringify({ ...totals, ...(pinned === undefined ? {} : { pinnedBlobs: pinned }), seconds: Number(((performance.now() - started) / 1000).toFixed(2)) }, null, 2)}\n`,
  );
}

/** `alpine:3.20` → library/alpine + 3.20 (the mirror expands the name); `x@sha256:…` by digest. */
export function splitImage(image: string): { name: string; reference: string } {
  const at = image.indexOf('@');
  if (at > 0) return { name: image.slice(0, at), reference: image.slice(at + 1) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/'))
    return { name: image.slice(0, colon), reference: image.slice(colon + 1) };
  return { name: image, reference: 'latest' };
}
