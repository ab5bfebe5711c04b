/** Options are named by dotted paths into the YAML document (`upstream.concurrency`). */
export type Doc = { [key: string]: unknown };

/** The value at a path, or undefined. */
export function valueAt(doc: unknown, path: string): unknown {
  let node = doc;
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Doc)[key];
  }
  return node;
}

/** Sets the value at a path, making the sections on the way. */
export function setAt(doc: Doc, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop() as string;
  let node = doc;
  for (const key of keys) {
    node[key] ??= {};
    node = node[key] as Doc;
  }
  node[last] = value;
}
