import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Range = [Address, number];

/**
 * Failures are counted per IPv6 /64: one host gets a whole /64 from its provider and can pick any
 * address in it, so counting per address would let it start a fresh bucket with every request.
 */
const IPV6_CLIENT_PREFIX = 64;
/** What failures are counted against when even the TCP peer is unreadable (a closed socket). */
const UNKNOWN_CLIENT = 'unknown';

/** A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address; undefined when it is neither. */
export function parseCidr(text: string): Range | undefined {
  // ipaddr.js also reads `10.0.0/8` and `0x0a.0.0.1`; in configuration those are typos.
  const ipv4 = !text.includes(':');
  if (
    ipv4 &&
    !(text.includes('/')
      ? ipaddr.IPv4.isValidCIDRFourPartDecimal(text)
      : ipaddr.IPv4.isValidFourPartDecimal(text))
  ) {
    return undefined;
  }
  try {
    if (text.includes('/')) {
      const [address, bits] = ipaddr.parseCIDR(text);
      // Peers are compared unmapped (process() below), so `::ffff:10.0.0.0/104` means `10.0.0.0/8`.
      if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
        return [(address as ipaddr.IPv6).toIPv4Address(), bits - 96];
      }
      return [address, bits];
    }
    const address = ipaddr.process(text);
    return [address, address.kind() === 'ipv4' ? 32 : 128];
  } catch {
    return undefined;
  }
}

export interface ClientAddressOptions {
  /** CIDRs of proxies whose client-address header is believed. */
  readonly trustedProxies: readonly string[];
  /** Lower-case header name: `x-forwarded-for` (a hop list) or one holding a single address. */
  readonly header: string;
}

/**
 * The address a request's failed attempts are counted against. The TCP peer, unless that peer is
 * a trusted proxy: then the address that proxy reports. For X-Forwarded-For that is the right-most
 * hop that is not itself a trusted proxy — every hop left of it was written by the client and
 * proves nothing. A header from any other peer is ignored, so a client talking to the webhook
 * directly cannot pose as someone else.
 */
export class ClientAddress {
  readonly #trusted: readonly Range[];
  readonly #header: string;
  readonly #hopList: boolean;
  #memo: { peer: string | undefined; value: string | undefined; key: string } = {
    peer: undefined,
    value: undefined,
    key: '',
  };

  constructor(options: ClientAddressOptions) {
    this.#trusted = options.trustedProxies.map((cidr) => {
      const range = parseCidr(cidr);
      if (!range) throw new Error(`not a CIDR: ${cidr}`);
      return range;
    });
    this.#header = options.header;
    this.#hopList = options.header === 'x-forwarded-for';
  }

  of(peer: string | undefined, headers: Record<string, string | string[] | undefined>): string {
    const value = headers[this.#header];
    // A flood of failed attempts comes over few connections: the answer for the last peer and
    // header value is kept, so parsing addresses is not paid per rejected request.
    const memoable = peer !== undefined && !Array.isArray(value);
    if (memoable && peer === this.#memo.peer && value === this.#memo.value) return this.#memo.key;
    const key = this.#of(peer, value);
    if (memoable) this.#memo = { peer, value, key };
    return key;
  }

  #of(peer: string | undefined, value: string | string[] | undefined): string {
    const peerAddress = parseAddress(peer);
    if (!peerAddress) return UNKNOWN_CLIENT;
    if (!this.#isTrusted(peerAddress)) return clientKey(peerAddress);
    if (value === undefined) return clientKey(peerAddress);
    return this.#hopList ? this.#fromHops(peerAddress, value) : this.#fromSingle(peerAddress, value);
  }

  #fromHops(peer: Address, value: string | string[]): string {
    const hops = (Array.isArray(value) ? value.join(',') : value).split(',');
    let nearest = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseAddress(hops[i]?.trim());
      // An unreadable hop ends the chain: count against the trusted hop that passed it on.
      if (!hop) return clientKey(nearest);
      if (!this.#isTrusted(hop)) return clientKey(hop);
      nearest = hop;
    }
    return clientKey(nearest);
  }

  #fromSingle(peer: Address, value: string | string[]): string {
    // Repeated, the header is ambiguous; the proxy's own address is the honest answer.
    if (Array.isArray(value)) return clientKey(peer);
    const address = parseAddress(value.trim());
    return clientKey(address ?? peer);
  }

  #isTrusted(address: Address): boolean {
    for (const range of this.#trusted) {
      if (range[0].kind() === address.kind() && address.match(range)) return true;
    }
    return false;
  }
}

/** Parses an address, also in the `1.2.3.4:port` and `[v6]:port` forms some proxies write. */
function parseAddress(text: string | undefined): Address | undefined {
  if (!text || text.length > 64) return undefined;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text);
  const candidate =
    bracketed?.[1] ?? (/^[\d.]+:\d+$/.test(text) ? text.slice(0, text.lastIndexOf(':')) : text);
  try {
    return ipaddr.process(candidate);
  } catch {
    return undefined;
  }
}

function clientKey(address: Address): string {
  if (address.kind() === 'ipv4') return address.toString();
  // The first four 16-bit groups are the /64; building a new address also drops any zone id.
  const network = new ipaddr.IPv6([...(address as ipaddr.IPv6).parts.slice(0, 4), 0, 0, 0, 0]);
  return `${network.toString()}/${IPV6_CLIENT_PREFIX}`;
}
