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
