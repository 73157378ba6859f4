import type { Server } from 'node:http';
import { createApp } from './app.js';
import { createHttpServer, createMetricsServer } from './http-limits.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { createServices, runMaintenance } from './services.js';
import { demoInstructions, tokenCommand } from './demo/instructions.js';
import { refreshShowcase, seedDemoIfNeeded, seedDepsOf } from './demo/seed.js';
import { DatabaseUnavailableError, startDatabase } from './store/database.js';

/** How often a broker that inherits its parent's rules pulls them. */
const RULES_PULL_MS = 60_000;

/** Process entry: config → database → app → listen; graceful shutdown on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel, json: config.mode === 'production' || !process.stdout.isTTY });
  const db = await startDatabase({
    uri: config.mongodbUri,
    dataDir: config.dataDir,
    onProgress: (message) => log.info(message),
  });
  log.info('Database started', { database: db.description });
  const deps = await createServices(config, log, db.uri, process.env.HUREN_DB_NAME ?? 'huren');
  const withDemoData = config.mode === 'demo' && config.demoPatients > 0;
  // The showcase's results are relative to today: refreshed before anything is served.
  if (withDemoData) await refreshShowcase(seedDepsOf(deps));
  const app = createApp(deps);
  const server: Server = createHttpServer(app, config);
  await listen(server, config.port);
  const metricsServer = config.metricsPort === undefined ? undefined : createMetricsServer(deps.metrics);
  if (metricsServer) {
    await listen(metricsServer, config.metricsPort!, config.metricsHost);
    const a = metricsServer.address();
    log.info('Metrics listener (no token)', {
      metrics: `http://${config.metricsHost}:${typeof a === 'object' && a ? a.port : config.metricsPort}/metrics`,
    });
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const base = config.baseUrl ?? `http://localhost:${port}/fhir`;
  if (config.mode === 'demo') {
    log.info('Demo mode: demo clients are seeded; get a bearer token with the command below', {
      token: tokenCommand(base.replace(/\/fhir$/, ''), config.dataDir, '--role his|clinician|bureau|supervisor|admin'),
      clientKeys: `${config.dataDir}/demo-clients`,
    });
  }
  log.info('Huren is listening', {
    port,
    mode: config.mode,
    fhir: base,
    metadata: `${base}/metadata`,
    database: db.description,
  });

  if (withDemoData) {
    process.stdout.write(`${demoInstructions(base, config.dataDir)}\n`);
    // The demo population is seeded once, in the background, so that the first start is quick on FerretDB.
    void seedDemoIfNeeded(seedDepsOf(deps), { patients: config.demoPatients }).catch((err: unknown) =>
      log.warn('Demo data not seeded; it is resumed at the next start', { error: (err as Error).message }),
    );
  }

  const maintenance = setInterval(() => {
    runMaintenance(deps).catch((err: unknown) => log.error('Maintenance failed', { error: (err as Error).message }));
  }, 10 * 60_000);
  maintenance.unref();
  const stopSync = deps.sync.startSchedule(); // scheduled pulls of hospital servers (leases keep one puller each)
  // The parent broker's catalogue, when this broker inherits it (docs/federation.md): at start and every minute.
  const stopRules = deps.federation.rules.startSchedule(RULES_PULL_MS);
  void runMaintenance(deps).catch((err: unknown) => log.error('Maintenance failed', { error: (err as Error).message }));

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(maintenance);
    stopSync();
    stopRules();
    log.info('Shutting down: finishing in-flight requests', { signal });
    const force = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
    server.closeIdleConnections();
    metricsServer?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    clearTimeout(force);
    await deps.connection.close();
    await db.stop();
    log.info('Stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

function listen(server: Server, port: number, host?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
    server.listen(port, host);
  });
}

main().catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof DatabaseUnavailableError;
  process.stderr.write(`huren: ${known ? (err as Error).message : String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
