/**
 * Reports that roll up (issue 22, first part): a city's or the province's broker adds its children's figures to its
 * own. Each broker's figures are its own ledger's — the recognitions of its own requesting institutions — so every
 * recognition is counted once, at the requester's broker, however many brokers its result passed through. A child
 * answers its parent only, with its own figures and its children's (asked the same way), within a deadline; a child
 * that does not answer is listed as such, never silently left out.
 *
 * A broker sends its tally (numbers per month, institution, category and item), the names of what it counts and its
 * recognitions of other brokers' results by holder and dimension, so that the parent can show the breakdowns
 * (`/reports/savings?scope=federation`, src/reports/federated.ts), and its totals for `GET /reports/federated`.
 */
import { auditEvent } from '../audit/audit.js';
import type { AccessContext } from '../auth/tokens.js';
import type { Logger } from '../log.js';
import type { ResourceStore } from '../store/resource-store.js';
import { badRequest, forbidden } from '../fhir/outcomes.js';
import type { RecognitionRules } from '../recognition/load.js';
import { finalDecisions, type DecisionLedger, type LedgerEntry } from '../recognition/ledger.js';
import {
  namesFromJson,
  namesOf,
  reduceTally,
  TALLY_DIMENSIONS,
  tallyFromJson,
  tallyToJson,
  type TallyDimension,
  type FederationSource,
  type ImportRow,
  type RegionNames,
  type RegionPart,
  type TallyJson,
} from '../reports/federated.js';
import type { LedgerRollups } from '../reports/rollups.js';
import { reportFromTally, type SavingsReport } from '../reports/savings.js';
import { cityOf, provinceOf } from '../recognition/institutions.js';
import type { BrokerRegistry, FederationBroker } from './brokers.js';
import { NeighbourClient, NeighbourError } from './client.js';
import { outboundEvent } from './audit.js';
import { divisionLevel } from './scope.js';

/** The counts that add up across regions (rates do not: they are recomputed by whoever reads the sums). */
export const SUMMED = ['prompts', 'offered', 'viewed', 'accepted', 'declined', 'patients', 'saving'] as const;
type Summed = Record<(typeof SUMMED)[number], number>;

/** One cross-region figure of the rolled-up report: recognitions at `to` of results held in `from`. */
export interface CrossRegionFigure {
  /** Region (division code) of the holder when it is a broker of this report's tree, else its base URL. */
  from: string;
  /** Region of the requester's broker (`this broker` for the one answering). */
  to: string;
  accepted: number;
  saving: number;
}

export interface RegionFigures {
  /** The broker's id in its parent's registry (absent for the broker that answers the report). */
  broker?: string;
  /** Its name there. */
  name?: string;
  region?: string;
  answered: boolean;
  reason?: string;
  /** The broker's FHIR base URL (absent for the answering broker when HUREN_BASE_URL is not set). */
  base?: string;
  /** This broker's own figures: its requesting institutions' recognitions. */
  totals?: SavingsReport['totals'];
  /** Of those, the recognitions of results held by other brokers (imported), by holder and dimensions. */
  imports?: ImportRow[];
  /** Its own figures per month, institution, category and item, and the names of what they count. */
  tally?: TallyJson;
  names?: RegionNames;
  children: RegionFigures[];
}

export interface FederatedReport {
  report: 'reuse-savings-federated';
  period: { from: string; to: string };
  currency: 'CNY';
  /** This broker and, nested, its children. */
  regions: RegionFigures;
  /**
   * The sums over every region that answered. `patients` is the sum of each region's count: a patient recognised in
   * two regions counts in each.
   */
  total: Summed;
  /** Recognitions across regions: imported by `to` from `from` (each counted once, at the requester's broker). */
  crossRegion: CrossRegionFigure[];
  /** Regions that did not answer in time: the sums leave them out. */
  missing: string[];
}

