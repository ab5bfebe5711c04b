/**
 * The ceiling this runtime allows on the hit path (docs/PERFORMANCE.md): a bare node:http server
 * holding the same objects in a Map, answering each GET/HEAD with the headers a registry sends
 * (type, length, digest, ETag) and nothing else: no routing, no logging, no metrics, no files.
 * Run as its own process: `node --import tsx bench/lib/bare-server.ts PORT MAP.json`, where the JSON
 * maps a URL path to { file, type, digest }.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

interface Entry {
  body: Buffer;
  headers: Record<string, string | number>;
}

const [port, mapFile] = process.argv.slice(2);
const declared = JSON.parse(readFileSync(mapFile as string, 'utf8')) as Record<
  string,
  { file: string; type: string; digest: string }
>;
const objects = new Map<string, Entry>();
for (const [url, o] of Object.entries(declared)) {
  const body = readFileSync(o.file);
  objects.set(url, {
    body,
    headers: {
      'Content-Type': o.type,
      'Content-Length': body.length,
      'Docker-Content-Digest': o.digest,
      ETag: `"${o.digest}"`,
    },
  });
}

createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  if (req.url === '/v2/') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{}');
    return;
  }
  const entry = objects.get(req.url ?? '');
  if (!entry) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, entry.headers);
  res.end(req.method === 'HEAD' ? undefined : entry.body);
}).listen(Number(port), '127.0.0.1');
