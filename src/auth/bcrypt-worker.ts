import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * bcrypt off the event loop. bcryptjs is JavaScript that runs 100 ms slices between yields: on the
 * event loop, every check of a wrong password (~70-110 ms at htpasswd's default cost 10) stalls
 * every other request, cached pulls included. One worker thread does the checks, one at a time.
 * The worker is plain JavaScript given as a string (so it runs the same from src/ under the tests
 * and from dist/), importing bcryptjs by the path this module resolves.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.bcrypt).then((m) => {
  const bcrypt = m.default ?? m;
  parentPort.on('message', ({ id, password, hash }) => {
    let ok = false;
    try { ok = bcrypt.compareSync(password, hash); } catch {}
    parentPort.postMessage({ id, ok });
  });
});
`;

export class BcryptWorker {
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, (ok: boolean) => void>();

  compare(password: string, hash: string): Promise<boolean> {
    const worker = this.#start();
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      worker.postMessage({ id, password, hash });
    });
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const bcrypt = pathToFileURL(createRequire(import.meta.url).resolve('bcryptjs')).href;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bcrypt } });
    // Idle, it must not keep the process alive (tests, a CLI run, shutdown).
    worker.unref();
    worker.on('message', ({ id, ok }: { id: number; ok: boolean }) => {
      this.#pending.get(id)?.(ok);
      this.#pending.delete(id);
    });
    worker.on('error', () => this.#fail());
    worker.on('exit', () => this.#fail());
    this.#worker = worker;
    return worker;
  }

  /** A dead worker refuses what it had; the next check starts a new one. */
  #fail(): void {
    this.#worker = undefined;
    for (const resolve of this.#pending.values()) resolve(false);
    this.#pending.clear();
  }
}
