import path from 'node:path';
import { ImageLayout } from '../../test/fixtures/image-layout.js';
import { pushLayout } from '../../test/fixtures/skopeo-cli.js';

/**
 * Another image, fetched through every fresh server before it is measured: a mirror runs for days,
 * so its code is compiled and warm when a cold image arrives (a process's first requests run ~50 ms
 * slower each). Its own blobs (9 MiB, enough for a ranged fill, and 1 MiB): the measured image
 * stays cold. Pushed as library/warm:1.
 */
export async function pushWarmImage(
  work: string,
  registryHost: string,
  env: NodeJS.ProcessEnv,
  format?: 'v2s2',
): Promise<void> {
  const warm = new ImageLayout(path.join(work, 'warm'));
  const image = warm.image([
    await warm.layer([{ name: 'warm0.bin', random: 9 * 1024 * 1024 }]),
    await warm.layer([{ name: 'warm1.bin', random: 1024 * 1024 }]),
  ]);
  warm.tag('warm', image.manifest);
  await pushLayout(warm.dir, 'warm', `${registryHost}/library/warm:1`, {
    env,
    creds: 'pusher:s3cret',
    ...(format ? { format } : {}),
  });
}

/** Fetches the warm image's manifest and blobs through `base` (a mirror or a proxy). */
export async function fetchWarmImage(base: string): Promise<void> {
  const manifest = (await (
    await fetch(`${base}/v2/library/warm/manifests/1`, {
      headers: {
        accept:
          'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    })
  ).json()) as { config: { digest: string }; layers: { digest: string }[] };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)])
    await (await fetch(`${base}/v2/library/warm/blobs/${d}`)).arrayBuffer();
}
