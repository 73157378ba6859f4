import mongoose from 'mongoose';
import type { Resource } from 'fhir/r4';
import type { AppDeps } from './app.js';
import type { Config } from './config.js';
import { createSearchRegistry, extractSearchValues } from './fhir/search/index.js';
import { createValidator } from './fhir/validation/validator.js';
import type { Logger } from './log.js';
import { createMetrics } from './ops/metrics.js';
import { createModels, ensureIndexes } from './store/models.js';
import { ResourceStore } from './store/resource-store.js';

/**
 * Connects to the database and builds everything the app needs: indexes, compiled validators, the search registry,
 * the store. Replays ingest-log entries a crash left unfinished before anything is served.
 */
export async function createServices(config: Config, log: Logger, uri: string, dbName: string): Promise<AppDeps> {
  const connection = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 10000 }).asPromise();
  const models = createModels(connection);
  await ensureIndexes(models);
  const registry = createSearchRegistry({ defaultTimeZone: config.defaultTimeZone });
  const validator = createValidator();
  const store = new ResourceStore(models, (r: Resource) => extractSearchValues(registry, r), log);
  const metrics = createMetrics();
  const replayed = await store.replayPending();
  metrics.replayed.inc(replayed);
  await publishConformance(store, validator.conformanceResources());
  return { connection, metrics, config, log, store, validator, registry };
}

/** The broker's own profiles, code systems and value sets, stored under fixed ids (idempotent). */
async function publishConformance(store: ResourceStore, resources: Resource[]): Promise<void> {
  const ops = [];
  for (const r of resources) {
    if (!r.id) continue;
    const plan = await store.planUpdate(r, r.id);
    if ('op' in plan) ops.push(plan.op);
  }
  await store.commit(ops);
}
