import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { Agent } from 'undici';
import { imageBlobs, parseManifestJson } from '../oci/manifest.js';
import { indexEntries, isIndexType, UPSTREAM_ACCEPT } from '../oci/media-types.js';
import { DEFAULT_MIRROR_URL, MirrorUnreachableError, mirrorRequest, mirrorUrl } from './mirror-client.js';
import { createProgress, mib } from './progress.js';

interface Totals {
  /** Images fetched whole. */
  images: number;
  /** Images that failed, each with its cause. */
  failed: { image: string; error: string }[];
  manifests: number;
  blobs: number;
  layers: number;
  bytes: number;
  alreadyCached: number;
}

/** A request the mirror answered with an error: the cause as the registry said it. */
class MirrorAnswerError extends Error {}

/**
 * `hubcache prefetch IMAGE…`: warms a running mirror before a deploy by pulling through it, as a
 * client would: manifest (and the chosen platforms of an index), config and layers. Bodies are read
 * and dropped here; the mirror keeps them. An image that fails is reported in one line and the
 * others are still fetched; progress and the summary go to stderr, the summary as JSON to stdout.
 * Exits 1 when any image failed. A mirror that cannot be reached at all stops the run.
 */
export async function runPrefetch(argv: string[]): Promise<number> {
  const command = new Command('hubcache prefetch')
    .description('pull images through a running mirror so they are cached before they are needed')
    .argument('[images...]', 'images, e.g. alpine:3.20 library/nginx:1.27 user/app@sha256:…')
    .option('--url <url>', 'the running mirror', DEFAULT_MIRROR_URL)
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
  const url = mirrorUrl(opts.url);
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
  const totals: Totals = {
    images: 0,
    failed: [],
    manifests: 0,
    blobs: 0,
    layers: 0,
    bytes: 0,
    alreadyCached: 0,
  };
  const started = performance.now();
  const progress = createProgress(process.stderr, images.length);

  /** GET from the mirror: the body kept (manifests) or counted and dropped (blobs) as it arrives. */
  const get = async (path: string, keep: boolean, accept?: string) => {
    const res = await mirrorRequest(url, path, { dispatcher, headers: accept ? { accept } : {} });
    if (res.statusCode !== 200)
      throw new MirrorAnswerError(answerCause(res.statusCode, await res.body.text()));
    if (res.headers['x-cache'] === 'HIT') totals.alreadyCached++;
    const digest = res.headers['docker-content-digest'];
    if (typeof digest === 'string') fetched.add(digest);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      totals.bytes += chunk.length;
      progress.bytes(chunk.length);
      if (keep) chunks.push(chunk);
    }
    return { body: Buffer.concat(chunks), size, type: String(res.headers['content-type'] ?? '') };
  };

  const fetchImage = async (image: string) => {
    const { name, reference } = splitImage(image);
    const top = await get(`/v2/${name}/manifests/${reference}`, true, UPSTREAM_ACCEPT);
    totals.manifests++;
    const manifests: Buffer[] = [];
    if (isIndexType(top.type)) {
      for (const child of indexEntries(top.body) ?? []) {
        const platform = `${child.platform?.os}/${child.platform?.architecture}`;
        if (!opts.allPlatforms && !opts.platform.includes(platform)) continue;
        manifests.push((await get(`/v2/${name}/manifests/${child.digest}`, true, UPSTREAM_ACCEPT)).body);
        totals.manifests++;
      }
    } else {
      manifests.push(top.body);
    }
    for (const manifest of manifests) {
      const [config, ...layers] = imageBlobs(parseManifestJson(manifest)).map(
        (b) => (b as { digest?: unknown } | undefined)?.digest,
      );
      const blobs = [config, ...layers].filter((d): d is string => typeof d === 'string');
      // All of them, even after one failed: no request is left running behind the next image.
      const results = await Promise.allSettled(
        blobs.map(async (digest) => {
          const { size } = await get(`/v2/${name}/blobs/${digest}`, false);
          const layer = digest !== config;
          totals.blobs++;
          if (layer) totals.layers++;
          progress.blobDone(image, digest, size, layer);
        }),
      );
      const failure = results.find((r) => r.status === 'rejected');
      if (failure) throw failure.reason;
    }
  };

  try {
    for (const image of images) {
      progress.imageStarted(image);
      try {
        await fetchImage(image);
        totals.images++;
        progress.imageDone(image);
      } catch (err) {
        // Nothing more can work: stop with the one message saying where the mirror was looked for.
        if (err instanceof MirrorUnreachableError) throw err;
        const cause = err instanceof Error ? err.message : String(err);
        totals.failed.push({ image, error: cause });
        progress.imageFailed(image, cause);
      }
    }
    let pinned: number | undefined;
    if (opts.pin) {
      const res = await mirrorRequest(url, '/_hubcache/pins', {
        dispatcher,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ digests: [...fetched] }),
      });
      const answer = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`pinning failed: ${answerCause(res.statusCode, answer)}`);
      pinned = (JSON.parse(answer) as { pinned?: number }).pinned;
    }
    const seconds = Number(((performance.now() - started) / 1000).toFixed(2));
    const failedNames = totals.failed.map((f) => f.image).join(', ');
    progress.end(
      `prefetch: ${totals.images} of ${images.length} images ok` +
        (totals.failed.length ? `, ${totals.failed.length} failed (${failedNames})` : '') +
        `; ${totals.layers} layers, ${totals.blobs} blobs, ${mib(totals.bytes)} in ${seconds} s`,
    );
    process.stdout.write(
      `${JSON.stringify({ ...totals, ...(pinned === undefined ? {} : { pinnedBlobs: pinned }), seconds }, null, 2)}\n`,
    );
    return totals.failed.length > 0 ? 1 : 0;
  } finally {
    await dispatcher.close();
  }
}

/** The registry's own words for an error answer: `404 MANIFEST_UNKNOWN: manifest unknown`. */
function answerCause(status: number, body: string): string {
  try {
    const error = (JSON.parse(body) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    if (error?.code) return `${status} ${error.code}${error.message ? `: ${error.message}` : ''}`;
  } catch {}
  return `${status} ${body.replace(/\s+/g, ' ').trim().slice(0, 200)}`.trim();
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
