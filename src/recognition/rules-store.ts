/**
 * The recognition rules in the database: the `recognition_rules` collection holds one document per version, each a
 * full snapshot of the five parts (the JSON of the seed files), with who changed what and when. Version 1 is created
 * from seed/ at the first start. Every process keeps the current rules in memory, indexed once, and notices a newer
 * version with a cheap query at most every `pollMs` (and at once after its own edit).
 *
 * Race-free without transactions: a version's number is its unique `_id`, so two processes creating version 1, or
 * two administrators saving on top of the same version, cannot both succeed — the second gets a duplicate key and is
 * told its version is stale.
 */
import { isDeepStrictEqual } from 'node:util';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Collection, Db } from 'mongodb';
import type { Logger } from '../log.js';
import { SeedDataError } from './errors.js';
import { indexRecognitionData, parseRecognitionData, SEED_FILES, type RecognitionRules } from './load.js';

export const RULES_COLLECTION = 'recognition_rules';

export type PartKey = keyof typeof SEED_FILES;
export const PART_KEYS = Object.keys(SEED_FILES) as PartKey[];

/** Part names as they appear in URLs (`/admin/rules/local-codes`): the seed file names without `.json`. */
export const PART_NAMES: Record<PartKey, string> = Object.fromEntries(
  PART_KEYS.map((k) => [k, SEED_FILES[k].replace(/\.json$/, '')]),
) as Record<PartKey, string>;

export function partKeyOf(name: string): PartKey | undefined {
  return PART_KEYS.find((k) => PART_NAMES[k] === name);
}

/** Re-projection of the fact index after a change of the catalogue or the local codes. */
export interface ReindexStatus {
  state: 'running' | 'done' | 'failed';
  done: number;
  total: number;
  facts: number;
  startedAt: Date;
  finishedAt?: Date;
  error?: string;
}

export interface RulesVersionDoc {
  /** The version number: unique, so concurrent writers of one version cannot both succeed. */
  _id: number;
  /**
   * Each part as JSON text: the seed files carry `$comment` keys, which MongoDB does not store as field names, and
   * the text keeps what the administrator sent exactly.
   */
  parts: Record<PartKey, string>;
  changedParts: PartKey[];
  changedBy: string;
  changedAt: Date;
  reindex?: ReindexStatus;
}

export type VersionSummary = Omit<RulesVersionDoc, 'parts'>;

/** A PUT based on a version that is no longer the current one. */
export class StaleRulesError extends Error {
  constructor(readonly current: number) {
    super(`The recognition rules are at version ${current}`);
    this.name = 'StaleRulesError';
  }
}

/** The five parts of a seed folder as JSON text (not validated here). */
export function readSeedParts(dir: string): Record<PartKey, string> {
  return Object.fromEntries(
    PART_KEYS.map((k) => {
      const file = path.join(dir, SEED_FILES[k]);
      try {
        return [k, readFileSync(file, 'utf8')];
      } catch (e) {
        throw new SeedDataError(file, [`cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`]);
      }
    }),
  ) as Record<PartKey, string>;
}

/** Parses, validates together and indexes the parts. Throws SeedDataError naming the part's file at fault. */
export function compileRules(parts: Record<PartKey, string>): RecognitionRules {
  const json = {} as Record<PartKey, unknown>;
  for (const k of PART_KEYS) {
    try {
      json[k] = JSON.parse(parts[k]) as unknown;
    } catch (e) {
      throw new SeedDataError(SEED_FILES[k], [`is not JSON: ${(e as Error).message}`]);
    }
  }
  return indexRecognitionData(parseRecognitionData(json));
}

const isDuplicateKey = (e: unknown) => (e as { code?: number }).code === 11000;

export interface RulesStoreOptions {
  /** Where version 1 comes from when the collection is empty. */
  seedDir: string;
  /** How often at most a process asks the database for a newer version (ms). */
  pollMs?: number;
  clock?: () => number;
}

export interface CurrentRules {
  version: number;
  rules: RecognitionRules;
  doc: RulesVersionDoc;
}

export class RulesStore {
  readonly collection: Collection<RulesVersionDoc>;
  private state: CurrentRules | undefined;
  private lastCheck = 0;
  private pending: Promise<boolean> | undefined;
  private readonly listeners: ((next: CurrentRules, previous: CurrentRules) => void)[] = [];
  private readonly pollMs: number;
  private readonly clock: () => number;

  constructor(
    db: Db,
    private readonly log: Logger,
    private readonly options: RulesStoreOptions,
  ) {
    this.collection = db.collection<RulesVersionDoc>(RULES_COLLECTION);
    this.pollMs = options.pollMs ?? 5000;
    this.clock = options.clock ?? Date.now;
  }

  /** The rules in force in this process (for FactProjector and the FHIR operations). */
  get current(): CurrentRules {
    if (!this.state) throw new Error('RulesStore.init() has not run');
    return this.state;
  }

