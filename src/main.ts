#!/usr/bin/env node
import { runGc } from './commands/gc.js';
import { runPrefetch } from './commands/prefetch.js';
import { runStats } from './commands/stats.js';
import { parseConfig, printableConfig } from './config.js';
import { startMirror } from './listen.js';
import { createLogger } from './observe/logger.js';
import { exitOnStartupError } from './startup-errors.js';

// Subcommands: `serve` (the default), `prefetch`, `gc`, `stats`.
const [sub, ...rest] = process.argv.slice(2);
if (sub === 'gc') {
  await runGc(rest);
  process.exit(0);
}
if (sub === 'prefetch') {
  await runPrefetch(rest);
  process.exit(0);
}
if (sub === 'healthcheck')
  process.exit(await (await import('./commands/healthcheck.js')).runHealthcheck(rest));
if (sub === 'stats') {
  await runStats(rest);
  process.exit(0);
}
const serveArgs = sub === 'serve' ? rest : process.argv.slice(2);

const config = parseConfig(serveArgs);
if (config.printConfig) {
  process.stdout.write(printableConfig(config));
  process.exit(0);
}
const log = createLogger(config.logLevel);
const running = await startMirror(config, log).catch(exitOnStartupError);
log.info(
  {
    listen: `${config.listen.host}:${config.listen.port}`,
    upstream: config.upstream.url.origin,
    data: config.dataDir,
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
