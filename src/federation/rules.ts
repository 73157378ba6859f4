/**
 * Rules per level (issue 22): a city broker applies its province's catalogue, acceptance matrix and decline reasons
 * with its own additions layered on top — extra items, stricter (shorter) validity windows, its own regional
 * acceptance rules, extra decline reasons — and publishes the effective rules it applies. The child
 * pulls its parent's effective catalogue (`GET /federation/rules`) when its parent is registered with
 * `inheritRules`, merges its additions, and saves the result as a new version of its rules when it differs (published
 * and re-projected like any edit, with the parent's version named as the author). Pulled at start, on the rules poll
 * and on demand (`POST /admin/federation/rules/$pull`): a change upstream reaches the children within one poll.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Collection, Db } from 'mongodb';
import type { RulesAdmin } from '../admin/rules-admin.js';
import type { AccessContext } from '../auth/tokens.js';
import { badRequest, forbidden } from '../fhir/outcomes.js';
import { parseDeclineReasons } from '../recognition/decline-reasons.js';
import { SeedDataError } from '../recognition/errors.js';
import type { Logger } from '../log.js';
import type { BrokerRegistry } from './brokers.js';
import { NeighbourClient, NeighbourError } from './client.js';

export const ADDITIONS_COLLECTION = 'federation_rule_additions';
const PULL_DEADLINE_MS = 10_000;

type CatalogueJson = { items: { code: string; validityDays: number }[]; region?: string } & Record<string, unknown>;
type MatrixJson = { regions: { region: string }[] } & Record<string, unknown>;
type ReasonsJson = { reasons: { code: string }[] } & Record<string, unknown>;

export interface RuleAdditions {
  _id: 'current';
  /** Items of this level only (the catalogue's item format), added after the parent's. */
  items: CatalogueJson['items'];
  /** Stricter windows: item code → days. A window longer than the parent's is not applied (the parent's stands). */
  windows: Record<string, number>;
  /** Regional acceptance rules of this level (the matrix's format), replacing the parent's for the same region. */
  regions?: MatrixJson['regions'];
  /** Decline reasons of this level (the decline reasons' format), added after the parent's; a parent's code stands. */
  reasons?: ReasonsJson['reasons'];
  updatedBy?: string;
  updatedAt?: Date;
}

export interface PullResult {
  parent?: string;
  parentVersion?: number;
  changed: boolean;
  version: number;
  error?: string;
  at: Date;
}

/** The effective catalogue of this level: the parent's, with this level's windows and items (pure). */
export function layerCatalogue(
  parent: CatalogueJson,
  additions: RuleAdditions,
  region: string | undefined,
): CatalogueJson {
  const stricter = (item: CatalogueJson['items'][number]) => {
    const days = additions.windows[item.code];
    return days !== undefined && days < item.validityDays ? { ...item, validityDays: days } : item;
  };
  const codes = new Set(parent.items.map((i) => i.code));
  return {
    ...parent,
    ...(region ? { region } : {}),
    items: [...parent.items.map(stricter), ...additions.items.filter((i) => !codes.has(i.code)).map(stricter)],
  };
}

/** The effective acceptance matrix of this level: the parent's, with this level's regional rules (pure). */
export function layerMatrix(parent: MatrixJson, additions: RuleAdditions): MatrixJson {
  const own = additions.regions ?? [];
  const mine = new Set(own.map((r) => r.region));
  return { ...parent, regions: [...parent.regions.filter((r) => !mine.has(r.region)), ...own] };
}

/** The effective decline reasons of this level: the parent's, then this level's own codes (pure). */
export function layerDeclineReasons(parent: ReasonsJson, additions: RuleAdditions): ReasonsJson {
  const codes = new Set(parent.reasons.map((r) => r.code));
  return { ...parent, reasons: [...parent.reasons, ...(additions.reasons ?? []).filter((r) => !codes.has(r.code))] };
}

export function parseAdditions(body: unknown): Omit<RuleAdditions, '_id'> {
  const b = (body ?? {}) as Record<string, unknown>;
  const items = b.items ?? [];
  if (!Array.isArray(items) || items.some((i) => typeof (i as { code?: unknown })?.code !== 'string')) {
    throw badRequest('items must be an array of catalogue items, each with its code', 'items');
  }
  const windows = (b.windows ?? {}) as Record<string, unknown>;
  if (typeof windows !== 'object' || Array.isArray(windows)) throw badRequest('windows must be an object', 'windows');
  for (const [code, days] of Object.entries(windows)) {
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 0 || days > 3650) {
      throw badRequest(`windows.${code} must be a whole number of days`, `windows.${code}`);
    }
  }
  const regions = b.regions ?? [];
  if (!Array.isArray(regions) || regions.some((r) => typeof (r as { region?: unknown })?.region !== 'string')) {
    throw badRequest('regions must be an array of regional acceptance rules, each with its region', 'regions');
  }
  const reasons = b.reasons ?? [];
  if (!Array.isArray(reasons)) throw badRequest('reasons must be an array of decline reasons', 'reasons');
  if (reasons.length > 0) {
    // Checked as the decline reasons' own file is: a level cannot save a reason its rules would refuse at the pull.
    try {
      parseDeclineReasons({ version: 'additions', reasons }, 'reasons');
    } catch (err) {
      if (!(err instanceof SeedDataError)) throw err;
      throw badRequest(`reasons: ${err.problems.join('; ')}`, 'reasons');
    }
  }
  return {
    items: items as CatalogueJson['items'],
    windows: windows as Record<string, number>,
    regions: regions as MatrixJson['regions'],
    reasons: reasons as ReasonsJson['reasons'],
  };
}

