import { statSync } from 'node:fs';
import path from 'node:path';
import { checked } from '../config/kinds.js';
import {
  envNames,
  flagName,
  OPTIONS,
  type OptionId,
  type OptionSpec,
  type OptionValue,
} from '../config/options.js';

/**
 * An option the subcommands share with the mirror (gc's --data and --grace), read as `serve` reads
 * it: the table's environment names (the derived one first, then its aliases), parsed and checked
 * by the table's kind. Undefined when none of its variables is set.
 */
export function fromEnvironment<K extends OptionId>(
  id: K,
  env: NodeJS.ProcessEnv = process.env,
): OptionValue<K> | undefined {
  const spec = OPTIONS[id] as OptionSpec<unknown>;
  const name = envNames(spec).find((n) => env[n] !== undefined);
  if (name === undefined) return undefined;
  try {
    return checked(spec.kind, spec.kind.fromText(env[name] ?? '')) as OptionValue<K>;
  } catch (err) {
    throw new Error(`${name} (${flagName(spec)}): ${(err as Error).message}`);
  }
}

/** The table's default for an option, as `serve` has it. */
export function tableDefault<K extends OptionId>(id: K): OptionValue<K> {
  return (OPTIONS[id] as OptionSpec<unknown>).default as OptionValue<K>;
}

/**
 * A --data folder that must exist: a mistyped path would otherwise read as an empty cache (stats'
 * zeros) or collect nothing, and both look like success.
 */
export function existingDataDir(dir: string, flag = '--data'): string {
  const resolved = path.resolve(dir);
  let isDir = false;
  try {
    isDir = statSync(resolved).isDirectory();
  } catch {}
  if (!isDir) throw new Error(`${flag} ${resolved}: no such directory (is it the mirror's cache folder?)`);
  return resolved;
}

/** `env NAME` (and its aliases), for a flag's help. */
export function envHelp(id: OptionId): string {
  return `env ${envNames(OPTIONS[id] as OptionSpec<unknown>).join(' or ')}`;
}
