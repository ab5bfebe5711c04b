import { describe, expect, it } from 'vitest';
import { FleetGdsfPolicy } from '../../bench/lib/eviction/fleet-gdsf.js';
import { simulate } from '../../bench/lib/eviction/simulate.js';

const all = () => true;
/** One request: `client` asks for `key`, then the store records the use. */
function ask(p: FleetGdsfPolicy, key: string, client: number, size = 100, stored = false): void {
  p.asked(key, client);
  if (stored) p.hit(key);
  else p.insert(key, size);
}

describe('GDSF told the client (eviction bench)', () => {
  it('puts first a blob every client seen has fetched, however often it was used', () => {
    const p = new FleetGdsfPolicy();
    ask(p, 'base', 0);
    ask(p, 'app', 1);
    ask(p, 'other', 2);
    ask(p, 'base', 1, 100, true);
    ask(p, 'base', 2, 100, true); // every one of the three clients has it now
    ask(p, 'app', 1, 100, true);
    expect(p.victim(all)).toBe('base');
  });

  it('is plain GDSF while fewer than three clients were seen', () => {
    const p = new FleetGdsfPolicy();
    ask(p, 'base', 0);
    ask(p, 'app', 1);
    ask(p, 'base', 1, 100, true); // both clients have it, and it was used twice
    expect(p.victim(all)).toBe('app');
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
    expect(simulate(trace, 250, () => new FleetGdsfPolicy()).hitBytes).toBe(300);
  });
});
