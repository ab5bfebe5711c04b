import { readFileSync } from 'node:fs';
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

/** The version in package.json (two folders up from src/config/ and from dist/config/ alike). */
export function packageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/**
 * `-V, --version` and a Commands section in --help, one line each. Not commander subcommands: with
 * those, commander would answer a bare `hubcache` (serve, no operands) with its help.
 */
export function withCommands(command: Command, commands: [name: string, summary: string][]): Command {
  const width = Math.max(...commands.map(([name]) => name.length)) + 2;
  const lines = commands.map(([name, summary]) => `  ${name.padEnd(width)}${summary}`);
  return command
    .usage('[command] [options]')
    .version(packageVersion())
    .addHelpText(
      'after',
      `\nCommands:\n${lines.join('\n')}\n\nRun \`hubcache <command> --help\` for a command's options.`,
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