const FIGURES_DEADLINE_MS = 5000;
const HOP_MARGIN_MS = 200;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export interface FiguresDeps {
  registry: BrokerRegistry;
  ledger: DecisionLedger | undefined;
  /** This broker's FHIR base URL, when configured. */
  baseUrl: string | undefined;
  rollups: LedgerRollups | undefined;
  rules: () => RecognitionRules;
  /** Where both sides' AuditEvents of a figures call are written (no patient in them: the figures are aggregates). */
  store: ResourceStore;
  log: Logger;
}

export class FederatedFigures implements FederationSource {
  private readonly client = new NeighbourClient();

  constructor(private readonly deps: FiguresDeps) {}

  /** `GET /reports/federated`: this broker's figures with its children's, and the sums. */
  async report(from: string, to: string): Promise<FederatedReport> {
    const regions = await this.figures(from, to, FIGURES_DEADLINE_MS, []);
    const total = Object.fromEntries(SUMMED.map((k) => [k, 0])) as Summed;
    const missing: string[] = [];
    const add = (r: RegionFigures) => {
      if (!r.answered) missing.push(`${r.broker ?? ''} (${r.region ?? ''})`);
      for (const k of SUMMED) total[k] += Number(r.totals?.[k] ?? 0);
      r.children.forEach(add);
    };
    add(regions);
    total.saving = Math.round(total.saving * 100) / 100;
    // Holders named by region when they are brokers of this tree.
    const regionOf = new Map<string, string>();
    const crossRegion: CrossRegionFigure[] = [];
    const walk = (r: RegionFigures, f: (r: RegionFigures) => void) => {
      f(r);
      r.children.forEach((c) => walk(c, f));
    };
    walk(regions, (r) => {
      if (r.base && r.region) regionOf.set(r.base, r.region);
    });
    walk(regions, (r) => {
      const byHolder = new Map<string, CrossRegionFigure>();
      for (const i of r.imports ?? []) {
        const from = regionOf.get(i.from) ?? i.from;
        const figure = byHolder.get(from) ?? { from, to: r.region ?? 'this broker', accepted: 0, saving: 0 };
        figure.accepted += i.accepted;
        figure.saving = Math.round((figure.saving + i.saving) * 100) / 100;
        byHolder.set(from, figure);
      }
      crossRegion.push(...byHolder.values());
    });
    return {
      report: 'reuse-savings-federated',
      period: { from, to },
      currency: 'CNY',
      regions,
      total,
      crossRegion,
      missing,
    };
  }

  /**
   * The regions of `/reports/savings?scope=federation`: this broker and, depth first, its children and theirs, each
   * with its tally as it sent it (checked: a malformed one is a region that did not answer).
   */
  async regions(from: string, to: string, keep: readonly TallyDimension[] = TALLY_DIMENSIONS): Promise<RegionPart[]> {
    const root = await this.figures(from, to, FIGURES_DEADLINE_MS, keep);
    // A broker does not know its own division code; its children's tell it (370211 → 370200 → 370000).
    const below = [...new Set(root.children.map((c) => c.region).filter((r): r is string => !!r))].map((r) =>
      divisionLevel(r) === 'district' ? cityOf(r) : provinceOf(r),
    );
    const own = below.length > 0 && below.every((r) => r === below[0]) ? below[0]! : '';
    const parts: RegionPart[] = [];
    const visit = (r: RegionFigures, depth: number, parent: string | undefined, region: string) => {
      const part: RegionPart = {
        region,
        depth,
        answered: r.answered,
        ...(r.broker ? { broker: r.broker } : {}),
        ...(r.name ? { name: r.name } : {}),
        ...(r.base ? { base: r.base } : {}),
        ...(parent !== undefined ? { parent } : {}),
        ...(r.reason ? { reason: r.reason } : {}),
      };
      if (r.answered) {
        try {
          part.tally = r.tally ? tallyFromJson(r.tally) : undefined;
          part.names = namesFromJson(r.names);
          part.imports = importsFromJson(r.imports);
          if (!part.tally) throw new Error('no figures');
        } catch (err) {
          Object.assign(part, { answered: false, reason: `the answer could not be read: ${(err as Error).message}` });
          delete part.tally;
          delete part.imports;
        }
      }
      parts.push(part);
      for (const c of r.children) visit(c, depth + 1, region, c.region ?? '');
    };
    visit(root, 0, undefined, own);
    return parts;
  }

