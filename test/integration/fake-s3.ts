import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Just enough of S3 (path-style GET, HEAD, PUT, DELETE of one object) to plant a bad object in the
 * shared store, or make the bucket stall, and see what the mirror does. Fault injection only: the
 * proof against a real S3 server (Ceph RGW) is test/interop/shared-hostile.test.ts.
 */
export interface FakeS3 {
  url: string;
  objects: Map<string, Buffer>;
  /** `METHOD key` of every request, as its headers arrive. */
  seen: string[];
  /** The one bucket there is (`cache`): any other answers 404 NoSuchBucket, as S3 and RGW do. */
  bucket: string;
  /** DELETE answered 403 (a replica allowed to read and write but not to delete). */
  refuseDelete: boolean;
  /** PUT answered 403 (a replica's credentials that may only read). */
  refusePut: boolean;
  /**
   * Answers a request itself when it returns true (after the request's body was read): a stall, a
   * slow body. Anything left unanswered is cut by close().
   */
  hook:
    | ((req: IncomingMessage, res: ServerResponse, key: string, found: Buffer | undefined) => boolean)
    | undefined;
  close(): Promise<void>;
}

/**
 * A replica's options for the bucket at `endpoint` (its S3 client takes credentials from the
 * environment: set here, any will do for the fake).
 */
export function bucketArgs(endpoint: string, bucket = 'cache'): string[] {
  process.env.AWS_ACCESS_KEY_ID = 'x';
  process.env.AWS_SECRET_ACCESS_KEY = 'y';
  return ['--s3-bucket', bucket, '--s3-endpoint', endpoint, '--s3-path-style'];
}

/** The key of a blob in the bucket (no prefix). */
export const keyOf = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;

export async function startFakeS3(): Promise<FakeS3> {
  const s3: FakeS3 = {
    url: '',
    objects: new Map(),
    seen: [],
    bucket: 'cache',
    refuseDelete: false,
    refusePut: false,
    hook: undefined,
    close: async () => {},
  };
  const etag = (data: Buffer) => `"${createHash('md5').update(data).digest('hex')}"`;
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    const [, bucket = '', key = ''] = /^\/([^/]*)\/?(.*)$/.exec(path) ?? [];
    s3.seen.push(`${req.method} ${key}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const found = s3.objects.get(key);
      if (s3.hook?.(req, res, key, found)) return;
      const refuse = (status: number, code: string) => {
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(
          req.method === 'HEAD' ? undefined : `<?xml version="1.0"?><Error><Code>${code}</Code></Error>`,
        );
      };
      if (bucket !== s3.bucket) return refuse(404, 'NoSuchBucket');
      // HeadBucket: the bucket is there.
      if (key === '') return void res.writeHead(200).end();
      if (req.method === 'PUT' && s3.refusePut) return refuse(403, 'AccessDenied');
      if (req.method === 'PUT') {
        const data = Buffer.concat(chunks);
        s3.objects.set(key, data);
        return void res.writeHead(200, { etag: etag(data) }).end();
      }
      if (req.method === 'DELETE') {
        if (s3.refuseDelete) return refuse(403, 'AccessDenied');
        s3.objects.delete(key);
        return void res.writeHead(204).end();
      }
      if (!found) return refuse(404, 'NoSuchKey');
      res.writeHead(200, { 'content-length': found.length, etag: etag(found) });
      res.end(req.method === 'HEAD' ? undefined : found);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  s3.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  s3.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return s3;
}
