import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import type { Resource } from 'fhir/r4';
import type { AppDeps } from './app.js';
import { patientKeySecretOf, type Config } from './config.js';
import { createAuditRecorder } from './audit/recorder.js';
import { AppLaunches } from './auth/app-launch.js';
import { removeDemoClients, seedDemoClients } from './auth/demo-clients.js';
import { cdsClients, removeDemoCdsClients, seedDemoCdsClient } from './cds/clients.js';
import { KeyRing, type SigningKeyDoc } from './auth/keys.js';
import { ownersOf } from './auth/policy.js';
import type { ClientDoc, SeenJtiDoc, TokenDeps } from './auth/tokens.js';
import { createSearchRegistry, extractSearchValues, type SearchRegistry } from './fhir/search/index.js';
import { createValidator } from './fhir/validation/validator.js';
import type { Logger } from './log.js';
import { createMetrics } from './ops/metrics.js';
import { FactProjector, FactStore, type RebuildProgress } from './recognition/fact-store.js';
import { PatientIndex } from './recognition/patient-index.js';
import { RulesStore } from './recognition/rules-store.js';
import { RulesAdmin } from './admin/rules-admin.js';
import { DecisionLedger } from './recognition/ledger.js';
import { LedgerRollups } from './reports/rollups.js';
import { ReuseCheckStore } from './recognition/reuse-checks.js';
import { createModels, ensureIndexes } from './store/models.js';
import { ResourceStore, type IndexFn } from './store/resource-store.js';
import { SyncService } from './sync/service.js';
import { BrokerRegistry } from './federation/brokers.js';
import { FederationService } from './federation/service.js';
import { FederatedFigures } from './federation/figures.js';
import { LayeredRules } from './federation/rules.js';

/** The recognition rules shipped with Huren (catalogue, local codes, institutions …). */
export const SEED_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'seed');

/**
 * Connects to the database and builds everything the app needs: indexes, compiled validators, the search registry,
 * the store. Replays ingest-log entries a crash left unfinished before anything is served.
 */
/** The search values, tokens and owners the store keeps with each resource. */
export function resourceIndex(registry: SearchRegistry): IndexFn {
  return (r: Resource) => ({ ...extractSearchValues(registry, r), owner: ownersOf(r) });
}

