import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One database server per run (FerretDB built once per machine and cached); files isolate by database name.
    globalSetup: ['test/support/global-setup.ts'],
    env: { NODE_ENV: 'test' },
    testTimeout: 30000,
    hookTimeout: 240000,
    pool: 'forks',
  },
});
