import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import TestAgent from 'supertest/lib/agent.js';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import type { Express } from 'express';
import { createApp, type AppDeps } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createServices } from '../../src/services.js';
import { flushQueries, recordQueries } from './query-log.js';

export interface TestApp {
  app: Express;
  deps: AppDeps;
  /** Every line the app logged, for assertions about what reaches the logs. */
  logLines: string[];
  /** The database this app uses; pass it as `dbName` to build a second app on the same data (a restart). */
  dbName: string;
  /** Access tokens of the demo clients, obtained through the real token endpoint, by role and by client id. */
  tokens: Record<string, string>;
  /** A supertest agent calling as a demo client: `t.as('his')`, `t.as('demo-his-hospital-b')`. */
  as(who: string): TestAgent;
  close(): Promise<void>;
}

/** The demo client each role name stands for in tests. */
export const ROLE_CLIENTS: Record<string, string> = {
  his: 'demo-his-hospital-a',
  clinician: 'demo-clinician-hospital-b',
  bureau: 'demo-bureau',
  supervisor: 'demo-supervisor',
  admin: 'demo-admin',
};

/**
 * Where test apps keep their demo client keys (generated once, shared by the test files of one checkout). One per
 * checkout: another clone's tests on the same machine may seed other demo clients.
 */
export const TEST_DATA_DIR = path.join(
  os.tmpdir(),
  `huren-test-data-${createHash('sha256')
    .update(path.resolve(import.meta.dirname, '../..'))
    .digest('hex')
    .slice(0, 12)}`,
);

export interface TestAppOptions {
  /**
   * Reuse this database instead of a fresh one: a restart of the broker on the same data. The app that created the
   * database drops it when closed, so close apps built this way with `keepDatabase`.
   */
  dbName?: string;
  /** Close only the connection, leaving the database for another app built with `dbName`. */
  keepDatabase?: boolean;
  /** Fetch the demo clients' tokens at creation (default true); production mode has no demo clients to ask for. */
  fetchTokens?: boolean;
}

/** A fresh app on its own database (one per test file), against the run's real database server. */
export async function createTestApp(
  name: string,
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<TestApp> {
  const config: Config = loadConfig({
    NODE_ENV: 'test',
    HUREN_BASE_URL: 'http://huren.test/fhir',
    HUREN_DATA_DIR: TEST_DATA_DIR,
    ...env,
  });
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
  recordQueries(deps.connection.db!);
  const app = createApp(deps);
  const tokens: Record<string, string> = {};
  const demoClients = options.fetchTokens === false ? [] : readDemoClients(config.dataDir);
  const fetchTokens = async () => {
    // The assertion's aud is the token endpoint as the client addresses it: the configured base URL, or else the
    // address of a listening server (supertest's throw-away servers change port with every request).
    const server = config.baseUrl ? undefined : app.listen(0, '127.0.0.1');
    if (server) await new Promise((resolve) => server.once('listening', resolve));
    const address = server?.address();
    const origin = config.baseUrl
      ? config.baseUrl.replace(/\/fhir$/, '')
      : `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const tokenUrl = `${origin}/auth/token`;
    for (const client of demoClients) {
      const assertion = await createClientAssertion(client.clientId, client.privateJwk, tokenUrl);
      const res = await request(server ?? app)
        .post('/auth/token')
        .type('form')
        .send({
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
          scope: client.scopes,
        });
      if (res.status !== 200) {
        throw new Error(`token for ${client.clientId}: ${res.status} ${JSON.stringify(res.body)}`);
      }
      tokens[client.clientId] = res.body.access_token as string;
    }
    if (server) await new Promise((resolve) => server.close(resolve));
    for (const [role, clientId] of Object.entries(ROLE_CLIENTS)) tokens[role] = tokens[clientId]!;
  };
  await fetchTokens();
  // Access tokens live at most five minutes; a long test (a sync of thousands of results) keeps fresh ones.
  const refresh = demoClients.length
    ? setInterval(() => void fetchTokens().catch(() => undefined), 180_000)
    : undefined;
  refresh?.unref();
  return {
    app,
    deps,
    logLines,
    dbName,
    tokens,
    as: (who: string) => {
      const token = tokens[who];
      if (!token) throw new Error(`no demo client '${who}'`);
      return request.agent(app).set('Authorization', `Bearer ${token}`);
    },
    close: async () => {
      clearInterval(refresh);
      flushQueries(inject('queryLogDir'));
      if (!options.keepDatabase) await deps.connection.dropDatabase();
      await deps.connection.close();
    },
  };
}
