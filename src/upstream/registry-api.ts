import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { LimitFunction } from 'p-limit';
import type { Digest } from '../oci/digest.js';
import { type ErrorCode, RegistryError } from '../oci/errors.js';
import { OCI_INDEX, UPSTREAM_ACCEPT } from '../oci/media-types.js';
import { headerValue, readBody, type UpstreamClient, type UpstreamResponse } from './client.js';

/** distribution refuses manifests over 4 MiB; so do we, instead of buffering whatever comes. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** An upstream referrers page is an index: bounded like a manifest (distribution refuses > 4 MiB). */
export const MAX_REFERRERS_BYTES = 4 * 1024 * 1024;

const MAX_TAG_LIST_BYTES = 16 * 1024 * 1024;

/**
 * The upstream answered something other than success, as a client is told it when nothing cached
 * can stand in. 404 keeps its meaning (BLOB_UNKNOWN, MANIFEST_UNKNOWN or NAME_UNKNOWN, by what was
 * asked), so dockerd and containerd report "not found". Docker Hub answers 401 for repositories
 * that do not exist or are private (docs/PROTOCOL.md §1.2): a "not found" for our anonymous clients
 * too, as is 403. 429 keeps Retry-After; anything else is 503. The message names the registry that
 * answered: with several configured, a ghcr.io refusal must not read as Docker Hub's.
 */
export class UpstreamStatusError extends RegistryError {
  /** The upstream's HTTP status. */
  readonly upstreamStatus: number;
  /** How the registry is named (Route label). */
  readonly registry: string;

  constructor(
    registry: string,
    status: number,
    headers: IncomingHttpHeaders,
    notFound: ErrorCode,
    detail: Record<string, unknown>,
  ) {
    const full = { ...detail, upstreamStatus: status };
    if (status === 404) super(notFound, undefined, full);
    else if (status === 401 || status === 403)
      super('NAME_UNKNOWN', 'repository does not exist upstream or requires authorization', full);
    else if (status === 429) {
      const retry = headers['retry-after'];
      super(
        'TOOMANYREQUESTS',
        `upstream registry ${registry} rate limit: retry later`,
        full,
        typeof retry === 'string' ? { 'Retry-After': retry } : {},
      );
    } else super('UNAVAILABLE', `upstream registry ${registry} answered ${status}`, full);
    this.name = 'UpstreamStatusError';
    this.upstreamStatus = status;
    this.registry = registry;
  }

  /** The upstream does not have it (404), or will not say to us (401, 403): not an outage. */
  get missing(): boolean {
    return this.upstreamStatus === 404 || this.upstreamStatus === 401 || this.upstreamStatus === 403;
  }
}

/** A 206 for another range than the one asked (or none named): its bytes are not used. */
export class UpstreamRangeError extends Error {
  constructor(
    readonly asked: string,
    readonly answered: string | undefined,
  ) {
    super(`upstream answered Content-Range ${answered ?? '(none)'} for ${asked}`);
    this.name = 'UpstreamRangeError';
  }
}

/**
 * The registry API of one upstream, one method per endpoint, spoken over its UpstreamClient (token
 * flow, redirects, back-off). Every answer's status is checked here, and only here: a method
 * returns what was asked for or throws UpstreamStatusError (the client's own errors pass through:
 * UpstreamUnreachableError, UpstreamBackoffError, UpstreamAuthError).
 */
export class RegistryApi {
  readonly client: UpstreamClient;
  /** How errors name this registry: its URL, after its configured name when that differs. */
  readonly label: string;

  constructor(client: UpstreamClient, label: string) {
    this.client = client;
    this.label = label;
  }

  /** GET a blob: its body (to be consumed or destroyed) and its length when the upstream sent one. */
  async getBlob(repository: string, digest: Digest): Promise<{ body: Readable; size: number | undefined }> {
    const res = await this.#blob('GET', repository, digest);
    return { body: res.body, size: lengthOf(res) };
  }

  /** HEAD a blob: its length (undefined when the upstream sent none). */
  async headBlob(repository: string, digest: Digest): Promise<{ size: number | undefined }> {
    const res = await this.#blob('HEAD', repository, digest);
    res.body.destroy();
    return { size: lengthOf(res) };
  }

