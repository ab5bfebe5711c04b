import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkPeer,
  MAX_PEER_HEADER_BYTES,
  PEER_CLOCK_SKEW_MS,
  signPeer,
  verifyPeer,
} from '../../src/peer/auth.js';
import { fleetKeys } from '../../src/shared/fleet-keys.js';

const OLD = 'o'.repeat(32);
const NEW = 'n'.repeat(40);
const ring = fleetKeys(OLD).peer;
const replica = randomUUID();
const now = 1_780_000_000_000;
const req = { method: 'GET', path: '/_peer/v1/blobs/sha256:abc?leader=1', range: 'bytes=0-99' };
const header = signPeer(ring, { ...req, replica, now });

describe('signPeer and verifyPeer', () => {
  it('verifies its own header and names the sending replica', () => {
    expect(header).toMatch(/^HubcachePeer v1 [0-9a-f-]{36}\.1780000000000\.[A-Za-z0-9_-]{43}$/);
    expect(Buffer.byteLength(header)).toBeLessThanOrEqual(MAX_PEER_HEADER_BYTES);
    expect(verifyPeer(ring, header, req, now)).toBe(replica);
  });

  it('signs a request without a Range the same as one with an empty Range', () => {
    const plain = { method: 'GET', path: '/_peer/v1/ping' };
    const h = signPeer(ring, { ...plain, replica, now });
    expect(verifyPeer(ring, h, plain, now)).toBe(replica);
    expect(verifyPeer(ring, h, { ...plain, range: 'bytes=0-0' }, now)).toBeUndefined();
  });

  it('refuses a header signed under another fleet’s key, and the same path on another ring (tokens)', () => {
    const other = fleetKeys(NEW).peer;
    expect(verifyPeer(other, header, req, now)).toBeUndefined();
    expect(verifyPeer(fleetKeys(OLD).token, header, req, now)).toBeUndefined();
    expect(checkPeer(other, header, req, now)).toEqual({ refused: 'bad signature', claimed: replica });
  });

  it('accepts a timestamp up to 30 s either way, and refuses one 31 s off', () => {
    expect(PEER_CLOCK_SKEW_MS).toBe(30_000);
    for (const skew of [-29_000, 29_000, -30_000, 30_000])
      expect(verifyPeer(ring, header, req, now + skew), `skew ${skew}`).toBe(replica);
    for (const skew of [-31_000, 31_000]) {
      expect(verifyPeer(ring, header, req, now + skew), `skew ${skew}`).toBeUndefined();
      expect(checkPeer(ring, header, req, now + skew)).toEqual({ refused: 'clock skew', claimed: replica });
    }
  });

  it('refuses the header on another method, path, query or range', () => {
    expect(verifyPeer(ring, header, { ...req, method: 'HEAD' }, now)).toBeUndefined();
    expect(
      verifyPeer(ring, header, { ...req, path: '/_peer/v1/blobs/sha256:abd?leader=1' }, now),
    ).toBeUndefined();
    expect(verifyPeer(ring, header, { ...req, path: '/_peer/v1/blobs/sha256:abc' }, now)).toBeUndefined();
    expect(verifyPeer(ring, header, { ...req, range: 'bytes=0-' }, now)).toBeUndefined();
    expect(verifyPeer(ring, header, { method: req.method, path: req.path }, now)).toBeUndefined();
  });

  it('refuses the mac moved to another replica’s id', () => {
    const swapped = header.replace(replica, randomUUID());
    expect(swapped).not.toBe(header);
    expect(verifyPeer(ring, swapped, req, now)).toBeUndefined();
  });

  it('refuses a missing, truncated, oversized or garbage header', () => {
    const refusal = (h: string | undefined) => {
      const verdict = checkPeer(ring, h, req, now);
      return 'refused' in verdict ? verdict.refused : verdict.replica;
    };
    expect(refusal(undefined)).toBe('missing');
    expect(refusal('')).toBe('missing');
    expect(refusal(header.slice(0, -1))).toBe('malformed');
    expect(refusal(`${header}A`)).toBe('malformed');
    const padded = `${header}${' '.repeat(MAX_PEER_HEADER_BYTES + 1 - header.length)}`;
    expect(Buffer.byteLength(padded)).toBe(201);
    expect(refusal(padded)).toBe('too long');
    expect(refusal('Bearer abc')).toBe('malformed');
    expect(refusal('HubcachePeer v1 ')).toBe('malformed');
    expect(refusal(header.replace('HubcachePeer v1', 'HubcachePeer v2'))).toBe('malformed');
    expect(refusal(header.toUpperCase())).toBe('malformed');
    // Uppercase UUIDs and non-RFC-4122 variants are not how replicas name themselves.
    expect(refusal(header.replace(replica, replica.toUpperCase()))).toBe('malformed');
    expect(refusal(header.replace(replica, `${replica.slice(0, 19)}c${replica.slice(20)}`))).toBe(
      'malformed',
    );
    expect(refusal(header.replace('.1780000000000.', '.01780000000000.'))).toBe('malformed');
    expect(refusal('\u00e9'.repeat(150))).toBe('too long');
  });

  it('accepts a header signed with the previous secret while the ring holds both (rotation)', () => {
    const old = fleetKeys(OLD).peer;
    const rotated = fleetKeys(`${NEW}\n${OLD}`).peer;
    expect(rotated.verify).toHaveLength(2);
    const h = signPeer(old, { ...req, replica, now });
    expect(verifyPeer(rotated, h, req, now)).toBe(replica);
    // Once the previous secret is gone, its headers are refused.
    expect(verifyPeer(fleetKeys(NEW).peer, h, req, now)).toBeUndefined();
  });

  it('refuses to sign as a replica that is not a lowercase UUID, or a field with a line break', () => {
    expect(() => signPeer(ring, { ...req, replica: 'replica-1', now })).toThrow(/UUID/);
    expect(() => signPeer(ring, { ...req, replica: replica.toUpperCase(), now })).toThrow(/UUID/);
    expect(() => signPeer(ring, { ...req, range: 'bytes=0-1\nGET', replica, now })).toThrow(/line break/);
  });
});
