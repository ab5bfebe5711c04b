#!/usr/bin/env node
import { parseConfig, printableConfig } from './config.js';
import { runGc } from './gc-command.js';
import { startMirror } from './listen.js';
import { createLogger } from './observe/logger.js';

if (process.argv[2] === 'gc') {
  await runGc(process.argv.slice(3));
  process.exit(0);
}

const config = parseConfig(process.argv.slice(2));
if (config.printConfig) {
  process.stdout.write(printableConfig(config));
  process.exit(0);
}
const log = createLogger(config.logLevel);
const running = await startMirror(config, log);
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
