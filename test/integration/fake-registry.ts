import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A hand-written upstream for FAULT INJECTION ONLY (corrupt bytes, stalls, drops, 429s, redirects):
 * the real-upstream proofs live in test/interop against Debian's docker-registry. It speaks just
 * enough of the distribution API, with a Docker-Hub-shaped Bearer challenge and token endpoint.
 */
export type Fault =
  | { kind: 'corrupt' }
  | { kind: 'truncate'; after: number }
  | { kind: 'stall'; after: number }
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Sends `after` bytes, then the rest once `open` resolves; `corrupt` flips a byte in the middle first. */
  | { kind: 'gate'; after: number; open: Promise<void>; corrupt?: boolean }
  /** Takes the request and never answers (an upstream that accepts connections and hangs). */
  | { kind: 'hang' };

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  host: string | undefined;
  range: string | undefined;
}

export interface FakeRegistry {
  url: string;
  requests: SeenRequest[];
  cdnRequests: SeenRequest[];
  tokenRequests: number;
  /** TCP connections the registry (not its CDN) accepted. */
  connections: number;
  addBlob(bytes: Buffer): string;
  addManifest(repository: string, tag: string | undefined, body: unknown, mediaType: string): string;
  /** Headers added to every manifest answer (e.g. Docker Hub's ratelimit-*). */
  manifestHeaders: Record<string, string>;
  /** Answer every blob GET with the whole blob (200), whatever Range it asks: an upstream without Range support. */
  ignoreRange: boolean;
  /** Returns the fault for a request, if any (consulted per request). */
  fault: ((req: SeenRequest) => Fault | undefined) | undefined;
  count(method: string, pattern: RegExp): number;
  /**
   * Blob downloads started: GETs without Range. A ranged fill's other segments and a resume are
   * Range GETs of the same download (cache/ranged-fill.ts).
   */
  downloads(pattern: RegExp): number;
  close(): Promise<void>;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function startFakeRegistry(
  options: { auth?: boolean; cdn?: boolean } = {},
): Promise<FakeRegistry> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { body: Buffer; mediaType: string }>();
  const tags = new Map<string, string>();
  let port = 0;
  let cdnPort = 0;

  const registry: FakeRegistry = {
    url: '',
    requests: [],
    cdnRequests: [],
    tokenRequests: 0,
    connections: 0,
    manifestHeaders: {},
    ignoreRange: false,
    fault: undefined,
    addBlob(bytes) {
      const digest = sha256(bytes);
      blobs.set(digest, bytes);
      return digest;
    },
    addManifest(repository, tag, body, mediaType) {
      const bytes = Buffer.from(JSON.stringify(body));
      const digest = sha256(bytes);
      manifests.set(digest, { body: bytes, mediaType });
      if (tag) tags.set(`${repository}:${tag}`, digest);
      return digest;
    },
    downloads(pattern) {
      return registry.requests.filter(
        (r) => (!options.auth || r.authorization) && r.method === 'GET' && !r.range && pattern.test(r.path),
      ).length;
    },
    count(method, pattern) {
      // Authorized requests only: the first one of a scope is answered 401 and retried.
      return registry.requests.filter(
        (r) => (!options.auth || r.authorization) && r.method === method && pattern.test(r.path),
      ).length;
    },
    async close() {
      await Promise.all([closeServer(server), closeServer(cdn)]);
    },
  };

