import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';

/**
 * The YAML configuration file: every key of it, with the flag it stands for. Precedence, lowest
 * first: defaults, this file, HUBCACHE_* environment variables, flags. Unknown keys and wrong
 * types are refused at start with the key named (zod, strict objects).
 */
const seconds = z.number().int().nonnegative();
const size = z.union([z.string(), z.number().int().positive()]);

export const fileSchema = z.strictObject({
  listen: z.string().optional(),
  tls: z.strictObject({ cert: z.string(), key: z.string() }).optional(),
  registries: z
    .record(
      z.string().regex(/^[a-z0-9.-]+(:\d+)?$/),
      z.strictObject({
        url: z.string(),
        username: z.string().optional(),
        password: z.string().optional(),
        passwordFile: z.string().optional(),
        redirectHosts: z.array(z.string()).optional(),
        realmHosts: z.array(z.string().min(1)).optional(),
      }),
    )
    .optional(),
  htpasswd: z.string().optional(),
  anonymousPull: z.boolean().optional(),
  publicUrl: z.string().optional(),
  hosted: z
    .strictObject({
      push: z.boolean().optional(),
      repositories: z.array(z.string().min(1)).optional(),
      allowDelete: z.boolean().optional(),
      uploadExpiry: seconds.optional(),
      gcGrace: seconds.optional(),
      anonymousPush: z.enum(['loopback', 'anywhere', 'never']).optional(),
    })
    .optional(),
  storage: z
    .strictObject({
      s3: z
        .strictObject({
          bucket: z.string().min(1),
          endpoint: z.string().optional(),
          region: z.string().optional(),
          pathStyle: z.boolean().optional(),
          prefix: z.string().optional(),
        })
        .optional(),
    })
    .optional(),
  redis: z.string().optional(),
  data: z.string().optional(),
  upstream: z
    .strictObject({
      url: z.string().optional(),
      username: z.string().optional(),
      password: z.string().optional(),
      passwordFile: z.string().optional(),
      expandLibrary: z.boolean().optional(),
      concurrency: z.number().int().positive().optional(),
      connectTimeout: seconds.optional(),
      headersTimeout: seconds.optional(),
      idleTimeout: seconds.optional(),
      redirectHosts: z.array(z.string().min(1)).optional(),
      realmHosts: z.array(z.string().min(1)).optional(),
    })
    .optional(),
  tags: z
    .strictObject({
      ttl: seconds.optional(),
      rules: z.array(z.strictObject({ pattern: z.string().min(1), ttl: seconds })).optional(),
    })
    .optional(),
  cache: z
    .strictObject({
      maxSize: size.optional(),
      minFreeSpace: size.optional(),
      memoryMb: z.number().int().nonnegative().optional(),
    })
    .optional(),
  offline: z.boolean().optional(),
  clientHeaderTimeout: seconds.optional(),
  metricsPath: z.string().optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
});

export type ConfigFile = z.infer<typeof fileSchema>;

/** File key path → the commander option it sets (the flag's attribute name). */
export const FILE_KEYS: Record<string, string> = {
  listen: 'listen',
  'tls.cert': 'tlsCert',
  'tls.key': 'tlsKey',
  registries: 'registry',
  htpasswd: 'htpasswd',
  anonymousPull: 'anonymousPull',
  publicUrl: 'publicUrl',
  'hosted.anonymousPush': 'anonymousPush',
  'hosted.push': 'push',
  'hosted.repositories': 'hosted',
  'hosted.allowDelete': 'allowDelete',
  'hosted.uploadExpiry': 'uploadExpiry',
  'hosted.gcGrace': 'gcGrace',
  'storage.s3.bucket': 's3Bucket',
  'storage.s3.endpoint': 's3Endpoint',
  'storage.s3.region': 's3Region',
  'storage.s3.pathStyle': 's3PathStyle',
  'storage.s3.prefix': 's3Prefix',
  redis: 'redis',
  data: 'data',
  'upstream.url': 'upstream',
  'upstream.username': 'upstreamUsername',
  'upstream.password': 'upstreamPassword',
  'upstream.passwordFile': 'upstreamPasswordFile',
  'upstream.expandLibrary': 'expandLibrary',
  'upstream.concurrency': 'upstreamConcurrency',
  'upstream.connectTimeout': 'connectTimeout',
  'upstream.headersTimeout': 'headersTimeout',
  'upstream.idleTimeout': 'idleTimeout',
  'upstream.redirectHosts': 'upstreamRedirectHost',
  'upstream.realmHosts': 'upstreamRealmHost',
  'tags.ttl': 'tagTtl',
  'tags.rules': 'tagTtlRule',
  'cache.maxSize': 'maxSize',
  'cache.minFreeSpace': 'minFreeSpace',
  'cache.memoryMb': 'memoryCacheMb',
  offline: 'offline',
  clientHeaderTimeout: 'clientHeaderTimeout',
  logLevel: 'logLevel',
  metricsPath: 'metricsPath',
};

export class ConfigFileError extends Error {}

/** Reads and validates the file; the error names the file and the key. */
export function readConfigFile(file: string): Map<string, unknown> {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8')) ?? {};
  } catch (err) {
    throw new ConfigFileError(`${file}: ${(err as Error).message}`);
  }
  const result = fileSchema.safeParse(doc);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue ? [...issue.path, ...('keys' in issue ? (issue.keys as string[]) : [])].join('.') : '';
    throw new ConfigFileError(`${file}: ${key || '(top level)'}: ${issue?.message ?? 'invalid'}`);
  }
  const values = new Map<string, unknown>();
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      // `registries` is one value (a map by host), not keys to descend into.
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && key !== 'registries') {
        walk(v as Record<string, unknown>, key);
      } else if (v !== undefined) values.set(key, v);
    }
  };
  walk(result.data as Record<string, unknown>, '');
  return values;
}
