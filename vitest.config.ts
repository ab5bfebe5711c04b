import { defineConfig } from 'vitest/config';

// Three suites: pure unit tests, hermetic integration tests (Node only: the mirror against
// in-process upstreams used for fault injection), and interop suites that drive real
// third-party programs (docker-registry, skopeo, ...), which `npm run test:interop` runs.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        test: {
          name: 'hermetic',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'interop',
          include: ['test/interop/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
