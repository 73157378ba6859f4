import type { TestProject } from 'vitest/node';
import { startDatabase, type DatabaseServer } from '../../src/store/database.js';

let server: DatabaseServer | undefined;

/** Starts one throw-away database for the whole run: MONGODB_URI if set, else mongod or the embedded FerretDB. */
export async function setup(project: TestProject): Promise<void> {
  server = await startDatabase({
    uri: process.env.MONGODB_URI,
    dataDir: 'data/test',
    memory: true,
    onProgress: (message) => process.stderr.write(`${message}\n`),
  });
  process.stderr.write(`Test database: ${server.description}\n`);
  project.provide('mongoUri', server.uri);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
  }
}
