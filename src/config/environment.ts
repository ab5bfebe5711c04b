import { checked } from './kinds.js';
import { envNames, flagName, OPTION_LIST, type OptionId } from './options.js';

/** What the HUBCACHE_* environment set, by option: the derived name first, then an older alias. */
export function environmentValues(
  env: NodeJS.ProcessEnv,
  fail: (message: string) => never,
): Map<OptionId, unknown> {
  const values = new Map<OptionId, unknown>();
  for (const [id, spec] of OPTION_LIST) {
    const name = envNames(spec).find((n) => env[n] !== undefined);
    const text = name === undefined ? undefined : env[name];
    if (name === undefined || text === undefined) continue;
    try {
      values.set(id, checked(spec.kind, spec.kind.fromText(text)));
    } catch (err) {
      fail(`error: ${name} (${flagName(spec)}): ${(err as Error).message}`);
    }
  }
  return values;
}

const KNOWN = new Set(OPTION_LIST.flatMap(([, spec]) => envNames(spec)));

/** HUBCACHE_* names that set nothing: a typo would otherwise be ignored without a word. */
export function unknownEnvironmentNames(env: NodeJS.ProcessEnv): string[] {
  // HUBCACHE_TEST_* belong to the test suites (docs/development.md), which run the mirror in-process.
  return Object.keys(env).filter(
    (name) => name.startsWith('HUBCACHE_') && !name.startsWith('HUBCACHE_TEST_') && !KNOWN.has(name),
  );
}