  /** The rest of a blob from `offset`; undefined unless the upstream answers 206 from exactly there. */
  async getBlobFrom(
    repository: string,
    digest: Digest,
    offset: number,
    size: number,
  ): Promise<Readable | undefined> {
    const res = await this.client.request({
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest.value}`,
      repository,
      headers: { range: `bytes=${offset}-` },
    });
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headerValue(res.headers['content-range']) ?? '');
    if (res.status === 206 && Number(range?.[1]) === offset && Number(range?.[3]) === size) return res.body;
    res.body.destroy();
    return undefined;
  }

  /**
   * Bytes [start, end] of a blob of `size` bytes (a ranged fill's segment, cache/ranged-fill.ts):
   * the body of a 206 whose Content-Range is exactly that range of that size. 'whole' when the
   * upstream ignored the Range and answered 200 (it sends the whole blob: not usable as a segment).
   * Throws UpstreamStatusError for any other status, UpstreamRangeError for a 206 of another range.
   */
  async getBlobRange(
    repository: string,
    digest: Digest,
    start: number,
    end: number,
    size: number,
  ): Promise<Readable | 'whole'> {
    const res = await this.client.request({
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest.value}`,
      repository,
      headers: { range: `bytes=${start}-${end}` },
    });
    if (res.status === 200) {
      res.body.destroy();
      return 'whole';
    }
    if (res.status !== 206) {
      res.body.destroy();
      throw new UpstreamStatusError(this.label, res.status, res.headers, 'BLOB_UNKNOWN', {
        digest: digest.value,
      });
    }
    const range = headerValue(res.headers['content-range']);
    if (range !== `bytes ${start}-${end}/${size}`) {
      res.body.destroy();
      throw new UpstreamRangeError(`bytes ${start}-${end}/${size}`, range);
    }
    return res.body;
  }

  /**
   * HEAD a manifest (always with the full Accept list): the digest the upstream names, if any.
   * `limit` (the caller's budget) holds until the answer's headers, not while its body is read.
   */
  async headManifest(
    repository: string,
    reference: string,
    limit?: LimitFunction,
  ): Promise<{ digest: string | undefined }> {
    const res = await this.#manifest('HEAD', repository, reference, limit);
    res.body.destroy();
    return { digest: headerValue(res.headers['docker-content-digest']) };
  }

  /** GET a manifest (bounded): its bytes, Content-Type and the digest the upstream claims. */
  async getManifest(
    repository: string,
    reference: string,
    limit?: LimitFunction,
  ): Promise<{ body: Buffer; contentType: string | undefined; digest: string | undefined }> {
    const res = await this.#manifest('GET', repository, reference, limit);
    const body = await readBody(res.body, MAX_MANIFEST_BYTES);
    return {
      body,
      contentType: headerValue(res.headers['content-type']),
      digest: headerValue(res.headers['docker-content-digest']),
    };
  }

  /** GET tags/list with the client's `n` and `last`: the upstream's JSON and its Link header. */
  async tags(
    repository: string,
    n: string | null,
    last: string | null,
  ): Promise<{ body: Buffer; link: string | undefined }> {
    const query = new URLSearchParams();
    if (n !== null) query.set('n', n);
    if (last !== null) query.set('last', last);
    const qs = query.size ? `?${query}` : '';
    const res = await this.client.request({
      method: 'GET',
      path: `/v2/${repository}/tags/list${qs}`,
      repository,
    });
    this.#check(res, 'NAME_UNKNOWN', { name: repository });
    const body = await readBody(res.body, MAX_TAG_LIST_BYTES);
    return { body, link: headerValue(res.headers.link) };
  }

  /**
   * One page of the referrers API at `path` (the first: `/v2/<name>/referrers/<digest>`): its
   * bytes and Link header. Undefined when the first page says the upstream lacks the API (404:
   * distribution 2.8; 405: some registries answer UNSUPPORTED).
   */
  async referrers(
    repository: string,
    subject: Digest,
    path: string,
    first: boolean,
    limit?: LimitFunction,
  ): Promise<{ body: Buffer; link: string | string[] | undefined } | undefined> {
    const ask = () =>
      this.client.request({ method: 'GET', path, repository, headers: { accept: OCI_INDEX } });
    const res = await (limit ? limit(ask) : ask());
    if (first && (res.status === 404 || res.status === 405)) {
      res.body.destroy();
      return undefined;
    }
    this.#check(res, 'MANIFEST_UNKNOWN', { referrers: subject.value });
    const body = await readBody(res.body, MAX_REFERRERS_BYTES);
    return { body, link: res.headers.link };
  }

  /**
   * Whether this registry serves exactly `repository`: its tag list answers. 401, 403 and 404 all
   * mean "not to us" (Docker Hub answers 401 for a repository that does not exist, docs/PROTOCOL.md
   * §1.2); anything else, or no answer, is "cannot say".
   */
  async servesRepository(repository: string): Promise<boolean | undefined> {
    try {
      const res = await this.client.request({
        method: 'GET',
        path: `/v2/${repository}/tags/list?n=1`,
        repository,
      });
      res.body.destroy();
      if (res.status === 200) return true;
      if (res.status === 401 || res.status === 403 || res.status === 404) return false;
      return undefined;
    } catch {
      return undefined;
    }
  }

  async #blob(method: 'GET' | 'HEAD', repository: string, digest: Digest): Promise<UpstreamResponse> {
    const res = await this.client.request({
      method,
      path: `/v2/${repository}/blobs/${digest.value}`,
      repository,
    });
    this.#check(res, 'BLOB_UNKNOWN', { digest: digest.value });
    return res;
  }

  async #manifest(
    method: 'GET' | 'HEAD',
    repository: string,
    reference: string,
    limit: LimitFunction | undefined,
  ): Promise<UpstreamResponse> {
    const ask = () =>
      this.client.request({
        method,
        path: `/v2/${repository}/manifests/${reference}`,
        repository,
        headers: { accept: UPSTREAM_ACCEPT },
      });
    const res = await (limit ? limit(ask) : ask());
    this.#check(res, 'MANIFEST_UNKNOWN', { reference });
    return res;
  }

  /** The one status check: 200, else the body is dropped and UpstreamStatusError thrown. */
  #check(res: UpstreamResponse, notFound: ErrorCode, detail: Record<string, unknown>): void {
    if (res.status === 200) return;
    res.body.destroy();
    throw new UpstreamStatusError(this.label, res.status, res.headers, notFound, detail);
  }
}

function lengthOf(res: UpstreamResponse): number | undefined {
  const length = Number(headerValue(res.headers['content-length']));
  return Number.isFinite(length) ? length : undefined;
}
