import { describe, expect, it } from 'vitest';
import {
  decodeFields,
  decodeImageStatusResponse,
  decodeListImagesResponse,
  decodePullImageResponse,
  encodeImageStatusRequest,
  encodePullImageRequest,
  grpcFrame,
  grpcMessages,
} from '../fixtures/cri-client.js';

/**
 * The hand-written CRI client of the Kubernetes interop test (docs/PROTOCOL.md §4): its protobuf and
 * gRPC framing checked against bytes worked out by hand from the wire format.
 */

const ascii = (s: string) => Buffer.from(s, 'ascii');
const ref = 'docker.io/library/alpine:3.20'; // 29 bytes
const digest = `sha256:${'ab'.repeat(32)}`; // 71 bytes

describe('CRI messages (runtime.v1) in the protobuf wire format', () => {
  it('encodes PullImageRequest{ image: ImageSpec{ image } } as two nested length-delimited fields 1', () => {
    // Field 1, wire type 2 → key 0x0a; ImageSpec = 0a 1d <29 bytes> (31 bytes); the request wraps it.
    const expected = Buffer.concat([Buffer.from([0x0a, 0x1f, 0x0a, 0x1d]), ascii(ref)]);
    expect(encodePullImageRequest(ref).toString('hex')).toBe(expected.toString('hex'));
    // ImageStatusRequest has the same shape (image = 1; verbose = 2 left out when false).
    expect(encodeImageStatusRequest(ref).equals(expected)).toBe(true);
  });

  it('writes a length of 128 bytes or more as a multi-byte varint', () => {
    const long = `docker.io/library/${'a'.repeat(282)}`; // 300 bytes: varint ac 02
    const encoded = encodePullImageRequest(long);
    // The ImageSpec is 303 bytes (1 key + 2 length + 300): varint af 02.
    expect(encoded.subarray(0, 6).toString('hex')).toBe('0aaf020aac02');
    expect(encoded.length).toBe(306);
  });

  it('decodes PullImageResponse{ image_ref = 1 }, skipping fields it does not know', () => {
    const message = Buffer.concat([
      Buffer.from([0x10, 0x96, 0x01]), // field 2, varint 150: unknown, skipped
      Buffer.from([0x0a, 0x47]),
      ascii(digest),
      Buffer.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8]), // field 3, 64-bit: unknown, skipped
    ]);
    expect(decodePullImageResponse(message)).toEqual({ imageRef: digest });
    expect(decodeFields(message).get(2)).toEqual([150]);
  });

  it('decodes ImageStatusResponse{ image: Image{ id, repo_tags, repo_digests, size } }', () => {
    const repoDigest = `docker.io/library/alpine@${digest}`; // 96 bytes
    const image = Buffer.concat([
      Buffer.from([0x0a, 0x47]),
      ascii(digest),
      Buffer.from([0x12, 0x1d]),
      ascii(ref),
      Buffer.from([0x12, 0x09]),
      ascii('extra:tag'),
      Buffer.from([0x1a, 0x60]),
      ascii(repoDigest),
      Buffer.from([0x20, 0x80, 0x80, 0x80, 0x80, 0x10]), // size = 2^32 (beyond 32-bit arithmetic)
      Buffer.from([0x2a, 0x02, 0x08, 0x00]), // uid = Int64Value{0}: not read
    ]);
    // 223 bytes: the length is the varint df 01.
    expect(image.length).toBe(223);
    const message = Buffer.concat([Buffer.from([0x0a, 0xdf, 0x01]), image]);
    expect(decodeImageStatusResponse(message)).toEqual({
      image: { id: digest, repoTags: [ref, 'extra:tag'], repoDigests: [repoDigest], size: 2 ** 32 },
    });
    // An image the runtime does not have: an empty response.
    expect(decodeImageStatusResponse(Buffer.alloc(0))).toEqual({ image: undefined });
  });

  it('decodes ListImagesResponse{ repeated Image images = 1 }', () => {
    const one = Buffer.concat([Buffer.from([0x0a, 0x02]), ascii('i1')]);
    const two = Buffer.concat([Buffer.from([0x0a, 0x02]), ascii('i2'), Buffer.from([0x20, 0x05])]);
    const message = Buffer.concat([
      Buffer.from([0x0a, one.length]),
      one,
      Buffer.from([0x0a, two.length]),
      two,
    ]);
    expect(decodeListImagesResponse(message).images).toEqual([
      { id: 'i1', repoTags: [], repoDigests: [], size: 0 },
      { id: 'i2', repoTags: [], repoDigests: [], size: 5 },
    ]);
  });

  it('refuses a message cut short', () => {
    expect(() => decodeFields(Buffer.from([0x0a, 0x05, 0x61]))).toThrow(/runs past the end/);
    expect(() => decodeFields(Buffer.from([0x08, 0x80]))).toThrow(/truncated varint/);
  });
});

describe('gRPC length-prefixed messages', () => {
  it('frames a request: flag 0 (uncompressed), 4-byte big-endian length, the message', () => {
    const framed = grpcFrame(encodePullImageRequest(ref));
    expect(framed.subarray(0, 5).toString('hex')).toBe('0000000021'); // 33 bytes follow
    expect(framed.length).toBe(38);
    expect(grpcFrame(Buffer.alloc(0)).toString('hex')).toBe('0000000000');
  });

  it('splits a response body into its messages, an empty one included', () => {
    const body = Buffer.concat([grpcFrame(ascii('abc')), grpcFrame(Buffer.alloc(0))]);
    expect(grpcMessages(body).map((m) => m.toString())).toEqual(['abc', '']);
    expect(grpcMessages(Buffer.from('000000000100', 'hex')).map((m) => m.toString('hex'))).toEqual(['00']);
  });

  it('refuses a compressed or truncated message', () => {
    expect(() => grpcMessages(Buffer.from('0100000000', 'hex'))).toThrow(/compressed/);
    expect(() => grpcMessages(Buffer.from('0000000005616263', 'hex'))).toThrow(/truncated message/);
    expect(() => grpcMessages(Buffer.from('000000', 'hex'))).toThrow(/truncated message prefix/);
  });
});
