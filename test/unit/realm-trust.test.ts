import { describe, expect, it } from 'vitest';
import { realmMayReceiveCredentials } from '../../src/upstream/realm-trust.js';

const trusted = (realm: string, upstream: string): boolean =>
  realmMayReceiveCredentials(new URL(realm), new URL(upstream));

describe('realmMayReceiveCredentials', () => {
  it('trusts auth.docker.io for registry-1.docker.io (same registrable domain)', () => {
    expect(trusted('https://auth.docker.io/token', 'https://registry-1.docker.io')).toBe(true);
  });

  it('trusts a realm on the upstream host itself', () => {
    expect(trusted('https://registry.example.com/token', 'https://registry.example.com')).toBe(true);
  });

  it('trusts a realm on a sibling host under a two-label public suffix', () => {
    expect(trusted('https://auth.example.co.uk/token', 'https://registry.example.co.uk')).toBe(true);
  });

  it('does not trust a realm on another domain', () => {
    expect(trusted('https://evil.com/token', 'https://registry-1.docker.io')).toBe(false);
  });

  it('does not trust a look-alike domain that ends with the upstream’s name', () => {
    expect(trusted('https://auth.evildocker.io/token', 'https://registry-1.docker.io')).toBe(false);
    expect(trusted('https://docker.io.evil.com/token', 'https://registry-1.docker.io')).toBe(false);
  });

  it('does not trust another customer under the same public suffix (co.uk)', () => {
    expect(trusted('https://auth.attacker.co.uk/token', 'https://registry.example.co.uk')).toBe(false);
  });

  it('does not trust another tenant under a private public suffix such as github.io', () => {
    // The public suffix list's PRIVATE section makes github.io a suffix: alice.github.io and
    // mallory.github.io are different owners. distribution's realmAllowed uses
    // golang.org/x/net/publicsuffix, which includes that section.
    expect(trusted('https://mallory.github.io/token', 'https://alice.github.io')).toBe(false);
    expect(trusted('https://mallory.herokuapp.com/token', 'https://alice.herokuapp.com')).toBe(false);
  });

  it('trusts the same IP address on another port', () => {
    expect(trusted('http://10.0.0.5:5001/token', 'http://10.0.0.5:5000')).toBe(true);
    expect(trusted('https://[fd00::1]:8443/token', 'https://[fd00::1]')).toBe(true);
  });

  it('does not trust a different IP address, even in the same subnet', () => {
    expect(trusted('http://10.0.0.6:5000/token', 'http://10.0.0.5:5000')).toBe(false);
  });

  it('does not trust an IP realm for a named upstream, or the reverse', () => {
    expect(trusted('https://52.1.2.3/token', 'https://registry-1.docker.io')).toBe(false);
    expect(trusted('https://auth.docker.io/token', 'https://52.1.2.3')).toBe(false);
  });

  it('does not trust localhost for a named upstream', () => {
    expect(trusted('http://localhost:9000/token', 'https://registry-1.docker.io')).toBe(false);
  });

  it('trusts an https realm for an http upstream (an upgrade)', () => {
    expect(trusted('https://registry.example.com/token', 'http://registry.example.com')).toBe(true);
  });

  it('does not send credentials over plain http when the upstream is https (a downgrade)', () => {
    expect(trusted('http://auth.docker.io/token', 'https://registry-1.docker.io')).toBe(false);
    expect(trusted('http://registry.example.com/token', 'https://registry.example.com')).toBe(false);
  });
});
