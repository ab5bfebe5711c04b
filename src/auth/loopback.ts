import { isIPv4 } from 'node:net';

/**
 * Whether a connection comes from the mirror's own host: 127.0.0.0/8, ::1, or either written as an
 * IPv4-mapped IPv6 address (a dual-stack listener reports `::ffff:127.0.0.1`). Behind a reverse
 * proxy on the same host every client looks local: docs/SECURITY.md says so, and what to set then.
 */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  if (address === '::1') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIPv4(v4) && v4.startsWith('127.');
}
