/**
 * The broker under test, in a process of its own (started by bench/run.ts): the real createServices + createApp on
 * the bench database, listening on a loopback port. A separate process keeps the load generator off the broker's
 * event loop and gives the broker's resident set size on its own.
 *
 * Environment: BENCH_DB_URI, BENCH_DB_NAME, and the HUREN_* variables of the run (data dir, patient-key secret, rate
 * limit). Prints `listening <port>` when ready; exits on SIGTERM after closing the server and the connection.
 */
import type { Server } from 'node:http';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createServices } from '../src/services.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger({ level: 'error' });
  const deps = await createServices(config, log, process.env.BENCH_DB_URI!, process.env.BENCH_DB_NAME!);
  const server: Server = createApp(deps).listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => void deps.connection.close().then(() => process.exit(0)));
  });
}

await main();