export class LayeredRules {
  readonly collection: Collection<RuleAdditions>;
  private readonly client = new NeighbourClient();
  private last: PullResult | undefined;

  constructor(
    db: Db,
    private readonly registry: BrokerRegistry,
    private readonly rules: RulesAdmin,
    private readonly log: Logger,
  ) {
    this.collection = db.collection<RuleAdditions>(ADDITIONS_COLLECTION);
  }

  async additions(): Promise<RuleAdditions> {
    return (await this.collection.findOne({ _id: 'current' })) ?? { _id: 'current', items: [], windows: {} };
  }

  async putAdditions(body: unknown, by: string): Promise<RuleAdditions> {
    const doc: RuleAdditions = { _id: 'current', ...parseAdditions(body), updatedBy: by, updatedAt: new Date() };
    await this.collection.replaceOne({ _id: 'current' }, doc, { upsert: true });
    return doc;
  }

  /** `GET /federation/rules`: the catalogue this broker applies, for its children (any registered broker). */
  async published(
    access: AccessContext,
  ): Promise<{ version: number; catalogue: unknown; acceptanceMatrix: unknown; declineReasons: unknown }> {
    const caller = access.role === 'broker' ? await this.registry.byClient(access.clientId) : undefined;
    if (!caller || !caller.enabled)
      throw forbidden('/federation is called by the registered brokers of the federation only');
    await this.rules.store.refresh();
    const current = this.rules.store.current;
    return {
      version: current.version,
      catalogue: JSON.parse(current.doc.parts.catalogue) as unknown,
      acceptanceMatrix: JSON.parse(current.doc.parts.acceptanceMatrix) as unknown,
      declineReasons: JSON.parse(current.doc.parts.declineReasons) as unknown,
    };
  }

  /** Pulls now and every `ms` (a parent's change reaches this broker within that); returns the stop function. */
  startSchedule(ms: number): () => void {
    void this.pull();
    const timer = setInterval(() => void this.pull(), ms);
    timer.unref();
    return () => clearInterval(timer);
  }

  status(): PullResult | undefined {
    return this.last;
  }

  /** Pulls the parent's catalogue and saves the layered one when it differs; never throws (the result says). */
  async pull(): Promise<PullResult> {
    const parent = (await this.registry.list()).find((b) => b.enabled && b.relation === 'parent' && b.inheritRules);
    const current = this.rules.store.current;
    if (!parent) return (this.last = { changed: false, version: current.version, at: new Date() });
    try {
      const body = (await this.client.get(parent, '/federation/rules', PULL_DEADLINE_MS)) as {
        version?: number;
        catalogue?: CatalogueJson;
        acceptanceMatrix?: MatrixJson;
        declineReasons?: ReasonsJson;
      };
      if (!body.catalogue || !Array.isArray(body.catalogue.items))
        throw new NeighbourError('the answer is no catalogue');
      const additions = await this.additions();
      const author = `federation:${parent._id}@${body.version}`;
      let changed = false;
      // The catalogue, the matrix, the decline reasons: each a version of its own when it differs from the one in force.
      const own = JSON.parse(this.rules.store.current.doc.parts.catalogue) as CatalogueJson;
      const catalogue = layerCatalogue(body.catalogue, additions, own.region);
      if (!isDeepStrictEqual(catalogue, own)) {
        changed = (await this.rules.edit('catalogue', catalogue, this.rules.store.current.version, author)).changed;
      }
      if (body.acceptanceMatrix && Array.isArray(body.acceptanceMatrix.regions)) {
        const ownMatrix = JSON.parse(this.rules.store.current.doc.parts.acceptanceMatrix) as MatrixJson;
        const matrix = layerMatrix(body.acceptanceMatrix, additions);
        if (!isDeepStrictEqual(matrix, ownMatrix)) {
          const next = await this.rules.edit('acceptanceMatrix', matrix, this.rules.store.current.version, author);
          changed = changed || next.changed;
        }
      }
      if (body.declineReasons && Array.isArray(body.declineReasons.reasons)) {
        const ownReasons = JSON.parse(this.rules.store.current.doc.parts.declineReasons) as ReasonsJson;
        const reasons = layerDeclineReasons(body.declineReasons, additions);
        if (!isDeepStrictEqual(reasons, ownReasons)) {
          const next = await this.rules.edit('declineReasons', reasons, this.rules.store.current.version, author);
          changed = changed || next.changed;
        }
      }
      if (changed) {
        this.log.info('Recognition rules layered on the parent broker’s', {
          parent: parent._id,
          version: this.rules.store.current.version,
        });
      }
      return (this.last = {
        parent: parent._id,
        parentVersion: body.version,
        changed,
        version: this.rules.store.current.version,
        at: new Date(),
      });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.log.warn('Rules of the parent broker not pulled', { parent: parent._id, error });
      return (this.last = { parent: parent._id, changed: false, version: current.version, error, at: new Date() });
    }
  }
}
