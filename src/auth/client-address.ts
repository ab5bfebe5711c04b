import { BlockList, isIP } from 'node:net';

/** Proxy hops read from X-Forwarded-For at most, from the right: a longer chain is a client's own text. */
const MAX_HOPS = 16;

/** `::ffff:10.0.0.1` as `10.0.0.1`: a dual-stack listener reports IPv4 clients that way. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * Who a request comes from, behind reverse proxies the operator trusts (`--trusted-proxy`): the
 * connection's address, unless it is a trusted proxy's, then the nearest X-Forwarded-For hop that
 * is not a trusted proxy (read from the right: a client can write anything to the left of what its
 * first proxy appends). Without trusted proxies the header is ignored: anyone can send it. This is
 * the address that rules about the client look at: anonymous pushes from the mirror host, the
 * operator endpoints kept to it, the per-client upload caps, the password-guessing bound.
 */
export class ClientAddresses {
  readonly #trusted = new BlockList();
  readonly #any: boolean;

  /** `cidrs`: `10.0.0.0/8`, `127.0.0.1/32`, `fd00::/8`, or a bare address. Throws on anything else. */
  constructor(cidrs: string[]) {
    for (const cidr of cidrs) {
      const [address = '', bits] = cidr.split('/');
      const family = isIP(address);
      const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
      if (!family || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 6 ? 128 : 32))
        throw new Error(`${cidr}: expected an address or a CIDR block (10.0.0.0/8, fd00::/8)`);
      this.#trusted.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4');
    }
    this.#any = cidrs.length > 0;
  }

  #isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.#trusted.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** The client's address for a connection from `socket`, with the request's X-Forwarded-For. */
  of(socket: string | undefined, forwardedFor: string | string[] | undefined): string {
    let client = plain(socket ?? '');
    if (!this.#any || !this.#isTrusted(client) || forwardedFor === undefined) return client;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
      .split(',')
      .map((h) => plain(h.trim()));
    for (let i = hops.length - 1, n = 0; i >= 0 && n < MAX_HOPS; i--, n++) {
      const hop = hops[i] as string;
      // Not an address: nothing left of it can be believed; the last proxy's word is what we have.
      if (!isIP(hop)) return client;
      client = hop;
      if (!this.#isTrusted(hop)) return hop;
    }
    return client;
  }
}