export async function createServices(config: Config, log: Logger, uri: string, dbName: string): Promise<AppDeps> {
  const connection = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 10000 }).asPromise();
  const models = createModels(connection);
  await ensureIndexes(models);
  const registry = createSearchRegistry({ defaultTimeZone: config.defaultTimeZone });
  const validator = createValidator();
  // The recognition rules live in the database (version 1 from seed/ at the first start), editable by admins.
  const rulesStore = new RulesStore(connection.db!, log, { seedDir: SEED_DIR, pollMs: config.rulesPollMs });
  await rulesStore.init();
  const factStore = new FactStore(connection.db!);
  await factStore.ensureIndexes();
  // The current epoch's secret first, then those of earlier epochs a rotation still honours.
  const secret = [patientKeySecretOf(config), ...config.patientKeyPreviousSecrets];
  const facts = new FactProjector(factStore, rulesStore.rules, secret, log, new PatientIndex(connection.db!, secret));
  const reuseChecks = new ReuseCheckStore(connection.db!);
  await reuseChecks.ensureIndexes();
  const ledger = new DecisionLedger(connection.db!);
  await ledger.ensureIndexes();
  const rollups = new LedgerRollups(connection.db!, ledger);
  // Ledgers recorded under the figure definitions before issue 20 are re-tallied into prompts once.
  const retallied = await rollups.retallyOnce();
  if (retallied) {
    log.info('Report figures re-tallied under the current definitions; report rollups will be rebuilt', retallied);
  }
  const store = new ResourceStore(models, resourceIndex(registry), log, undefined, {
    onVersion: facts.onVersion,
    onVersions: facts.onVersions,
    searchTimeoutMs: config.searchTimeoutMs,
  });
  const metrics = createMetrics();
  await store.upgradeLayout();
  const replayed = await store.replayPending();
  // A database from before the patient index: build it once, in the background (checks work meanwhile; their audit
  // events and identity corroboration name the patients once it is done).
  if (await facts.patients.needsBuild(store)) {
    void facts.patients
      .rebuild(store)
      .then((patients) => log.info('Patient index built', { patients }))
      .catch((err: unknown) => log.error('Patient index not built', { error: (err as Error).message }));
  }
  metrics.replayed.inc(replayed);
  await publishConformance(store, [...validator.conformanceResources(), ...registry.searchParameters]);
  const rules = new RulesAdmin(rulesStore, facts, store, validator, log);
  await rules.publish();

  const db = connection.db!;
  const clients = db.collection<ClientDoc>('clients');
  const seenJti = db.collection<SeenJtiDoc>('seen_jti');
  const signingKeys = db.collection<SigningKeyDoc>('signing_keys');
  await seenJti.createIndex({ expiresAt: 1 });
  await signingKeys.createIndex({ signUntil: -1 });
  const keyRing = new KeyRing(signingKeys, {
    rotationMs: config.keyRotationHours * 3600_000,
    tokenLifetimeMs: config.tokenLifetimeSeconds * 1000,
  });
  if (config.mode === 'demo') {
    await seedDemoClients(clients, config.dataDir);
    await seedDemoCdsClient(cdsClients(db), config.dataDir);
  } else {
    await removeDemoClients(clients);
    await removeDemoCdsClients(cdsClients(db));
  }
  const auth: TokenDeps = {
    clients,
    seenJti,
    keyRing,
    issuer: config.baseUrl ?? 'urn:huren:broker',
    tokenLifetimeSeconds: config.tokenLifetimeSeconds,
  };
  const audit = createAuditRecorder(store, log);
  const launches = new AppLaunches(db);
  await launches.ensureIndexes();
  const sync = await SyncService.create(
    { db, store, validator, log, metrics, audit },
    { leaseMs: config.syncLeaseSeconds * 1000 },
  );
  const brokers = new BrokerRegistry(db);
  const federation = {
    registry: brokers,
    service: new FederationService({
      registry: brokers,
      facts,
      store,
      log,
      baseUrl: config.baseUrl,
      deadlineMs: config.federationDeadlineMs,
    }),
    rules: new LayeredRules(db, brokers, rules, log),
    figures: new FederatedFigures({
      registry: brokers,
      ledger,
      baseUrl: config.baseUrl,
      rollups,
      rules: () => facts.rules,
      store,
      log,
    }),
  };
  return {
    connection,
    metrics,
    config,
    log,
    store,
    validator,
    registry,
    auth,
    audit,
    facts,
    reuseChecks,
    ledger,
    rollups,
    rules,
    sync,
    launches,
    federation,
    federationPort: federation.service,
    federationFigures: federation.figures,
  };
}

/**
 * Housekeeping that MongoDB would do with TTL indexes, which FerretDB 1.24 lacks: used assertion jtis, retired
 * signing keys, and audit events past their retention. Safe to run from every process.
 */
export async function runMaintenance(deps: AppDeps, now: Date = new Date()): Promise<void> {
  await deps.auth.seenJti.deleteMany({ expiresAt: { $lt: now } });
  await deps.auth.keyRing.purgeExpired();
  await deps.launches.purgeExpired(now);
  const cutoff = new Date(now.getTime() - deps.config.auditRetentionDays * 86400_000);
  const purged = await deps.store.purgeOlderThan('AuditEvent', cutoff);
  if (purged) deps.log.info('Audit events past retention removed', { count: purged });
  // Report rollups of the closed days and months of the last 13 months, ahead of the bureau's first look.
  const rollups = await deps.rollups?.warm(deps.facts.rules.catalogue.timeZone, now);
  if (rollups?.built) deps.log.info('Report rollups built', { built: rollups.built });
}

/** Re-projects every stored DiagnosticReport and Observation into the fact index (for the CLI). */
export async function rebuildFacts(
  deps: Pick<AppDeps, 'facts' | 'store'>,
  onProgress?: (p: RebuildProgress) => void,
): Promise<RebuildProgress> {
  return deps.facts.rebuild(deps.store, onProgress);
}

/**
 * The broker's own profiles, code systems, value sets and search parameters, stored under fixed ids (idempotent).
 * Their current versions are read in chunks of `$in` (about 270 resources: one read each made every start a second
 * slower); only what changed is written.
 */
async function publishConformance(store: ResourceStore, resources: Resource[]): Promise<void> {
  const published = resources.filter((r): r is Resource & { id: string } => Boolean(r.id));
  const current = new Map(
    (await store.findCurrentMany(published.map((r) => `${r.resourceType}/${r.id}`))).map((d) => [d._id, d]),
  );
  const ops = [];
  for (const r of published) {
    const plan = await store.planUpdate(r, r.id, undefined, current.get(`${r.resourceType}/${r.id}`) ?? null);
    if ('op' in plan) ops.push(plan.op);
  }
  await store.commit(ops);
}
