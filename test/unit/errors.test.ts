import { describe, expect, it } from 'vitest';
import { ERROR_STATUS, type ErrorCode, RegistryError } from '../../src/oci/errors.js';

describe('RegistryError', () => {
  it.each([
    ['BLOB_UNKNOWN', 404],
    ['MANIFEST_UNKNOWN', 404],
    ['NAME_UNKNOWN', 404],
    ['NAME_INVALID', 400],
    ['TAG_INVALID', 400],
    ['DIGEST_INVALID', 400],
    ['PAGINATION_NUMBER_INVALID', 400],
    ['MANIFEST_BLOB_UNKNOWN', 400],
    ['UNAUTHORIZED', 401],
    ['DENIED', 403],
    ['UNSUPPORTED', 405],
    ['RANGE_INVALID', 416],
    ['TOOMANYREQUESTS', 429],
    ['UNAVAILABLE', 503],
    ['UNKNOWN', 500],
  ] as const)('answers %s with HTTP %i', (code, status) => {
    expect(new RegistryError(code).status).toBe(status);
    expect(ERROR_STATUS[code]).toBe(status);
  });

  it('gives every code a non-empty default message', () => {
    for (const code of Object.keys(ERROR_STATUS) as ErrorCode[]) {
      expect(new RegistryError(code).message, code).not.toBe('');
    }
  });

  it('serializes to the spec body {"errors":[{code,message,detail}]}', () => {
    const err = new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown: 3.20', { tag: '3.20' });
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown: 3.20', detail: { tag: '3.20' } }],
    });
  });

  it('uses the default message and a null detail when none are given', () => {
    const body = new RegistryError('BLOB_UNKNOWN').toJSON();
    expect(body).toEqual({
      errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: null }],
    });
    // The spec's JSON must keep the key even when there is nothing to say.
    expect(JSON.stringify(body)).toContain('"detail":null');
  });

  it('carries extra response headers such as Retry-After', () => {
    const err = new RegistryError('TOOMANYREQUESTS', undefined, undefined, { 'Retry-After': '60' });
    expect(err.headers).toEqual({ 'Retry-After': '60' });
    expect(new RegistryError('UNKNOWN').headers).toEqual({});
  });

  it('is an Error with a stack and the name RegistryError', () => {
    const err = new RegistryError('DENIED');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('RegistryError');
    expect(err.stack).toBeTypeOf('string');
  });
});

describe('toRegistryError: disk failures name the disk', () => {
  it.each(['ENOSPC', 'EDQUOT'])(
    '%s is 503 UNAVAILABLE saying the data disk is full, not 500 UNKNOWN',
    async (code) => {
      const { toRegistryError } = await import('../../src/errors.js');
      const e = toRegistryError(Object.assign(new Error('no space left on device'), { code }), 'https://x');
      expect(e.code).toBe('UNAVAILABLE');
      expect(e.message).toMatch(/data disk is full/);
    },
  );
});

describe('toRegistryError: upstream failures name the registry they are given', () => {
  it('unreachable, backing off and token failures all name it', async () => {
    const { toRegistryError } = await import('../../src/errors.js');
    const { UpstreamAuthError, UpstreamBackoffError, UpstreamUnreachableError } = await import(
      '../../src/upstream/errors.js'
    );
    const down = toRegistryError(new UpstreamUnreachableError('refused', 'ECONNREFUSED'), 'ghcr.io');
    expect([down.status, down.message]).toEqual([503, 'upstream registry ghcr.io unreachable']);
    const limited = toRegistryError(new UpstreamBackoffError(30), 'ghcr.io');
    expect([limited.status, limited.message, limited.headers['Retry-After']]).toEqual([
      429,
      'upstream registry ghcr.io rate limit: retry later',
      '30',
    ]);
    const token = toRegistryError(new UpstreamAuthError('realm refused'), 'ghcr.io');
    expect([token.status, token.message]).toEqual([503, 'upstream registry ghcr.io: could not get a token']);
  });
});
