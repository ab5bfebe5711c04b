#!/usr/bin/env node
import { packageVersion, withCommands } from './config/cli.js';
import { buildCommand, parseConfig, printableConfig } from './config.js';

/** A subcommand: its --help line, and its run function (a number it returns is the exit code). */
interface Subcommand {
  summary: string;
  load(): Promise<(argv: string[]) => Promise<unknown>>;
}

// `serve` is the default; the others in --help's order. Each is imported only when it runs (so is
// the server): importing them all took 3 s of `--help`, most of it the S3 client.
const SUBCOMMANDS: Record<string, Subcommand> = {
  prefetch: {
    summary: 'pull images through a running mirror before a deploy needs them',
    load: async () => (await import('./commands/prefetch.js')).runPrefetch,
  },
  gc: {
    summary: 'remove crash leftovers, orphaned markers and (--blobs) unreferenced blobs',
    load: async () => (await import('./commands/gc.js')).runGc,
  },
  stats: {
    summary: 'cache size, objects and hit ratio, from a running mirror or --data',
    load: async () => (await import('./commands/stats.js')).runStats,
  },
  healthcheck: {
    summary: "exit 0 if the configured mirror answers /healthz (the container image's HEALTHCHECK)",
    load: async () => (await import('./commands/healthcheck.js')).runHealthcheck,
  },
};

const [sub, ...rest] = process.argv.slice(2);
const subcommand = sub === undefined ? undefined : SUBCOMMANDS[sub];
if (subcommand) {
  try {
    const code = await (await subcommand.load())(rest);
    process.exit(typeof code === 'number' ? code : 0);
  } catch (err) {
    // One line, no stack: the subcommands' errors say what failed and what to do.
    process.stderr.write(`hubcache ${sub}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
const serveArgs = sub === 'serve' ? rest : process.argv.slice(2);

const command = withCommands(buildCommand(), [
  ['serve', 'run the mirror (the default command)'],
  ...Object.entries(SUBCOMMANDS).map(([name, s]): [string, string] => [name, s.summary]),
]);
const config = parseConfig(serveArgs, command);
if (config.printConfig) {
  process.stdout.write(printableConfig(config));
  process.exit(0);
}
const { createLogger } = await import('./observe/logger.js');
const { startMirror } = await import('./listen.js');
const { exitOnStartupError } = await import('./startup-errors.js');
const log = createLogger(config.logLevel);
const running = await startMirror(config, log).catch(exitOnStartupError);
log.info(
  {
    listen: `${config.listen.host}:${config.listen.port}`,
    upstream: config.upstream.url.origin,
    data: config.dataDir,
    version: packageVersion(),
  },
  'mirror listening',
);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
