/**
 * The hex digests a manifest of any kind refers to (schema 2, OCI, indexes, and schema 1's
 * fsLayers): what garbage collection must keep. Unparseable bodies refer to nothing.
 */
export function manifestReferences(body: Buffer): string[] {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return [];
  }
  const out: string[] = [];
  const add = (d: unknown) => {
    const digest =
      (d as { digest?: unknown; blobSum?: unknown } | null)?.digest ?? (d as { blobSum?: unknown })?.blobSum;
    if (typeof digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(digest)) out.push(digest.slice(7));
  };
  add(doc.config);
  for (const key of ['layers', 'manifests', 'fsLayers', 'blobs']) {
    const list = doc[key];
    if (Array.isArray(list)) for (const d of list) add(d);
  }
  return out;
}
