import fs from 'node:fs';
import path from 'node:path';
import type { Resource } from 'fhir/r4';
import mongoose from 'mongoose';
import type { Db, Document, IndexDescription, MongoClient } from 'mongodb';
import { legacySqliteData, startDatabase, startLegacySqlite, type DatabaseServer } from './database.js';
import { STORE_LAYOUT, type IndexFn } from './resource-store.js';

/**
 * `npm run cli -- migrate-sqlite`: converts a data directory of the earlier SQLite default (`<dataDir>/ferretdb`,
 * which `npm start` refuses) into the database `npm start` uses now (the embedded FerretDB over PostgreSQL in
 * `<dataDir>/postgresql`; MONGODB_URI when set). Every collection of every database is copied as it is — history,
 * ingest log, ledger, rules, signing keys, clients, sync state … — with its indexes, except that the current resources
 * are written in the current search layout (`tk` tokens; the old layout's indexes stay behind) and the database is
 * marked so: the broker's first start has nothing to index again (ResourceStore.upgradeLayout).
 *
 * Safe to interrupt: nothing marks the data directory converted until every collection has been copied and counted;
 * only then is `<dataDir>/ferretdb` renamed to `ferretdb.migrated-<timestamp>` (kept, never deleted), which is what
 * lets `npm start` run. A second run copies again and skips the documents already there (duplicate `_id`s).
 */

export interface MigrationProgress {
  database: string;
  collection: string;
  /** Position of this collection among all (1-based) and how many there are. */
  index: number;
  collections: number;
  /** Documents of this collection copied so far (already present ones included). */
  copied: number;
  /** The source's own estimate of the collection's size (SQLite statistics), when it gives one. */
  estimated?: number;
  /** The collection is copied, its indexes created. */
  done: boolean;
}

export interface MigrateOptions {
  dataDir: string;
  /** MONGODB_URI: copy into that server instead of the embedded database. */
  uri?: string;
  /** fsync on the new embedded database (default on; tests turn it off). */
  durable?: boolean;
  /** The broker's search values of a resource (searchIndex): the resources are written in the current layout. */
  index: IndexFn;
  /** Documents per insert (default 1000). */
  batchSize?: number;
  /** Steps of the migration (starting the databases, the rename …), for the user. */
  onMessage?: (message: string) => void;
  /** Called when a collection starts, after every batch, and when it is done. Throwing stops the migration. */
  onProgress?: (progress: MigrationProgress) => void;
  /** Stops the migration between two batches (Ctrl-C); it can be run again later. */
  signal?: AbortSignal;
  clock?: () => Date;
}

export interface MigratedCollection {
  database: string;
  collection: string;
  documents: number;
  indexes: string[];
}