  /** `POST /federation/figures`: asked by this broker's parent only. */
  async answer(access: AccessContext, body: unknown): Promise<RegionFigures> {
    const caller = access.role === 'broker' ? await this.deps.registry.byClient(access.clientId) : undefined;
    if (!caller || !caller.enabled || caller.relation !== 'parent') {
      throw forbidden("A broker's figures are reported to its parent broker only");
    }
    const b = (body ?? {}) as Record<string, unknown>;
    const from = String(b.from ?? '');
    const to = String(b.to ?? '');
    if (!DATE.test(from) || !DATE.test(to) || to < from) {
      throw badRequest('from and to must be local dates YYYY-MM-DD, from not after to', 'from');
    }
    const deadline = typeof b.deadlineMs === 'number' ? Math.min(b.deadlineMs, FIGURES_DEADLINE_MS) : 1000;
    // Absent: every dimension (a parent that does not say what it needs gets all of it).
    const keep = b.keep ?? TALLY_DIMENSIONS;
    if (!Array.isArray(keep) || keep.some((d) => !(TALLY_DIMENSIONS as readonly unknown[]).includes(d))) {
      throw badRequest(`keep lists tally dimensions: ${TALLY_DIMENSIONS.join(', ')}`, 'keep');
    }
    const answer = await this.figures(from, to, deadline, keep as TallyDimension[]);
    await this.audit(
      auditEvent({
        interaction: 'operation',
        action: 'E',
        status: 200,
        access,
        resources: [],
        patients: [],
        recorded: new Date(),
      }),
      [
        {
          name: 'federation-figures',
          description: `asked by a federated broker for ${from}..${to} (${keep.join(', ') || 'totals'})`,
        },
      ],
    );
    return answer;
  }

  /** The asking side's record of a figures call: each child asked, whether it answered (and why not). */
  private async auditOutbound(from: string, to: string, asked: RegionFigures[]): Promise<void> {
    if (asked.length === 0) return;
    await this.audit(
      outboundEvent(
        asked.some((r) => r.answered),
        [],
        asked.map((r) => ({
          name: 'federation-figures',
          description: `child ${r.broker ?? ''} (${r.region ?? ''}) for ${from}..${to}: ${r.answered ? 'answered' : `not answered, ${r.reason ?? ''}`}`,
        })),
      ),
      [],
    );
  }

  private async audit(
    event: ReturnType<typeof auditEvent>,
    entities: { name: string; description: string }[],
  ): Promise<void> {
    event.entity = [...(event.entity ?? []), ...entities];
    try {
      await this.deps.store.append(event as typeof event & { id: string });
    } catch (err) {
      this.deps.log.error('Audit event could not be written', { error: (err as Error).message });
      throw err;
    }
  }

  private async figures(
    from: string,
    to: string,
    deadlineMs: number,
    keep: readonly TallyDimension[],
  ): Promise<RegionFigures> {
    const children = (await this.deps.registry.list()).filter((b) => b.enabled && b.relation === 'child');
    const rules = this.deps.rules();
    const [tally, imports, theirs] = await Promise.all([
      this.deps.rollups?.tally(from, to, rules.catalogue.timeZone).then((t) => t.tally),
      this.imports(from, to),
      Promise.all(children.map((c) => this.ask(c, from, to, deadlineMs - HOP_MARGIN_MS, keep))),
    ]);
    await this.auditOutbound(from, to, theirs);
    const sent = tally ? reduceTally(tally, keep) : undefined;
    // Totals unsuppressed: they are summed by the parent (suppression applies to what a report publishes).
    const own = tally
      ? reportFromTally(tally, rules, { from, to, by: [] }, { minCell: 0 }, new Date()).totals
      : undefined;
    return {
      answered: true,
      ...(this.deps.baseUrl ? { base: this.deps.baseUrl } : {}),
      ...(own ? { totals: own } : {}),
      ...(sent ? { tally: tallyToJson(sent), names: namesOf(sent, rules) } : {}),
      imports,
      children: theirs,
    };
  }

