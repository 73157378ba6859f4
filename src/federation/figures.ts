/**
 * Reports that roll up (issue 22, first part): a city's or the province's broker adds its children's figures to its
 * own. Each broker's figures are its own ledger's — the recognitions of its own requesting institutions — so every
 * recognition is counted once, at the requester's broker, however many brokers its result passed through. A child
 * answers its parent only, with its own figures and its children's (asked the same way), within a deadline; a child
 * that does not answer is listed as such, never silently left out.
 *
 * Additive on purpose: the savings report itself (src/reports) is used as it is, for totals of a period.
 */
import type { AccessContext } from '../auth/tokens.js';
import { badRequest, forbidden } from '../fhir/outcomes.js';
import type { RecognitionRules } from '../recognition/load.js';
import type { LedgerRollups } from '../reports/rollups.js';
import { savingsReport, type SavingsReport } from '../reports/savings.js';
import type { BrokerRegistry, FederationBroker } from './brokers.js';
import { NeighbourClient, NeighbourError } from './client.js';

/** The counts that add up across regions (rates do not: they are recomputed by whoever reads the sums). */
export const SUMMED = ['prompts', 'offered', 'viewed', 'accepted', 'declined', 'patients', 'saving'] as const;
type Summed = Record<(typeof SUMMED)[number], number>;

export interface RegionFigures {
  /** The broker's id in its parent's registry (absent for the broker that answers the report). */
  broker?: string;
  region?: string;
  answered: boolean;
  reason?: string;
  /** This broker's own figures: its requesting institutions' recognitions. */
  totals?: SavingsReport['totals'];
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
  /** Regions that did not answer in time: the sums leave them out. */
  missing: string[];
}

const FIGURES_DEADLINE_MS = 5000;
const HOP_MARGIN_MS = 200;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export interface FiguresDeps {
  registry: BrokerRegistry;
  rollups: LedgerRollups | undefined;
  rules: () => RecognitionRules;
  minCell: number;
}

export class FederatedFigures {
  private readonly client = new NeighbourClient();

  constructor(private readonly deps: FiguresDeps) {}

  /** `GET /reports/federated`: this broker's figures with its children's, and the sums. */
  async report(from: string, to: string): Promise<FederatedReport> {
    const regions = await this.figures(from, to, FIGURES_DEADLINE_MS);
    const total = Object.fromEntries(SUMMED.map((k) => [k, 0])) as Summed;
    const missing: string[] = [];
    const add = (r: RegionFigures) => {
      if (!r.answered) missing.push(`${r.broker ?? ''} (${r.region ?? ''})`);
      for (const k of SUMMED) total[k] += Number(r.totals?.[k] ?? 0);
      r.children.forEach(add);
    };
    add(regions);
    total.saving = Math.round(total.saving * 100) / 100;
    return { report: 'reuse-savings-federated', period: { from, to }, currency: 'CNY', regions, total, missing };
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
    return this.figures(from, to, deadline);
  }

  private async figures(from: string, to: string, deadlineMs: number): Promise<RegionFigures> {
    const children = (await this.deps.registry.list()).filter((b) => b.enabled && b.relation === 'child');
    const [own, theirs] = await Promise.all([
      this.deps.rollups
        ? savingsReport(this.deps.rollups, this.deps.rules(), { from, to, by: [] }, { minCell: this.deps.minCell })
        : undefined,
      Promise.all(children.map((c) => this.ask(c, from, to, deadlineMs - HOP_MARGIN_MS))),
    ]);
    return { answered: true, ...(own ? { totals: own.totals } : {}), children: theirs };
  }

  private async ask(child: FederationBroker, from: string, to: string, ms: number): Promise<RegionFigures> {
    const about = { broker: child._id, region: child.region };
    try {
      const body = (await this.client.post(child, '/federation/figures', { from, to, deadlineMs: ms }, ms)) as {
        totals?: SavingsReport['totals'];
        children?: RegionFigures[];
      };
      return {
        ...about,
        answered: true,
        ...(body.totals ? { totals: body.totals } : {}),
        children: body.children ?? [],
      };
    } catch (err) {
      const reason = err instanceof NeighbourError ? err.message : 'the answer could not be read';
      return { ...about, answered: false, reason, children: [] };
    }
  }
}