  const send = (
    res: ServerResponse,
    status: number,
    headers: Record<string, string | number>,
    body: Buffer,
    method: string,
    fault: Fault | undefined,
  ) => {
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'Content-Type': 'application/json', ...fault.headers });
      res.end(JSON.stringify({ errors: [{ code: 'FAULT', message: 'injected' }] }));
      return;
    }
    res.writeHead(status, { 'Content-Length': body.length, ...headers });
    if (method === 'HEAD') return void res.end();
    if (!fault) return void res.end(body);
    let bytes = body;
    if (fault.kind === 'corrupt' || (fault.kind === 'gate' && fault.corrupt)) {
      bytes = Buffer.from(body);
      bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0xff;
    }
    if (fault.kind === 'corrupt') return void res.end(bytes);
    if (fault.kind === 'truncate') {
      // Close after the partial body is flushed (FIN, like an upstream that goes away mid-body).
      res.write(bytes.subarray(0, fault.after), () => res.socket?.destroySoon());
      return;
    }
    res.write(bytes.subarray(0, fault.after));
    if (fault.kind === 'stall') return; // never finishes: the mirror's idle timeout must fire
    void fault.open.then(() => res.end(bytes.subarray(fault.after)));
  };

  /**
   * Blobs honour `Range: bytes=N-` and `bytes=N-M` (206), as registries and CDNs do: resumes and
   * ranged fills depend on it.
   */
  const sendBlob = (
    res: ServerResponse,
    seen: SeenRequest,
    blob: Buffer,
    headers: Record<string, string>,
    fault: Fault | undefined,
  ) => {
    const m = registry.ignoreRange ? null : /^bytes=(\d+)-(\d*)$/.exec(seen.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m?.[2] ? Math.min(Number(m[2]), blob.length - 1) : blob.length - 1;
    if (!m || start >= blob.length || end < start) {
      return send(
        res,
        200,
        { 'Content-Type': 'application/octet-stream', ...headers },
        blob,
        seen.method,
        fault,
      );
    }
    const range = { 'Content-Range': `bytes ${start}-${end}/${blob.length}` };
    send(
      res,
      206,
      { 'Content-Type': 'application/octet-stream', ...headers, ...range },
      blob.subarray(start, end + 1),
      seen.method,
      fault,
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const seen: SeenRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      authorization: req.headers.authorization,
      host: req.headers.host,
      range: req.headers.range,
    };
    if (url.pathname === '/token') {
      registry.tokenRequests++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return void res.end(JSON.stringify({ token: `tok-${registry.tokenRequests}`, expires_in: 300 }));
    }
    registry.requests.push(seen);
    if (options.auth && !req.headers.authorization?.startsWith('Bearer tok-')) {
      const repo = /^\/v2\/(.+)\/(?:manifests|blobs|tags)\//.exec(url.pathname)?.[1];
      const scope = repo ? `,scope="repository:${repo}:pull"` : '';
      res.writeHead(401, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="fake.registry"${scope}`,
      });
      return void res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
    }
    const fault = registry.fault?.(seen);
    let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (m?.[1] && m[2]) {
      const digest = m[2].startsWith('sha256:') ? m[2] : tags.get(`${m[1]}:${m[2]}`);
      const manifest = digest ? manifests.get(digest) : undefined;
      if (!digest || !manifest) return notFound(res, 'MANIFEST_UNKNOWN');
      return send(
        res,
        200,
        { 'Content-Type': manifest.mediaType, 'Docker-Content-Digest': digest, ...registry.manifestHeaders },
        manifest.body,
        seen.method,
        fault,
      );
    }
    m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    if (m?.[2]) {
      const blob = blobs.get(m[2]);
      if (!blob) return notFound(res, 'BLOB_UNKNOWN');
      if (options.cdn && seen.method === 'GET' && fault?.kind !== 'status') {
        res.writeHead(307, { Location: `http://localhost:${cdnPort}/cdn/${m[2]}?sig=abc` });
        return void res.end();
      }
      return sendBlob(res, seen, blob, { 'Docker-Content-Digest': m[2] }, fault);
    }
    m = /^\/v2\/(.+)\/tags\/list$/.exec(url.pathname);
    if (m?.[1]) {
      if (fault?.kind === 'status') return send(res, 200, {}, Buffer.alloc(0), seen.method, fault);
      const prefix = `${m[1]}:`;
      const list = [...tags.keys()]
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length))
        .sort();
      if (list.length === 0) return notFound(res, 'NAME_UNKNOWN');
      res.writeHead(200, {
        'Content-Type': 'application/json',
        Link: `<http://127.0.0.1:${port}/v2/${m[1]}/tags/list?last=x&n=1>; rel="next"`,
      });
      return void res.end(JSON.stringify({ name: m[1], tags: list }));
    }
    if (url.pathname === '/v2/') return void res.writeHead(200).end('{}');
    notFound(res, 'NAME_UNKNOWN');
  };

  const server = createServer(handle);
  server.on('connection', () => {
    registry.connections++;
  });
  // The CDN: another host name, no auth expected; records what arrives.
  const cdn = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const seen = {
      method: req.method ?? 'GET',
      path: url.pathname,
      authorization: req.headers.authorization,
      host: req.headers.host,
      range: req.headers.range,
    };
    registry.cdnRequests.push(seen);
    const blob = blobs.get(url.pathname.replace('/cdn/', ''));
    if (!blob) return notFound(res, 'BLOB_UNKNOWN');
    sendBlob(res, seen, blob, {}, registry.fault?.(seen));
  });
  port = await listen(server);
  cdnPort = await listen(cdn);
  registry.url = `http://127.0.0.1:${port}`;
  return registry;
}

function notFound(res: ServerResponse, code: string): void {
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ errors: [{ code, message: 'not found' }] }));
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
