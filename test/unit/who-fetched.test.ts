import { describe, expect, it } from 'vitest';
import { simulate } from '../../bench/lib/eviction/simulate.js';
import { GdsfPolicy } from '../../src/cache/eviction/gdsf.js';
import { evictionPolicy } from '../../src/cache/eviction/policies.js';
import {
  MAX_CLIENTS,
  MAX_RECORDS,
  RESUME_AFTER_MS,
  WhoFetched,
} from '../../src/cache/eviction/who-fetched.js';

const all = () => true;

/** One request: `client` fetches `key`, then the store records the use. */
function ask(p: GdsfPolicy, key: string, client: string, stored = false): void {
  p.asked?.(key, client);
  if (stored) p.hit(key);
  else p.insert(key, 100);
}

describe('who fetched what (the default eviction policy)', () => {
  it('puts first a blob every client seen has fetched, however often it was used', () => {
    const p = new GdsfPolicy({ fetched: new WhoFetched() });
    ask(p, 'base', 'a');
    ask(p, 'app', 'b');
    ask(p, 'other', 'c');
    ask(p, 'base', 'b', true);
    ask(p, 'base', 'c', true); // every one of the three clients has it now
    ask(p, 'app', 'b', true);
    expect(p.victim(all)).toBe('base');
  });

  it('is plain GDSF while fewer than three clients were seen', () => {
    const p = new GdsfPolicy({ fetched: new WhoFetched() });
    ask(p, 'base', 'a');
    ask(p, 'app', 'b');
    ask(p, 'base', 'b', true); // both clients have it, and it was used twice
    expect(p.victim(all)).toBe('app');
  });

  it('stops when a client fetches a blob it fetched before (a NAT, or a node that removed it), for a day', () => {
    let now = 1_000;
    const w = new WhoFetched({ now: () => now });
    const changes: (string | undefined)[] = [];
    w.onChange = (why) => changes.push(why);
    for (const c of ['a', 'b', 'c']) w.asked('base', c);
    expect(w.everyone('base')).toBe(true);
    w.asked('base', 'b');
    expect(w.off).toBe('refetch');
    expect(w.everyone('base')).toBe(false);
    now += RESUME_AFTER_MS - 1;
    for (const c of ['d', 'e', 'f']) w.asked('new', c);
    expect(w.everyone('new')).toBe(false);
    expect(changes).toEqual(['refetch']);
    // A day on it starts again, remembering nothing from before the stop.
    now += 1;
    for (const c of ['d', 'e', 'f']) w.asked('new', c);
    expect(w.off).toBeUndefined();
    expect(w.everyone('new')).toBe(true);
    expect(w.everyone('base')).toBe(false);
    expect(changes).toEqual(['refetch', undefined]);
  });

  it('stops when more clients than its bound are seen: an address can only turn it off', () => {
    const w = new WhoFetched({ maxClients: 4 });
    for (const c of ['a', 'b', 'c', 'd']) w.asked('base', c);
    expect(w.everyone('base')).toBe(true);
    w.asked('base', 'e');
    expect(w.off).toBe('clients');
    expect(w.everyone('base')).toBe(false);
  });

  it('remembers a bounded number of blobs, the least recently asked forgotten first (fetched by nobody)', () => {
    const w = new WhoFetched({ maxRecords: 2 });
    for (const c of ['a', 'b', 'c']) w.asked('one', c);
    for (const c of ['a', 'b', 'c']) w.asked('two', c);
    w.asked('three', 'a');
    expect(w.everyone('one')).toBe(false); // forgotten: never counts as everyone's
    expect(w.everyone('two')).toBe(true);
    // Forgotten, so asked again it is a first fetch: not a refetch that stops the rule.
    w.asked('one', 'a');
    expect(w.off).toBeUndefined();
  });

  it('tells apart up to 256 clients (bits beyond the first word)', () => {
    const w = new WhoFetched();
    for (let i = 0; i < 256; i++) w.asked('base', `10.0.${i >> 8}.${i & 255}`);
    expect(w.off).toBeUndefined();
    expect(w.everyone('base')).toBe(true);
    w.asked('app', '10.0.0.200');
    w.asked('app', '10.0.0.40');
    expect(w.off).toBeUndefined();
    w.asked('app', '10.0.0.200');
    expect(w.off).toBe('refetch');
  });

  it('holds its default bounds: a 257th address stops it, a 16,385th blob pushes out the first', () => {
    const clients = new WhoFetched();
    for (let i = 0; i < MAX_CLIENTS; i++) clients.asked('base', `10.1.${i >> 8}.${i & 255}`);
    expect(clients.off).toBeUndefined();
    clients.asked('base', '10.2.0.1');
    expect(clients.off).toBe('clients');

    const records = new WhoFetched();
    for (const c of ['a', 'b', 'c']) records.asked('first', c);
    for (let i = 1; i < MAX_RECORDS; i++) records.asked(`blob${i}`, 'a');
    expect(records.everyone('first')).toBe(true); // 16,384 remembered
    records.asked('one more', 'a');
    expect(records.everyone('first')).toBe(false);
    expect(records.off).toBeUndefined();
  });

  it('is what --eviction gdsf runs once --max-size bounds the store; lru and an unbounded store ignore clients', () => {
    const bounded = evictionPolicy('gdsf', 1000);
    for (const c of ['a', 'b', 'c']) bounded.asked?.('x', c);
    bounded.insert('x', 100);
    bounded.insert('y', 100);
    bounded.hit('x');
    expect(bounded.victim(all)).toBe('x');
    for (const policy of [evictionPolicy('gdsf', undefined), evictionPolicy('lru', 1000)]) {
      for (const c of ['a', 'b', 'c']) policy.asked?.('x', c);
      policy.insert('x', 100);
      policy.insert('y', 100);
      policy.hit('x');
      expect(policy.victim(all)).toBe('y');
    }
  });

  it('hears the clients through simulate, which passes each request’s client', () => {
    // A 250-byte cache, three 100-byte blobs: the one all three clients fetched goes, so the
    // blobs still to be asked for stay.
    const trace = [
      { key: 'a', size: 100, client: 0 },
      { key: 'a', size: 100, client: 1 },
      { key: 'a', size: 100, client: 2 },
      { key: 'b', size: 100, client: 0 },
      { key: 'c', size: 100, client: 1 },
      { key: 'b', size: 100, client: 2 },
    ];
    expect(simulate(trace, 250, () => new GdsfPolicy({ fetched: new WhoFetched() })).hitBytes).toBe(300);
    expect(simulate(trace, 250, () => new GdsfPolicy()).hitBytes).toBeLessThan(300);
  });
});
