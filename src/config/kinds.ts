import bytes from 'bytes-iec';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';

/**
 * What an option's value is. Every source ends in the YAML file's form: a flag's or an environment
 * variable's text is turned into it by `fromText`, and `schema` checks it whichever source it came
 * from, so a value is refused the same way from a flag, the environment or the file.
 */
export interface Kind<F> {
  schema: z.ZodType<F>;
  fromText(text: string): F;
  /** Repeatable flags: each occurrence adds to the earlier ones (the environment lists them comma-separated). */
  add?(previous: F | undefined, text: string): F;
  /** A flag without an argument (`--offline`, `--no-push`); its environment variable says true or false. */
  isSwitch?: true;
}

/** What --print-config writes instead of a secret (the mask itself is refused as a value, see `secret`). */
export const MASK = '*****';

/** A URL with its password masked (`redis://user:*****@host`): the user name and host say which service it is. */
export function maskPassword(url: string): string {
  return url.replace(/\/\/([^@/:]*:)?[^@/]*@/, `//$1${MASK}@`);
}

const WHOLE = 'expected a whole number ≥ 0';

function whole(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError(WHOLE);
  return n;
}

/** The same check for the flags of `hubcache gc`, which are not options of the mirror. */
export function positiveInt(name: string) {
  return (value: string): number => {
    try {
      return whole(value);
    } catch {
      throw new InvalidArgumentError(`${name} must be a whole number ≥ 0`);
    }
  };
}

/** A value from a flag or the environment, checked by its schema; the message says what is expected. */
export function checked<F>(kind: Kind<F>, value: unknown): F {
  const result = kind.schema.safeParse(value);
  if (!result.success) throw new InvalidArgumentError(result.error.issues[0]?.message ?? 'invalid');
  return result.data;
}

function kind<F>(schema: z.ZodType<F>, fromText: (text: string) => F): Kind<F> {
  return { schema, fromText };
}

export const text = kind(z.string(), (t) => t);

export const nonEmpty = kind(z.string().min(1, 'must not be empty'), (t) => t);

/** A password or a URL that may hold one: the mask --print-config writes is refused, so a printed
 * configuration saved as a file cannot start a mirror that silently authenticates with "*****". */
export const secret = kind(
  z.string().refine((v) => !v.includes(MASK), 'is the mask --print-config prints: put the secret back'),
  (t) => t,
);

/** Seconds and counts: whole numbers ≥ 0. */
export const count = kind(z.number({ error: WHOLE }).int(WHOLE).nonnegative(WHOLE), whole);

export function parseBoolean(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return undefined;
}

// A switch's flag sets it without a value; commander must not read its environment variable, since
// it would take any value, "false" included, as "set" (environment.ts reads it).
export const toggle: Kind<boolean> = {
  schema: z.boolean(),
  fromText(t) {
    const b = parseBoolean(t);
    if (b === undefined) throw new InvalidArgumentError('must be true or false');
    return b;
  },
  isSwitch: true,
};

export function choice<const T extends readonly [string, ...string[]]>(values: T): Kind<T[number]> {
  const schema = z.enum(values, { error: `expected one of ${values.join(', ')}` });
  return kind(schema as z.ZodType<T[number]>, (t) => t as T[number]);
}

/** Byte sizes: `50GiB`, `500MB` or a number of bytes. */
export function toBytes(value: string | number): number {
  return Math.floor(typeof value === 'number' ? value : (bytes.parse(value) ?? Number.NaN));
}
function sizeKind(zeroAllowed: boolean): Kind<string | number> {
  const ok = (v: string | number) => {
    const n = toBytes(v);
    return Number.isFinite(n) && (n > 0 || (zeroAllowed && n === 0));
  };
  return kind(
    z.union([z.string(), z.number()]).refine(ok, 'expected a size such as 50GiB, 500MB or 1073741824'),
    (t) => t,
  );
}
export const size = sizeKind(false);
export const sizeOrZero = sizeKind(true);

