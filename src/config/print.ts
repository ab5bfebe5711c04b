import { stringify } from 'yaml';
import { MASK } from './kinds.js';
import { OPTION_LIST } from './options.js';
import { type Doc, setAt } from './paths.js';
import type { Config } from './types.js';

/**
 * The effective configuration as a configuration file (--print-config): every key of the table,
 * so the output loads back as the same Config. Passwords are masked, since stdout ends up in
 * terminals and CI logs; loading the mask is refused (kinds.ts, `secret`), so a saved copy cannot
 * start without its secrets being put back.
 */
export function printableConfig(config: Config): string {
  const doc: Doc = {};
  for (const [, spec] of OPTION_LIST) {
    const value = spec.cliOnly ? undefined : spec.show(config);
    if (value !== undefined) setAt(doc, spec.path, value);
  }
  return `# hubcache --print-config: passwords are masked as "${MASK}"\n${stringify(doc)}`;
}
