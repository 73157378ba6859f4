import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import type { Express } from 'express';
import { createApp, type AppDeps } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createServices } from '../../src/services.js';

export interface TestApp {
  app: Express;
  deps: AppDeps;
  /** Every line the app logged, for assertions about what reaches the logs. */
  logLines: string[];
  /** The database this app uses; pass it as `dbName` to build a second app on the same data (a restart). */
  dbName: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /**
   * Reuse this database instead of a fresh one: a restart of the broker on the same data. The app that created the
   * database drops it when closed, so close apps built this way with `keepDatabase`.
   */
  dbName?: string;
  /** Close only the connection, leaving the database for another app built with `dbName`. */
  keepDatabase?: boolean;
}

/** A fresh app on its own database (one per test file), against the run's real database server. */
export async function createTestApp(
  name: string,
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<TestApp> {
  const config: Config = loadConfig({ NODE_ENV: 'test', HUREN_BASE_URL: 'http://huren.test/fhir', ...env });
  const logLines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const log = createLogger({ level: 'info', stream });
  const dbName = options.dbName ?? `t_${name.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  const deps = await createServices(config, log, inject('mongoUri'), dbName);
  const app = createApp(deps);
  return {
    app,
    deps,
    logLines,
    dbName,
    close: async () => {
      if (!options.keepDatabase) await deps.connection.dropDatabase();
      await deps.connection.close();
    },
  };
}
