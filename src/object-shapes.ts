import { executionAsyncResource } from 'node:async_hooks';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/** More than V8's count of objects a constructor's size is decided on (7 in Node 20 and 24). */
const SETTLING_OBJECTS = 16;

/**
 * Builds the objects Node makes for every connection and request (sockets, requests, responses)
 * while each of them is still alive, before the first client comes. Why: V8 decides how many
 * fields a constructor's objects hold inline when it builds its seventh object, from the shapes the
 * earlier objects took that are still known. A full garbage collection just before the seventh
 * response of a process (a mirror pulled from six times, then idle while its memory reducer ran)
 * forgets them all, so ServerResponse got no inline field: every later response of the process
 * held its properties in a dictionary, and a hit cost ~22 µs of CPU instead of ~15 for as long as
 * the process ran (docs/benchmarks.md, "Response shapes"). Settled here, a collection at any time
 * can no longer do that. `tls`: the listener's connections are TLSSockets.
 */
export function settleConnectionShapes(tls: boolean): void {
  const alive: Socket[] = [];
  const requests: IncomingMessage[] = [];
  for (let i = 0; i < SETTLING_OBJECTS; i++) {
    const socket = new Socket();
    alive.push(socket);
    if (tls) alive.push(new TLSSocket(socket, { isServer: true }));
    const req = new IncomingMessage(socket);
    req.method = 'GET';
    req.url = '/';
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = '1.1';
    const res = new ServerResponse(req);
    // The fields a response gains with its headers, so they are counted too.
    res.writeHead(200, { 'content-length': '0' });
    requests.push(req);
  }
  for (const s of alive) s.destroy();
  for (const r of requests) r.destroy();
}

/** Tick objects of process.nextTick, kept for the life of the process: see keepTickShapes. */
const keptTicks: object[] = [];
let keeping = false;

/**
 * Keeps two of the objects process.nextTick makes for its callbacks (one without arguments, one
 * with) alive for as long as the process runs. Why: Node builds them with an object literal that
 * has symbol keys, and V8 remembers, per property of that literal, the shape it was added to. A full
 * garbage collection while no tick object was alive (a mirror idle after its first requests, its
 * memory reducer running) left three of its four properties (Node 24.21: four of five) megamorphic
 * for the rest of the process: every later tick defined them in V8's runtime instead of
 * compiled code, and Node's HTTP and stream code calls nextTick several times per request, so a
 * 1 KiB hit cost ~2.5 µs more CPU (docs/benchmarks.md, "Response shapes"). With one tick object of
 * each kind alive, their shapes outlive every collection. The nextTick callbacks run before the
 * listener takes its first connection. Once per process, however many mirrors it starts (tests).
 */
export function keepTickShapes(): void {
  if (keeping) return;
  keeping = true;
  const keep = () => {
    // Inside a tick callback, the resource Node is running it for is the tick object itself.
    keptTicks.push(executionAsyncResource());
  };
  process.nextTick(keep);
  process.nextTick(keep, 'with an argument');
}
