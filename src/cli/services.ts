/**
 * The broker's services for a command-line run against its database: MONGODB_URI (a running broker may use it at
 * the same time), else the embedded database of HUREN_DATA_DIR, which only one process may own: while a broker (or
 * another command) runs on it the command is refused, naming that process, before anything is started.
 */
import type { AppDeps } from '../app.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { createServices } from '../services.js';
import { embeddedDatabaseOwner, POSTGRES_DIR, startDatabase } from '../store/database.js';
import { CliError } from './errors.js';
import { step } from '../progress.js';

export async function openServices(): Promise<{ deps: AppDeps; close: () => Promise<void> }> {
  const started = Date.now();
  const config = loadConfig();
  const log = createLogger({ level: process.env.HUREN_LOG_LEVEL ?? 'warn', stream: process.stderr });
  if (config.mongodbUri) {
    step('Connecting to MongoDB at MONGODB_URI…');
  } else {
    const owner = embeddedDatabaseOwner(config.dataDir);
    if (owner !== undefined) {
      throw new CliError(
        `The embedded database in ${config.dataDir}/${POSTGRES_DIR} is in use by another Huren process (pid ` +
          `${owner}, e.g. a running \`npm start\`). Stop it first (Ctrl-C in its terminal, or \`kill ${owner}\`) and ` +
          'run this command again; or run the broker on MongoDB (MONGODB_URI) and give the command the same ' +
          'MONGODB_URI. Nothing was started or changed.',
      );
    }
    step(`Starting the embedded database in ${config.dataDir}/${POSTGRES_DIR} (a few seconds)…`);
  }
  const db = await startDatabase({ uri: config.mongodbUri, dataDir: config.dataDir, onProgress: step });
  step('Loading the validator and the recognition rules…');
  const deps = await createServices(config, log, db.uri, process.env.HUREN_DB_NAME ?? 'huren');
  step(`Ready after ${((Date.now() - started) / 1000).toFixed(1)} s (${db.description}).`);
  return {
    deps,
    close: async () => {
      await deps.connection.close();
      await db.stop();
    },
  };
}