  /**
   * This broker's recognitions, in the period, of results held by other brokers: the decision in force for each item
   * of a check (a correction replaces what it corrects), accepted, with a performer of another broker (an absolute
   * reference). Read by month (an index lookup per month and event).
   */
  private async imports(from: string, to: string): Promise<ImportRow[]> {
    const ledger = this.deps.ledger;
    if (!ledger) return [];
    const months: string[] = [];
    for (let m = from.slice(0, 7); m <= to.slice(0, 7); m = nextMonth(m)) months.push(m);
    const read = await Promise.all(
      months.flatMap((month) =>
        (['accepted', 'declined'] as const).map((event) => ledger.collection.find({ month, event }).toArray()),
      ),
    );
    const byCheck = new Map<string, LedgerEntry[]>();
    for (const e of read.flat()) {
      if (e.day < from || e.day > to) continue;
      byCheck.set(e.check, [...(byCheck.get(e.check) ?? []), e]);
    }
    const rows = new Map<string, ImportRow>();
    for (const entries of byCheck.values()) {
      for (const e of finalDecisions(entries).values()) {
        if (e.event !== 'accepted' || !e.performer || !/^https?:\/\//.test(e.performer)) continue;
        const holder = e.performer.replace(/\/Organization\/[^/]+$/, '');
        const dims = { month: e.day.slice(0, 7), organization: e.institution, category: e.category, item: e.item };
        const key = [holder, dims.month, dims.organization, dims.category, dims.item].join('\u0000');
        const row = rows.get(key) ?? { from: holder, ...dims, accepted: 0, saving: 0 };
        row.accepted += 1;
        row.saving = Math.round((row.saving + e.saving) * 100) / 100;
        rows.set(key, row);
      }
    }
    return [...rows.values()];
  }

  private async ask(
    child: FederationBroker,
    from: string,
    to: string,
    ms: number,
    keep: readonly TallyDimension[],
  ): Promise<RegionFigures> {
    const about = {
      broker: child._id,
      region: child.region,
      base: child.baseUrl,
      ...(child.name ? { name: child.name } : {}),
    };
    try {
      const body = (await this.client.post(
        child,
        '/federation/figures',
        { from, to, deadlineMs: ms, keep },
        ms,
      )) as Omit<RegionFigures, 'broker' | 'region' | 'base'>;
      return {
        ...about,
        answered: true,
        ...(body.totals ? { totals: body.totals } : {}),
        ...(body.tally ? { tally: body.tally } : {}),
        ...(body.names ? { names: body.names } : {}),
        ...(Array.isArray(body.imports) ? { imports: body.imports } : {}),
        children: Array.isArray(body.children) ? body.children : [],
      };
    } catch (err) {
      const reason = err instanceof NeighbourError ? err.message : 'the answer could not be read';
      return { ...about, answered: false, reason, children: [] };
    }
  }
}

/** A child's imports, checked: counts and amounts, the holder an absolute URL. */
function importsFromJson(json: unknown): ImportRow[] {
  if (json === undefined) return [];
  if (!Array.isArray(json)) throw new Error('malformed figures (imports)');
  return json.map((r: Partial<ImportRow>) => {
    const ok =
      typeof r.from === 'string' &&
      /^https?:\/\//.test(r.from) &&
      (['month', 'organization', 'category', 'item'] as const).every((d) => typeof r[d] === 'string') &&
      typeof r.accepted === 'number' &&
      r.accepted >= 0 &&
      typeof r.saving === 'number';
    if (!ok) throw new Error('malformed figures (imports)');
    return { ...(r as ImportRow) };
  });
}

function nextMonth(month: string): string {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`;
}
