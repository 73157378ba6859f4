import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDatabase, type DatabaseServer } from '../../src/store/database.js';
import { coverOf, type ObservedQuery } from '../../src/store/query-inventory.js';

let server: DatabaseServer | undefined;
let queryLogDir: string | undefined;

/** Starts one throw-away database for the whole run: MONGODB_URI if set, else mongod or the embedded FerretDB. */
export async function setup(project: TestProject): Promise<void> {
  server = await startDatabase({
    uri: process.env.MONGODB_URI,
    dataDir: 'data/test',
    memory: true,
    onProgress: (message) => process.stderr.write(`${message}\n`),
  });
  process.stderr.write(`Test database: ${server.description}\n`);
  queryLogDir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-test-queries-'));
  project.provide('mongoUri', server.uri);
  project.provide('postgresUrl', server.postgres?.url ?? '');
  project.provide('queryLogDir', queryLogDir);
}

/**
 * Stops the database, then checks every query shape the test apps sent against the query inventory: a query that no
 * entry of src/store/query-inventory.ts covers fails the run (it was never shown to be served by an index).
 */
export async function teardown(): Promise<void> {
  await server?.stop();
  if (!queryLogDir) return;
  const observed = new Map<string, ObservedQuery>();
  for (const file of fs.readdirSync(queryLogDir)) {
    for (const q of JSON.parse(fs.readFileSync(path.join(queryLogDir, file), 'utf8')) as ObservedQuery[]) {
      observed.set(JSON.stringify(q), q);
    }
  }
  fs.rmSync(queryLogDir, { recursive: true, force: true });
  const uncovered = [...observed.values()].filter((q) => !coverOf(q));
  if (uncovered.length > 0) {
    // vitest does not fail the run for an error thrown here (it only prints it): the exit code does.
    process.stderr.write(
      `\nFAIL query inventory: ${uncovered.length} query shape(s) the app sent are not in ` +
        `src/store/query-inventory.ts (add an index anchor, or a scan with its reason):\n` +
        `${uncovered.map((q) => `  ${q.collection} {${q.keys.join(', ')}}`).join('\n')}\n`,
    );
    process.exitCode = 1;
    return;
  }
  process.stderr.write(`Query inventory: all ${observed.size} query shapes the tests sent are covered\n`);
}

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
    /** The PostgreSQL under the embedded FerretDB ('' on MongoDB). */
    postgresUrl: string;
    /** Where test apps record the shapes of their queries. */
    queryLogDir: string;
  }
}
