import { expect, it } from 'vitest';
import { ClientAddresses } from '../../src/auth/client-address.js';

it('without trusted proxies, X-Forwarded-For is ignored: anyone can send it', () => {
  expect(new ClientAddresses([]).of('127.0.0.1', '203.0.113.9')).toBe('127.0.0.1');
});

it('from a trusted proxy, the nearest untrusted hop from the right; a client cannot choose it by writing to the left', () => {
  const clients = new ClientAddresses(['127.0.0.1', '10.0.0.0/8']);
  expect(clients.of('127.0.0.1', '203.0.113.9')).toBe('203.0.113.9');
  // The client wrote "127.0.0.1", its proxy appended the real address: the real one counts.
  expect(clients.of('127.0.0.1', '127.0.0.1, 203.0.113.9')).toBe('203.0.113.9');
  // Two trusted proxies in a row.
  expect(clients.of('::ffff:127.0.0.1', '198.51.100.7, 10.1.2.3')).toBe('198.51.100.7');
  expect(clients.of('127.0.0.1', ['198.51.100.7', '10.1.2.3'])).toBe('198.51.100.7');
  // Garbage in the chain: the last believable hop is the answer, never the garbage.
  expect(clients.of('127.0.0.1', 'evil, 10.1.2.3')).toBe('10.1.2.3');
  expect(clients.of('127.0.0.1', 'not-an-ip')).toBe('127.0.0.1');
  // A connection not from a trusted proxy: its own address, whatever it sends.
  expect(clients.of('192.0.2.1', '127.0.0.1')).toBe('192.0.2.1');
  // No header from a trusted proxy: the proxy itself.
  expect(clients.of('127.0.0.1', undefined)).toBe('127.0.0.1');
});

it('takes IPv6 blocks and refuses what is not an address or a block', () => {
  expect(new ClientAddresses(['fd00::/8']).of('fd00::1', '2001:db8::5')).toBe('2001:db8::5');
  for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0/8', 'fd00::/129'])
    expect(() => new ClientAddresses([bad])).toThrow(/expected an address or a CIDR block/);
});
