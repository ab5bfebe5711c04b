import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import graph of src/, read from the sources: relative `import … from './…'`, `export … from`
 * and `import('./…')`. Type-only imports count too: a cycle of types is still two modules that
 * cannot be understood apart.
 */
const SRC = path.resolve(import.meta.dirname, '../../src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

function graph(): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    const targets = new Set<string>();
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const spec = m[1] as string;
      targets.add(path.relative(SRC, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts'));
    }
    edges.set(path.relative(SRC, file), [...targets]);
  }
  return edges;
}

/** A module's folder under src/ ('cache', 'hosted', …), or its own name for top-level files ('mirror'). */
function layer(module: string): string {
  const parts = module.split(path.sep);
  return parts.length > 1 ? (parts[0] as string) : module.replace(/\.ts$/, '');
}

/**
 * Which folders each folder may import besides itself: dependencies point down, never back up.
 * oci/ and storage/ are the protocol and the data directory's layout, with no knowledge of the
 * rest; shared/ is the replicas' tier (S3, Redis, the fleet's keys) below the caches, the hosted
 * repositories and the token service that use it; hosted/ stores pushed content in the cache's blob
 * store; the subcommands sit beside the server, not under it.
 */
const ALLOWED: Record<string, string[]> = {
  oci: [],
  storage: [],
  // A leaf of small helpers on Map, for any folder.
  maps: [],
  observe: ['oci', 'maps'],
  auth: ['oci', 'observe', 'storage', 'shared'],
  shared: ['oci', 'observe', 'storage', 'config', 'maps'],
  cache: ['oci', 'observe', 'storage', 'config', 'shared', 'upstream'],
  hosted: ['oci', 'observe', 'storage', 'cache', 'shared'],
  // Requests between replicas (signed with the fleet's peer key): below the caches that use them.
  peer: ['observe', 'shared'],
  commands: ['oci', 'observe', 'storage', 'config', 'shared', 'upstream', 'cache', 'hosted', 'auth'],
  config: [],
  upstream: ['oci', 'observe', 'config'],
  'buffer-pool': [],
  routing: ['oci', 'cache', 'upstream'],
  errors: ['oci', 'cache', 'upstream'],
  // Handlers translate HTTP to calls on the caches and hosted repositories; never the upstream.
  // Their errors become spec JSON through the one mapping (errors.ts).
  api: ['oci', 'observe', 'auth', 'cache', 'hosted', 'routing', 'buffer-pool', 'errors', 'maps'],
};

describe('the import graph of src/', () => {
  const edges = graph();

  it('resolves every relative import to a source file', () => {
    const missing = [...edges].flatMap(([from, tos]) =>
      tos.filter((to) => !edges.has(to)).map((to) => `${from} → ${to}`),
    );
    expect(missing).toEqual([]);
  });

  it('has no import cycles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (node: string): void => {
      state.set(node, 'open');
      stack.push(node);
      for (const next of edges.get(node) ?? []) {
        if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' → '));
        else if (!state.has(next)) visit(next);
      }
      stack.pop();
      state.set(node, 'done');
    };
    for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
    expect(cycles).toEqual([]);
  });

  it('points every folder’s imports down: nothing imports from a folder above it', () => {
    const upward: string[] = [];
    for (const [from, tos] of edges) {
      const allowed = ALLOWED[layer(from)];
      if (!allowed) {
        // Top-level modules wire the folders together; a folder must say what it may import.
        if (from.includes(path.sep)) upward.push(`${from}: its folder has no entry in ALLOWED`);
        continue;
      }
      for (const to of tos) {
        const target = layer(to);
        if (target !== layer(from) && !allowed.includes(target)) upward.push(`${from} → ${to}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('leaves the subcommands to main.ts: nothing else imports commands/', () => {
    const into = [...edges].flatMap(([from, tos]) =>
      layer(from) === 'main' || layer(from) === 'commands'
        ? []
        : tos.filter((to) => layer(to) === 'commands').map((to) => `${from} → ${to}`),
    );
    expect(into).toEqual([]);
  });

  it('keeps api/ away from upstream/: handlers talk to the caches, the caches to the upstream', () => {
    const into = [...edges].flatMap(([from, tos]) =>
      layer(from) === 'api'
        ? tos.filter((to) => layer(to) === 'upstream').map((to) => `${from} → ${to}`)
        : [],
    );
    expect(into).toEqual([]);
  });

  it('can fail: a made-up upward edge is found', () => {
    const allowed = ALLOWED.shared ?? [];
    expect(allowed.includes(layer(path.join('cache', 'tag-index.ts')))).toBe(false);
  });
});