/** A list of globs: repeat the flag, or separate them with commas in the environment. */
export const globs: Kind<string[]> = {
  schema: z.array(z.string().min(1)),
  fromText: (t) =>
    t
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  add: (previous, t) => [...(previous ?? []), t],
};

/** HOST:PORT, [IPv6]:PORT, :PORT or PORT. */
export function listenAddress(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) return undefined;
  return { host: m[1] || m[2] || '0.0.0.0', port };
}
export const listen = kind(
  z.string().refine((v) => listenAddress(v) !== undefined, 'expected HOST:PORT, e.g. 0.0.0.0:5000'),
  (t) => t,
);

function httpUrlProblem(value: string, credentials: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'expected an http(s) URL, e.g. https://registry-1.docker.io';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'the URL must be http:// or https://';
  // Credentials in a URL end up in logs and in --print-config.
  if (url.username || url.password) return credentials;
  return undefined;
}
const urlSchema = (credentials: string) =>
  z.string().superRefine((v, ctx) => {
    const problem = httpUrlProblem(v, credentials);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const upstreamUrlSchema = urlSchema(
  'put credentials in --upstream-username/password (or username), not the URL',
);
/** An upstream's http(s) URL, without credentials. */
export const upstreamUrl = kind(upstreamUrlSchema, (t) => t);
/** Where clients reach the mirror: an http(s) URL without credentials. */
export const mirrorUrl = kind(urlSchema('expected a URL without credentials'), (t) => t);

const TTL_RULE = /^(.+)=(\d+)$/;
const ruleSchema = z.strictObject({ pattern: z.string().min(1), ttl: count.schema });
export type TagTtlRuleValue = z.infer<typeof ruleSchema>;
function ttlRule(t: string): TagTtlRuleValue {
  const m = TTL_RULE.exec(t.trim());
  if (!m?.[1] || !m[2]) throw new InvalidArgumentError('expected PATTERN=SECONDS, e.g. latest=60');
  return { pattern: m[1], ttl: Number(m[2]) };
}
/** `PATTERN=SECONDS` per flag, comma-separated in the environment; in the file `{ pattern, ttl }`. */
export const tagTtlRules: Kind<TagTtlRuleValue[]> = {
  schema: z.array(ruleSchema),
  fromText: (t) =>
    t
      .split(',')
      .filter((p) => p.trim())
      .map(ttlRule),
  add: (previous, t) => [...(previous ?? []), ttlRule(t)],
};

const registrySchema = z.strictObject({
  url: upstreamUrlSchema,
  username: z.string().optional(),
  password: secret.schema.optional(),
  passwordFile: z.string().optional(),
  redirectHosts: z.array(z.string().min(1)).optional(),
  realmHosts: z.array(z.string().min(1)).optional(),
});
export type RegistryValue = z.infer<typeof registrySchema>;
export type RegistriesValue = Record<string, RegistryValue>;
const REGISTRY_ARG = /^([a-z0-9.-]+(?::\d+)?)=(.+)$/;
function registryArg(previous: RegistriesValue | undefined, t: string): RegistriesValue {
  const m = REGISTRY_ARG.exec(t.trim());
  if (!m?.[1] || !m[2]) throw new InvalidArgumentError('expected HOST=URL, e.g. ghcr.io=https://ghcr.io');
  return { ...previous, [m[1]]: { url: m[2] } };
}
/** Registries by host: `HOST=URL` per flag, comma-separated in the environment; the file adds credentials. */
export const registries: Kind<RegistriesValue> = {
  schema: z.record(
    z.string().regex(/^[a-z0-9.-]+(:\d+)?$/, 'expected a host such as ghcr.io'),
    registrySchema,
  ),
  fromText: (t) =>
    t
      .split(',')
      .filter((p) => p.trim())
      .reduce<RegistriesValue>(registryArg, {}),
  add: registryArg,
};
