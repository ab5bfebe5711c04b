import { expect, it } from 'vitest';
import { fleetKeys, sign, verify } from '../../src/shared/fleet-keys.js';

const A = 'a'.repeat(32);
const B = 'b'.repeat(40);

it('derives one key per use from the secret: different from each other, the same on every replica', () => {
  const one = fleetKeys(`${A}\n`);
  const two = fleetKeys(`  ${A}  `);
  expect(one.token.sign.equals(two.token.sign)).toBe(true);
  const keys = [one.token.sign, one.peer.sign, one.records.sign].map((k) => k.toString('hex'));
  expect(new Set(keys).size).toBe(3);
  expect(keys.some((k) => k.includes(Buffer.from(A).toString('hex')))).toBe(false);
});

it('a MAC verifies under its own key only; the previous secret (second line) still verifies while rotating', () => {
  const old = fleetKeys(A);
  const rotated = fleetKeys(`${B}\n${A}\n`);
  const other = fleetKeys(B);
  const mac = sign(old.token, 'claims');
  expect(verify(old.token, 'claims', mac)).toBe(true);
  expect(verify(old.token, 'claims!', mac)).toBe(false);
  expect(verify(old.peer, 'claims', mac)).toBe(false);
  expect(verify(rotated.token, 'claims', mac)).toBe(true);
  expect(verify(other.token, 'claims', mac)).toBe(false);
  // The rotated ring signs with the new secret: replicas still on the old one refuse it until they have both.
  expect(verify(old.token, 'claims', sign(rotated.token, 'claims'))).toBe(false);
  expect(verify(old.token, 'claims', mac.slice(0, -1))).toBe(false);
});

it('refuses a secret shorter than 32 bytes, an empty file, and more than two lines', () => {
  expect(() => fleetKeys('short')).toThrow(/shorter than 32 bytes/);
  expect(() => fleetKeys(`${A}\nshort`)).toThrow(/shorter than 32 bytes/);
  expect(() => fleetKeys('\n \n')).toThrow(/empty/);
  expect(() => fleetKeys(`${A}\n${A}\n${A}`)).toThrow(/more than two lines/);
});
