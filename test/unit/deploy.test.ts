import { readFileSync } from 'node:fs';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildCommand } from '../../src/config/cli.js';
import { parseConfig } from '../../src/config/parse.js';
import { FLEET_FLAGS } from '../fixtures/fleet.js';

// deploy/ must run the configuration the load-balanced interop suite runs (test/fixtures/fleet.ts),
// so the files cannot drift from what is tested: the same fleet options, and nothing else but
// where to listen, where the disk tier is, and the address other replicas reach this one at.
const PLACEMENT = ['--listen', '--data', '--peer-advertise'];

function argsOf(file: string): { args: string[]; env: Record<string, string> } {
  const docs = readFileSync(new URL(`../../deploy/${file}`, import.meta.url), 'utf8')
    .split(/^---$/m)
    .map((d) => parse(d) as Record<string, unknown>);
  if (file.startsWith('kubernetes')) {
    const deployment = docs.find((d) => d.kind === 'Deployment') as {
      spec: { template: { spec: { containers: { args: string[]; ports: { containerPort: number }[] }[] } } };
    };
    const [container] = deployment.spec.template.spec.containers;
    return { args: container?.args ?? [], env: {} };
  }
  const service = (
    docs[0] as { services: { hubcache: { command: string[]; environment: Record<string, string> } } }
  ).services.hubcache;
  return { args: service.command, env: service.environment };
}

/** A command that throws instead of exiting and prints nothing. */
const quiet = () =>
  buildCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });

describe('deploy/ runs the tested fleet configuration', () => {
  for (const file of ['kubernetes.yaml', 'swarm-stack.yml']) {
    it(`${file}: the fleet options of test/interop/fleet-lb.test.ts, and only placement besides`, () => {
      const { args, env } = argsOf(file);
      const flags = args.map((a) => a.split('=')[0] as string);
      expect(flags.filter((f) => !PLACEMENT.includes(f)).sort()).toEqual([...FLEET_FLAGS].sort());
      // The replicas reach each other: advertised as a flag or by the environment.
      expect(flags.includes('--peer-advertise') || 'HUBCACHE_PEER_ADVERTISE' in env).toBe(true);
      // And the mirror takes them as they are (placeholders of the orchestrator filled in).
      const filled = args.map((a) => a.replace('$(POD_IP)', '10.0.0.5'));
      const saved = process.env.HUBCACHE_PEER_ADVERTISE;
      if (env.HUBCACHE_PEER_ADVERTISE)
        process.env.HUBCACHE_PEER_ADVERTISE = env.HUBCACHE_PEER_ADVERTISE.replace(
          '{{.Task.Name}}',
          'hubcache.1.x',
        );
      try {
        const config = parseConfig(filled, quiet());
        expect(config.shared?.peer?.listen.port).toBe(5001);
        expect(config.shared?.fleetSecretFile).toMatch(/^\/run\/secrets\//);
      } catch (err) {
        if (err instanceof CommanderError) throw new Error(`${file}: ${err.message}`);
        throw err;
      } finally {
        if (saved === undefined) delete process.env.HUBCACHE_PEER_ADVERTISE;
        else process.env.HUBCACHE_PEER_ADVERTISE = saved;
      }
    });
  }

  it('publishes only the registry port: the peer listener stays off the load balancer', () => {
    const k8s = readFileSync(new URL('../../deploy/kubernetes.yaml', import.meta.url), 'utf8');
    const service = k8s
      .split(/^---$/m)
      .map((d) => parse(d) as { kind?: string; spec?: { ports?: { port: number }[] } })
      .find((d) => d.kind === 'Service');
    expect(service?.spec?.ports?.map((p) => p.port)).toEqual([5000]);
    const swarm = parse(readFileSync(new URL('../../deploy/swarm-stack.yml', import.meta.url), 'utf8')) as {
      services: { hubcache: { ports: string[] } };
    };
    expect(swarm.services.hubcache.ports).toEqual(['5000:5000']);
  });
});