export interface MigrationResult {
  /** Where the SQLite files are now (renamed, kept). */
  keptAt: string;
  /** The database they were copied into. */
  target: string;
  collections: MigratedCollection[];
  documents: number;
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

const RESOURCES = 'resources';
/** Where ResourceStore keeps its layout marker. */
const STORE_META = 'store_meta';

/**
 * Indexes of the SQLite-era layout that the current one dropped (models.ts: every search narrows on `tk` now): not
 * copied, so they cost no writes on the new database. Everything else is copied as it is.
 */
export const OBSOLETE_INDEXES: Readonly<Record<string, readonly string[]>> = {
  [RESOURCES]: [
    'type_1_sp.patient_1_sp.code_1_sp.date.lo_-1',
    'type_1_sp.subject_1',
    'type_1_sp.identifier_1',
    'type_1_sp.url_1',
  ],
};
const SYSTEM_DATABASES = new Set(['admin', 'local', 'config']);
const DUPLICATE_KEY = 11000;
/** What a read must leave as it is so the copy has the same BSON types (int64 stays int64, binary stays binary). */
const RAW_VALUES = { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true } as const;

/** `2026-12-08T09-30-00Z`: a timestamp that is a portable file name. */
const stamp = (d: Date) =>
  d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');

/**
 * Migrates `<dataDir>/ferretdb` into the current database; undefined when there is nothing to migrate (no SQLite
 * data, or it was migrated already). Throws MigrationError (or the database's error) and leaves the SQLite directory
 * where it was when anything fails, so `npm start` keeps refusing and the command can be run again.
 */
export async function migrateSqlite(options: MigrateOptions): Promise<MigrationResult | undefined> {
  const legacyDir = legacySqliteData(options.dataDir);
  if (!legacyDir) return undefined;
  const say = options.onMessage ?? (() => {});
  let source: DatabaseServer | undefined;
  let target: DatabaseServer | undefined;
  const clients: MongoClient[] = [];
  let copied: MigratedCollection[];
  let targetDescription: string;
  try {
    say(`Starting FerretDB over the SQLite files in ${legacyDir}…`);
    source = await startLegacySqlite(legacyDir);
    say('Starting the new database…');
    target = await startDatabase({
      uri: options.uri,
      dataDir: options.dataDir,
      durable: options.durable,
      allowLegacySqlite: true,
      onProgress: say,
    });
    targetDescription = target.description;
    say(`Copying into ${target.description}`);
    const from = await new mongoose.mongo.MongoClient(source.uri).connect();
    clients.push(from);
    const to = await new mongoose.mongo.MongoClient(target.uri).connect();
    clients.push(to);
    copied = await copyAll(from, to, options);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await source?.stop();
    await target?.stop();
  }
  // The one step that makes the data directory count as converted (legacySqliteData), taken only now.
  const keptAt = path.join(path.dirname(legacyDir), `${path.basename(legacyDir)}.migrated-${stamp(clock(options))}`);
  fs.renameSync(legacyDir, keptAt);
  say(`Renamed ${legacyDir} to ${keptAt}: the SQLite files are kept there; delete them once you no longer need them.`);
  return {
    keptAt,
    target: targetDescription,
    collections: copied,
    documents: copied.reduce((n, c) => n + c.documents, 0),
  };
}

const clock = (options: MigrateOptions) => (options.clock ?? (() => new Date()))();

interface SourceCollection {
  database: string;
  name: string;
  options: Document;
}

async function copyAll(from: MongoClient, to: MongoClient, options: MigrateOptions): Promise<MigratedCollection[]> {
  const { databases } = await from.db('admin').admin().listDatabases({ nameOnly: true });
  const plan: SourceCollection[] = [];
  for (const { name } of databases.sort((a, b) => a.name.localeCompare(b.name))) {
    if (SYSTEM_DATABASES.has(name)) continue;
    const infos = await from.db(name).listCollections({}, { nameOnly: false }).toArray();
    for (const info of infos.sort((a, b) => a.name.localeCompare(b.name))) {
      if ((info.type ?? 'collection') !== 'collection' || info.name.startsWith('system.')) continue;
      plan.push({ database: name, name: info.name, options: ('options' in info ? info.options : undefined) ?? {} });
    }
  }
  const done: MigratedCollection[] = [];
  for (const [i, c] of plan.entries()) {
    done.push(await copyCollection(from.db(c.database), to.db(c.database), c, i + 1, plan.length, options));
  }
  // The resources are in the current layout: the broker's start-up has nothing to re-index (upgradeLayout).
  const markers = new Set<string>();
  for (const database of new Set(plan.filter((c) => c.name === RESOURCES).map((c) => c.database))) {
    const meta = to.db(database).collection<{ _id: string; version: number }>(STORE_META);
    if (((await meta.findOne({ _id: 'layout' }))?.version ?? 0) < STORE_LAYOUT) {
      await meta.replaceOne({ _id: 'layout' }, { version: STORE_LAYOUT }, { upsert: true });
    }
    if (!(await from.db(database).collection<{ _id: string }>(STORE_META).findOne({ _id: 'layout' }))) {
      markers.add(database);
    }
  }
  // Counted again at the end, all together: what `npm start` will find is what the SQLite files held.
  options.onMessage?.('Counting the copy…');
  const wrong: string[] = [];
  for (const c of done) {
    const copy = to.db(c.database).collection(c.collection);
    const found = await copy.countDocuments({});
    const expected = c.documents + (c.collection === STORE_META && markers.has(c.database) ? 1 : 0);
    if (found !== expected) wrong.push(`${c.database}.${c.collection}: ${c.documents} in SQLite, ${found} copied`);
    const indexes = new Set((await copy.listIndexes().toArray()).map((ix) => ix.name as string));
    const missing = c.indexes.filter((name) => !indexes.has(name));
    if (missing.length) wrong.push(`${c.database}.${c.collection}: index ${missing.join(', ')} missing`);
  }
  if (wrong.length) {
    throw new MigrationError(
      `The copy does not match the SQLite database, so nothing was renamed:\n${wrong.join('\n')}`,
    );
  }
  return done;
}

async function copyCollection(
  from: Db,
  to: Db,
  c: SourceCollection,
  index: number,
  collections: number,
  options: MigrateOptions,
): Promise<MigratedCollection> {
  const batchSize = options.batchSize ?? 1000;
  options.signal?.throwIfAborted();
  const estimated = await estimatedCount(from, c.name);
  const progress = (copied: number, isDone = false) =>
    options.onProgress?.({
      database: c.database,
      collection: c.name,
      index,
      collections,
      copied,
      estimated,
      done: isDone,
    });
  progress(0);
  const exists = (await to.listCollections({ name: c.name }, { nameOnly: true }).toArray()).length > 0;
  if (!exists) {
    const { capped, size, max } = c.options as { capped?: boolean; size?: number; max?: number };
    await to.createCollection(c.name, capped ? { capped, size, max } : {});
  }
  const src = from.collection(c.name);
  const dst = to.collection(c.name);
  const reindex = c.name === RESOURCES;
  let copied = 0;
  let batch: Document[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await insertSkippingPresent(dst, batch);
    copied += batch.length;
    batch = [];
    progress(copied);
  };
  // Resources are read as the broker reads them (their search values are computed from the plain JSON resource).
  for await (const doc of src.find({}, reindex ? { batchSize } : { ...RAW_VALUES, batchSize })) {
    batch.push(reindex ? currentLayout(doc, options.index) : doc);
    if (batch.length >= batchSize) {
      options.signal?.throwIfAborted();
      await flush();
    }
  }
  await flush();
  // Indexes after the documents (one build each instead of one update per insert). Only the missing ones, one per
  // call: FerretDB 1.24's createIndexes drops the connection when two or more of the requested indexes exist already
  // (validateIndexesForCreation deletes from the filtered list at the unfiltered position), as on a second run.
  const specs = (await src.listIndexes().toArray())
    .filter((ix) => ix.name !== '_id_' && !OBSOLETE_INDEXES[c.name]?.includes(ix.name as string))
    .map(({ v: _v, ns: _ns, ...spec }) => spec as IndexDescription & { name: string });
  const present = new Set((await dst.listIndexes().toArray()).map((ix) => ix.name as string));
  for (const spec of specs) if (!present.has(spec.name)) await dst.createIndexes([spec]);
  progress(copied, true);
  return { database: c.database, collection: c.name, documents: copied, indexes: specs.map((s) => s.name) };
}

/** A current document with the search values of this version (as ResourceStore.upgradeLayout computes them). */
function currentLayout(doc: Document, index: IndexFn): Document {
  const resource = doc.resource as Resource | null | undefined;
  if (!resource) return { ...doc, sp: {}, so: {}, tk: [], owner: (doc.owner as string[] | undefined) ?? [] };
  try {
    const { sp, so, tk, owner } = index(resource);
    return { ...doc, sp, so, tk, owner: owner ?? [] };
  } catch (err) {
    throw new MigrationError(`${String(doc._id)}: its search values could not be computed: ${(err as Error).message}`);
  }
}

/** One unordered insert; documents already there (a run interrupted before) are skipped, any other error fails. */
async function insertSkippingPresent(dst: ReturnType<Db['collection']>, docs: Document[]): Promise<void> {
  try {
    await dst.insertMany(docs, { ordered: false });
  } catch (err) {
    const writeErrors = err instanceof mongoose.mongo.MongoBulkWriteError ? [err.writeErrors].flat() : undefined;
    if (!writeErrors?.length || writeErrors.some((e) => e.code !== DUPLICATE_KEY)) throw err;
  }
}

/** SQLite's statistics (collStats), for the progress display only: counting exactly would read the whole table. */
async function estimatedCount(db: Db, collection: string): Promise<number | undefined> {
  try {
    const stats = await db.command({ collStats: collection });
    return typeof stats.count === 'number' ? stats.count : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The command: `npm run cli -- migrate-sqlite [--batch-size N]` (HUREN_DATA_DIR, MONGODB_URI as for `npm start`).
 * Progress and the outcome go to stderr. Returns the exit code.
 */
