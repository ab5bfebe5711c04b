/**
 * An operator's start-up mistake (port taken, a TLS or htpasswd file missing, a data folder that
 * cannot be written): one line that names the option, its value and the cause, instead of a stack
 * trace. main.ts prints `hubcache: ${message}` and exits 1; any other error keeps its stack.
 */
export class StartupError extends Error {
  /** The option at fault, as its flag (`--listen`); the environment and file set the same one. */
  readonly option: string;
  readonly value: string;

  constructor(option: string, value: string, cause: string, options?: ErrorOptions) {
    super(`${option} ${value}: ${cause}`, options);
    this.name = 'StartupError';
    this.option = option;
    this.value = value;
  }
}

/** What a system error code means to an operator, for files and folders. */
const FILE_CAUSES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'path too long',
  EIO: 'input/output error',
};

/** What listen() failing with a code means (node:net's errors carry it as `code`). */
const LISTEN_CAUSES: Record<string, string> = {
  EADDRINUSE: 'address already in use (another process listens there)',
  EACCES: 'permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'address not available (no interface of this host has it)',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name could not be resolved (DNS not answering)',
  EAFNOSUPPORT: 'address family not supported (IPv6 disabled?)',
};

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The cause of a file system error in words, with its code (`read-only file system (EROFS)`). */
export function fileCause(err: unknown): string {
  const code = codeOf(err);
  const words = code && FILE_CAUSES[code];
  if (words) return `${words} (${code})`;
  return code ? `${code}: ${(err as Error).message}` : String((err as Error)?.message ?? err);
}

/** A file the mirror reads at start (TLS certificate and key, htpasswd) could not be used. */
export function fileError(option: string, file: string, err: unknown): StartupError {
  return new StartupError(option, file, fileCause(err), { cause: err });
}

/** listen() failed: known causes become one line; anything else stays as it was. */
export function listenError(address: string, err: unknown, option = '--listen'): unknown {
  const code = codeOf(err);
  const words = code && LISTEN_CAUSES[code];
  return words ? new StartupError(option, address, words, { cause: err }) : err;
}

/**
 * For main.ts: `await startMirror(...).catch(exitOnStartupError)`. A StartupError is one line on
 * stderr and exit code 1; anything else is rethrown (and Node prints its stack).
 */
export function exitOnStartupError(err: unknown): never {
  if (!(err instanceof StartupError)) throw err;
  process.stderr.write(`hubcache: ${err.message}\n`);
  process.exit(1);
}