  readonly rules = (): RecognitionRules => this.current.rules;

  /** Whether rules are in force in this process (init() ran), for /readyz. */
  get isLoaded(): boolean {
    return this.state !== undefined;
  }

  /** Called in this process whenever a newer version replaces the rules in memory (own edit or another's). */
  onChange(listener: (next: CurrentRules, previous: CurrentRules) => void): void {
    this.listeners.push(listener);
  }

  /** Loads the current version, creating version 1 from the seed folder when there is none. */
  async init(): Promise<CurrentRules> {
    let doc = await this.latest();
    if (!doc) {
      const parts = readSeedParts(this.options.seedDir);
      compileRules(parts); // a broken seed folder stops the start with every problem listed
      const first: RulesVersionDoc = {
        _id: 1,
        parts,
        changedParts: [...PART_KEYS],
        changedBy: 'seed',
        changedAt: new Date(this.clock()),
      };
      try {
        await this.collection.insertOne(first);
        this.log.info('Recognition rules created from the seed folder', { version: 1 });
      } catch (e) {
        if (!isDuplicateKey(e)) throw e; // another process created it first: use theirs
      }
      doc = (await this.latest())!;
    }
    this.state = { version: doc._id, rules: compileRules(doc.parts), doc };
    this.lastCheck = this.clock();
    return this.state;
  }

  /**
   * Adopts a newer version if there is one. Asks the database at most every `pollMs` unless forced; concurrent
   * callers share one query. Returns whether the rules changed.
   */
  async refresh(force = false): Promise<boolean> {
    if (!force && this.clock() - this.lastCheck < this.pollMs) return false;
    this.pending ??= this.adoptLatest().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async adoptLatest(): Promise<boolean> {
    this.lastCheck = this.clock();
    const head = await this.collection.findOne({}, { sort: { _id: -1 }, projection: { _id: 1 } });
    if (!head || head._id <= this.current.version) return false;
    const doc = await this.collection.findOne({ _id: head._id });
    if (!doc) return false;
    let rules: RecognitionRules;
    try {
      rules = compileRules(doc.parts);
    } catch (e) {
      // Only validated versions are written; this guards against a version written by a newer release.
      this.log.error('Recognition rules version not usable; keeping the current one', {
        version: doc._id,
        error: (e as Error).message,
      });
      return false;
    }
    const previous = this.current;
    this.state = { version: doc._id, rules, doc };
    this.log.info('Recognition rules updated', { version: doc._id, from: previous.version });
    for (const listener of this.listeners) listener(this.state, previous);
    return true;
  }

  /**
   * Saves a new version with `part` replaced, if `baseVersion` is still the current one. The new part is validated
   * together with the other current parts (SeedDataError otherwise), then given to `verify` for checks of the
   * caller. Throws StaleRulesError when someone else saved first.
   */
  async update(
    part: PartKey,
    json: unknown,
    baseVersion: number,
    changedBy: string,
    verify?: (rules: RecognitionRules) => void,
  ): Promise<CurrentRules & { changed: boolean }> {
    await this.refresh(true);
    const base = this.current;
    // The same content again (a retried PUT, a save without edits) is no new version, whatever ETag it was based on.
    if (isDeepStrictEqual(JSON.parse(base.doc.parts[part]) as unknown, json)) return { ...base, changed: false };
    if (base.version !== baseVersion) throw new StaleRulesError(base.version);
    const parts = { ...base.doc.parts, [part]: `${JSON.stringify(json, null, 2)}\n` };
    verify?.(compileRules(parts));
    const doc: RulesVersionDoc = {
      _id: base.version + 1,
      parts,
      changedParts: [part],
      changedBy,
      changedAt: new Date(this.clock()),
    };
    try {
      await this.collection.insertOne(doc);
    } catch (e) {
      if (!isDuplicateKey(e)) throw e;
      await this.refresh(true);
      throw new StaleRulesError(this.current.version);
    }
    this.log.info('Recognition rules changed', { version: doc._id, part, changedBy });
    await this.refresh(true);
    return { ...this.current, changed: true };
  }

  /** One version with its parts (JSON text as stored), or null. */
  async version(n: number): Promise<RulesVersionDoc | null> {
    return this.collection.findOne({ _id: n });
  }

  /** Records the progress of a version's fact re-projection (visible to every process). */
  async setReindex(version: number, status: ReindexStatus): Promise<void> {
    await this.collection.updateOne({ _id: version }, { $set: { reindex: status } });
    if (this.state?.version === version) this.state.doc.reindex = status;
  }

  /** Every version, newest first, without the parts. */
  async history(): Promise<VersionSummary[]> {
    const docs = await this.collection.find({}, { sort: { _id: -1 }, projection: { parts: 0 } }).toArray();
    return docs as VersionSummary[];
  }

  private async latest(): Promise<RulesVersionDoc | null> {
    return this.collection.findOne({}, { sort: { _id: -1 } });
  }
}
