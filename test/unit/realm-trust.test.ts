import { describe, expect, it } from 'vitest';
import { realmMayReceiveCredentials, realmTrust } from '../../src/upstream/realm-trust.js';

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

  it('trusts the upstream’s own origin, IP-addressed ones included', () => {
    expect(trusted('http://10.0.0.5:5000/token', 'http://10.0.0.5:5000')).toBe(true);
    expect(trusted('https://[fd00::1]/token', 'https://[fd00::1]')).toBe(true);
  });

  it('does not trust another port of the upstream’s host: another service', () => {
    expect(trusted('http://10.0.0.5:5001/token', 'http://10.0.0.5:5000')).toBe(false);
    expect(trusted('https://[fd00::1]:8443/token', 'https://[fd00::1]')).toBe(false);
    expect(trusted('https://registry.example.com:8443/token', 'https://registry.example.com')).toBe(false);
    expect(trusted('https://auth.docker.io:6379/token', 'https://registry-1.docker.io')).toBe(false);
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

describe('realmTrust: which realms are contacted at all', () => {
  const none = () => false;
  const trust = (realm: string, upstream: string, listed: (h: string) => boolean = none) =>
    realmTrust(new URL(realm), new URL(upstream), listed);

  it('contacts Docker Hub’s auth.docker.io with credentials', () => {
    expect(trust('https://auth.docker.io/token', 'https://registry-1.docker.io')).toBe('credentials');
  });

  it('refuses realms an upstream could use to reach inside the operator’s network', () => {
    const hub = 'https://registry-1.docker.io';
    expect(trust('http://169.254.169.254/latest/meta-data/', hub)).toBe('refused');
    expect(trust('http://127.0.0.1:6379/', hub)).toBe('refused');
    expect(trust('http://localhost/token', hub)).toBe('refused');
    expect(trust('http://127.0.0.1:6379/', 'http://127.0.0.1:5000')).toBe('refused');
    expect(trust('https://intranet.corp.example/token', hub)).toBe('refused');
  });

  it('refuses schemes other than http(s)', () => {
    expect(trust('file:///etc/passwd', 'https://registry.example.com')).toBe('refused');
    expect(trust('ftp://registry.example.com/token', 'https://registry.example.com')).toBe('refused');
  });

  it('asks a sibling over plain http without credentials', () => {
    expect(trust('http://auth.docker.io/token', 'https://registry-1.docker.io')).toBe('anonymous');
  });

  it('contacts a host the operator listed, with credentials unless that would downgrade to http', () => {
    const listed = (h: string) => h === 'keycloak.other.example' || h === '10.0.0.9';
    const upstream = 'https://registry.example.com';
    expect(trust('https://keycloak.other.example/auth', upstream, listed)).toBe('credentials');
    expect(trust('http://keycloak.other.example/auth', upstream, listed)).toBe('anonymous');
    expect(trust('http://10.0.0.9:8080/token', 'http://10.0.0.5:5000', listed)).toBe('credentials');
  });
});
