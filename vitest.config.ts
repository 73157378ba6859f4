import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One database server per run (FerretDB built once per machine and cached); files isolate by database name.
    globalSetup: ['test/support/global-setup.ts'],
    env: { NODE_ENV: 'test' },
    // Generous: FerretDB on a 2-core CI machine runs test files side by side; a slow test still fails, a hung one too.
    testTimeout: 60000,
    hookTimeout: 240000,
    pool: 'forks',
  },
});
