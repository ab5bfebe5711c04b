import { Command, Option } from 'commander';
import { checked } from './kinds.js';
import { defaultShown, envNames, OPTION_LIST, type OptionId, type OptionSpec } from './options.js';

/**
 * The commander command, one flag per option of the table. Commander only reads the command line:
 * defaults and the environment are applied in parse.ts (commander's .env() would take a switch's
 * "false" as "set"), and its help names both.
 */
export function buildCommand(): Command {
  const command = new Command('hubcache').description(
    'A pull-through caching mirror for Docker Hub (OCI distribution API).',
  );
  for (const [, spec] of OPTION_LIST) command.addOption(flagOf(spec));
  return command;
}

function flagOf(spec: OptionSpec<unknown>): Option {
  const shown = defaultShown(spec);
  const option = new Option(
    spec.flag,
    `${spec.help} (env ${envNames(spec)[0]}${shown === undefined ? '' : `; default: ${shown}`})`,
  );
  const { kind } = spec;
  if (kind.isSwitch) return option;
  return option.argParser((text: string, previous: unknown) =>
    checked(kind, kind.add ? kind.add(previous, text) : kind.fromText(text)),
  );
}

/** What the command line set, by option. */
export function commandLineValues(command: Command): Map<OptionId, unknown> {
  const values = new Map<OptionId, unknown>();
  for (const [id, spec] of OPTION_LIST) {
    const name = new Option(spec.flag).attributeName();
    if (command.getOptionValueSource(name) === 'cli') values.set(id, command.getOptionValue(name));
  }
  return values;
}
