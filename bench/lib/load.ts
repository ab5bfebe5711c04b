import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Runs a command pinned to `core`, resolves with its stdout (rejects on a non-zero exit). */
export function runPinned(core: number, command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', ['-c', String(core), command, ...args]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err || out}`)),
    );
  });
}

/** Pins a running process (all its threads) to one core, or to a list of cores. */
export async function pin(pid: number, core: number | number[]): Promise<void> {
  const cores = Array.isArray(core) ? core : [core];
  await runPinned(cores[0] ?? 0, 'taskset', ['-a', '-p', '-c', cores.join(','), String(pid)]);
}

const UNITS: Record<string, number> = { us: 1e-3, ms: 1, s: 1000, m: 60_000 };
function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  return m?.[1] && m[2] ? Number(m[1]) * (UNITS[m[2]] ?? 1) : Number.NaN;
}
const SIZES: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

export interface LoadResult {
  requestsPerSecond: number;
  mibPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** wrk -t1 with --latency; GET only (wrk's parser does not handle HEAD answers). */
export async function wrk(
  url: string,
  connections: number,
  seconds: number,
  headers: string[] = [],
): Promise<LoadResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '10s'];
  for (const h of headers) args.push('-H', h);
  const out = await runPinned(1, 'wrk', [...args, url]);
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    mibPerSecond:
      transfer?.[1] && transfer[2] ? (Number(transfer[1]) * (SIZES[transfer[2]] ?? 1)) / 1024 ** 2 : 0,
    p50Ms: ms(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    p99Ms: ms(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    errors:
      (errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0) +
      (non2xx?.[1] ? Number(non2xx[1]) : 0),
  };
}

/** ab -k -i: HEAD requests (wrk cannot), keep-alive. */
export async function abHead(
  url: string,
  connections: number,
  requests: number,
  headers: string[] = [],
): Promise<LoadResult> {
  const args = ['-k', '-i', '-q', `-c${connections}`, `-n${requests}`];
  for (const h of headers) args.push('-H', h);
  const out = await runPinned(1, 'ab', [...args, url]);
  const failed = Number(/Failed requests:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  return {
    requestsPerSecond: Number(/Requests per second:\s+([\d.]+)/.exec(out)?.[1]),
    mibPerSecond: 0,
    p50Ms: Number(/\n\s+50%\s+(\d+)/.exec(out)?.[1]),
    p99Ms: Number(/\n\s+99%\s+(\d+)/.exec(out)?.[1]),
    errors: failed + non2xx,
  };
}

/** One client downloading a URL with curl: MiB/s. */
export async function curlSpeed(url: string): Promise<number> {
  const out = await runPinned(1, 'curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_download} %{http_code}',
    url,
  ]);
  const [speed, code] = out.trim().split(' ');
  if (code !== '200') throw new Error(`curl ${url}: HTTP ${code}`);
  return Number(speed) / 1024 ** 2;
}

export const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** A process's CPU time (user + system) so far, in microseconds, from /proc/PID/stat. */
export function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / 100; // USER_HZ is 100 on Linux
}

/**
 * A load run with the server's CPU time per request: the cost of one request in that server, which
 * holds steady when the machine is busy (requests per second do not), and which still tells two
 * servers apart when the load generator, not the server, is what limits requests per second.
 */
export async function withCpu<T extends LoadResult>(
  pid: number,
  requests: (r: T) => number,
  run: () => Promise<T>,
): Promise<T & { cpuUsPerRequest: number }> {
  const cpu0 = cpuMicros(pid);
  const r = await run();
  const cpu = cpuMicros(pid) - cpu0;
  return { ...r, cpuUsPerRequest: cpu / requests(r) };
}

/** wrk against a server, with the server's CPU time per request (withCpu). */
export function wrkWithCpu(
  pid: number,
  url: string,
  connections: number,
  seconds: number,
  headers: string[] = [],
): Promise<LoadResult & { cpuUsPerRequest: number }> {
  return withCpu(
    pid,
    (r) => r.requestsPerSecond * seconds,
    () => wrk(url, connections, seconds, headers),
  );
}
