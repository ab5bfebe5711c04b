// The options themselves (flag, environment variable, file key, default, check, help) are the
// table in config/options.ts; config/types.ts is the Config they make, which the rest of the mirror reads.
export { buildCommand } from './config/cli.js';
export { positiveInt } from './config/kinds.js';
export { DOCKER_HUB_REDIRECT_HOSTS } from './config/options.js';
export { parseConfig } from './config/parse.js';
export { printableConfig } from './config/print.js';
export {
  ANONYMOUS_PUSH,
  type AnonymousPush,
  type Config,
  type HostedConfig,
  type S3Config,
  type TagTtlRule,
  type UpstreamConfig,
} from './config/types.js';

import { parseConfig } from './config/parse.js';
import type { Config } from './config/types.js';

/** Config for embedding (tests, benchmarks): defaults with overrides. */
export function configWith(overrides: {
  upstream: string;
  dataDir: string;
  listen?: string;
  tagTtlSeconds?: number;
  extraArgs?: string[];
}): Config {
  const args = ['--upstream', overrides.upstream, '--data', overrides.dataDir, '--log-level', 'silent'];
  if (overrides.listen) args.push('--listen', overrides.listen);
  if (overrides.tagTtlSeconds !== undefined) args.push('--tag-ttl', String(overrides.tagTtlSeconds));
  return parseConfig([...args, ...(overrides.extraArgs ?? [])]);
}
