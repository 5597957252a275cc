import { describe, expect, it } from 'vitest';
import { ClientAddress, parseCidr } from './client-address.js';

const xff = (value: string | string[]) => ({ 'x-forwarded-for': value });

describe('ClientAddress', () => {
  it('uses the TCP peer when no proxy is trusted, whatever the headers say', () => {
    const addresses = new ClientAddress({ trustedProxies: [], header: 'x-forwarded-for' });
    expect(addresses.of('198.51.100.7', xff('203.0.113.9'))).toBe('198.51.100.7');
    expect(addresses.of('::ffff:198.51.100.7', {})).toBe('198.51.100.7');
    expect(addresses.of(undefined, xff('203.0.113.9'))).toBe('unknown');
  });

  it('ignores the header from a peer outside the trusted list', () => {
    const addresses = new ClientAddress({ trustedProxies: ['10.0.0.0/8'], header: 'x-forwarded-for' });
    expect(addresses.of('192.0.2.1', xff('203.0.113.9'))).toBe('192.0.2.1');
    expect(addresses.of('10.1.2.3', xff('203.0.113.9'))).toBe('203.0.113.9');
  });

  it('takes the right-most hop that is not a trusted proxy', () => {
    const addresses = new ClientAddress({
      trustedProxies: ['10.0.0.0/8', '192.0.2.10'],
      header: 'x-forwarded-for',
    });
    // The client wrote 1.1.1.1 itself; 203.0.113.9 is what the first trusted proxy saw.
    expect(addresses.of('10.0.0.1', xff('1.1.1.1, 203.0.113.9, 192.0.2.10'))).toBe('203.0.113.9');
    expect(addresses.of('10.0.0.1', xff(['1.1.1.1', '203.0.113.9:4711']))).toBe('203.0.113.9');
    // Every hop trusted: the left-most one is the closest thing to a client.
    expect(addresses.of('10.0.0.1', xff('10.9.9.9, 192.0.2.10'))).toBe('10.9.9.9');
    // An unreadable hop: counted against the trusted hop that passed it on.
    expect(addresses.of('10.0.0.1', xff('203.0.113.9, garbage, 192.0.2.10'))).toBe('192.0.2.10');
    expect(addresses.of('10.0.0.1', xff(''))).toBe('10.0.0.1');
  });

  it('answers repeated and alternating peers and headers alike (the last answer is remembered)', () => {
    const addresses = new ClientAddress({ trustedProxies: ['10.0.0.0/8'], header: 'x-forwarded-for' });
    const asked: Array<[string | undefined, Record<string, string | string[]>, string]> = [
      ['10.0.0.1', xff('203.0.113.9'), '203.0.113.9'],
      ['10.0.0.1', xff('203.0.113.9'), '203.0.113.9'],
      ['10.0.0.1', xff('203.0.113.10'), '203.0.113.10'],
      ['10.0.0.1', {}, '10.0.0.1'],
      ['192.0.2.1', {}, '192.0.2.1'],
      ['192.0.2.1', xff('203.0.113.10'), '192.0.2.1'],
      ['10.0.0.1', xff('203.0.113.10'), '203.0.113.10'],
      ['10.0.0.1', xff(['203.0.113.11']), '203.0.113.11'],
      ['10.0.0.1', xff(['203.0.113.12']), '203.0.113.12'],
      [undefined, {}, 'unknown'],
    ];
    for (const [peer, headers, expected] of [...asked, ...asked.reverse()]) {
      expect(addresses.of(peer, headers)).toBe(expected);
    }
  });

  it('reads a single-address header such as X-Real-IP', () => {
    const addresses = new ClientAddress({ trustedProxies: ['127.0.0.0/8'], header: 'x-real-ip' });
    expect(addresses.of('127.0.0.1', { 'x-real-ip': '203.0.113.9' })).toBe('203.0.113.9');
    expect(addresses.of('127.0.0.1', { 'x-real-ip': 'nonsense' })).toBe('127.0.0.1');
    expect(addresses.of('127.0.0.1', { 'x-real-ip': ['203.0.113.9', '1.1.1.1'] })).toBe('127.0.0.1');
    expect(addresses.of('127.0.0.1', xff('203.0.113.9'))).toBe('127.0.0.1');
  });

  it('counts IPv6 clients per /64', () => {
    const addresses = new ClientAddress({ trustedProxies: ['fd00::/8'], header: 'x-forwarded-for' });
    expect(addresses.of('2001:db8:1:2::1', {})).toBe('2001:db8:1:2::/64');
    expect(addresses.of('fd00::1', xff('[2001:db8:1:2:aaaa::7]:443'))).toBe('2001:db8:1:2::/64');
  });

  it('parses CIDRs and single addresses, and rejects the rest', () => {
    expect(parseCidr('10.0.0.0/8')?.[1]).toBe(8);
    expect(parseCidr('192.0.2.1')?.[1]).toBe(32);
    expect(parseCidr('::1')?.[1]).toBe(128);
    expect(parseCidr('::ffff:10.0.0.0/104')?.[1]).toBe(8);
    for (const bad of ['10.0.0.0/33', 'example.com', '', '10.0.0/8']) expect(parseCidr(bad)).toBeUndefined();
  });
});
