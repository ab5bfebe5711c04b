import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from '../../src/oci/www-authenticate.js';

describe('parseWwwAuthenticate', () => {
  it('keeps the comma inside Docker Hub’s quoted scope (the split(",") bug)', () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"';
    expect(parseWwwAuthenticate(header)).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:samalba/my-app:pull,push',
        },
      },
    ]);
  });

  it('keeps several space-separated scopes in one value', () => {
    const header = 'Bearer realm="https://r/token",scope="repository:a/b:pull repository:c/d:pull,push"';
    expect(parseWwwAuthenticate(header)[0]?.params.scope).toBe(
      'repository:a/b:pull repository:c/d:pull,push',
    );
  });

  it('keeps a scope whose resource name carries a host:port', () => {
    const header = 'Bearer realm="https://r/token",scope="repository:localhost:5000/app:pull"';
    expect(parseWwwAuthenticate(header)[0]?.params.scope).toBe('repository:localhost:5000/app:pull');
  });

  it('unescapes backslash-escaped quotes and backslashes', () => {
    const header = 'Bearer realm="https://r/token",error_description="say \\"hi\\" \\\\ bye"';
    expect(parseWwwAuthenticate(header)[0]?.params.error_description).toBe('say "hi" \\ bye');
  });

  it('reads unquoted values up to the next comma', () => {
    const header = 'Bearer realm=https://r.example/token,service=registry.example,scope=repository:x/y:pull';
    expect(parseWwwAuthenticate(header)).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://r.example/token',
          service: 'registry.example',
          scope: 'repository:x/y:pull',
        },
      },
    ]);
  });

  it('tolerates spaces around "=" and ","', () => {
    const header = 'Bearer  realm = "https://r/token" ,  service = "svc"';
    expect(parseWwwAuthenticate(header)).toEqual([
      { scheme: 'bearer', params: { realm: 'https://r/token', service: 'svc' } },
    ]);
  });

  it('lower-cases the scheme and parameter names, not the values', () => {
    const header = 'BEARER Realm="https://R/Token",SERVICE="Svc"';
    expect(parseWwwAuthenticate(header)).toEqual([
      { scheme: 'bearer', params: { realm: 'https://R/Token', service: 'Svc' } },
    ]);
  });

  it('parses Basic with a realm', () => {
    expect(parseWwwAuthenticate('Basic realm="x"')).toEqual([{ scheme: 'basic', params: { realm: 'x' } }]);
  });

  it('parses two challenges in one header', () => {
    const header = 'Basic realm="registry", Bearer realm="https://auth.example/token",service="reg,istry"';
    expect(parseWwwAuthenticate(header)).toEqual([
      { scheme: 'basic', params: { realm: 'registry' } },
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'reg,istry' } },
    ]);
  });

  it('parses a challenge with a token68 before another challenge', () => {
    const challenges = parseWwwAuthenticate('Negotiate abc123, Bearer realm="https://r/token"');
    expect(challenges.map((c) => c.scheme)).toEqual(['negotiate', 'bearer']);
    expect(challenges[1]?.params).toEqual({ realm: 'https://r/token' });
  });

  it('answers an empty header with no challenges', () => {
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate('   ')).toEqual([]);
  });

  it.each([
    '"',
    '"""',
    '=',
    '=,=,=',
    ',,,',
    'Bearer',
    'Bearer realm',
    'Bearer realm=',
    'Bearer realm="unterminated',
    'Bearer realm="x\\',
    'Bearer realm="x" "junk"',
    'Bearer ,,, realm="x",,,',
    '\u0000\u00ff\ud83d\ude00',
  ])('does not throw on junk %j', (header) => {
    expect(() => parseWwwAuthenticate(header)).not.toThrow();
  });

  it('keeps the parameters after an empty list element (RFC 9110 §5.6.1: recipients MUST ignore them)', () => {
    expect(parseWwwAuthenticate('Bearer realm="x",,service="y"')).toEqual([
      { scheme: 'bearer', params: { realm: 'x', service: 'y' } },
    ]);
  });

  it('reads a padded token68 as no parameters, since "=" cannot start a parameter value', () => {
    // RFC 9110 §11.2: auth-param = token BWS "=" BWS ( token / quoted-string ); `abc==` is a token68.
    expect(parseWwwAuthenticate('Negotiate abc==, Bearer realm="https://r/token"')).toEqual([
      { scheme: 'negotiate', params: {} },
      { scheme: 'bearer', params: { realm: 'https://r/token' } },
    ]);
  });
});
