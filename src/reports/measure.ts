/**
 * `GET /fhir/Measure/reuse-savings/$evaluate-measure?periodStart=&periodEnd=[&subject=Organization/…]` (FHIR R4
 * Measure-evaluate-measure): the savings report as a summary MeasureReport of the Measure in
 * profiles/Measure-reuse-savings.json. Scoring is continuous-variable: the measure population is the accepted
 * entries (互认项次) and the measure observation their saving, aggregated as a sum, so the score is the saving in
 * CNY. The other funnel figures are further populations coded in Huren's reuse-measure-population CodeSystem.
 * Strata: by institution and by category. The figures are those of GET /reports/savings, from the same code.
 *
 * `scope=federation` (a Huren parameter, as on the savings report) evaluates the measure over this broker and its
 * children (docs/federation.md): the populations are the federation's, the institutions of other regions are named
 * by absolute reference, and a third stratifier gives each region — a region that did not answer is a stratum
 * without counts (absent: not reported) whose text says why.
 */
import type {
  CodeableConcept,
  MeasureReport,
  MeasureReportGroup,
  MeasureReportGroupPopulation,
  MeasureReportGroupStratifierStratum,
  Quantity,
} from 'fhir/r4';
import type { AccessContext } from '../auth/tokens.js';
import type { FhirDeps } from '../fhir/interactions.js';
import { badRequest, error, forbidden, notFound } from '../fhir/outcomes.js';
import type { FhirRequest, FhirResponse } from '../fhir/request.js';
import { HUREN_FHIR_BASE, SYSTEMS } from '../recognition/vocabulary.js';
import { federatedReport } from './federated.js';
import {
  assertKnownParams,
  assertPeriod,
  parseBound,
  parseOrganization,
  reportFromTally,
  single,
  type Figures,
  type ReportDimension,
  type SavingsQuery,
  type SavingsReport,
  type SavingsRow,
} from './savings.js';

export const MEASURE_ID = 'reuse-savings';
export const MEASURE_URL = `${HUREN_FHIR_BASE}/Measure/${MEASURE_ID}`;
export const POPULATION_SYSTEM = `${HUREN_FHIR_BASE}/CodeSystem/reuse-measure-population`;
const HL7_POPULATION = 'http://terminology.hl7.org/CodeSystem/measure-population';
const INSTITUTION_SYSTEM = `${HUREN_FHIR_BASE}/sid/organization-id`;

const PARAMS = ['periodStart', 'periodEnd', 'subject', 'reportType', 'scope', '_format', '_pretty'] as const;
const DIVISION_SYSTEM = `${HUREN_FHIR_BASE}/sid/division-code`;

/** Who may read aggregate reports: the bureau, its expert reviewers (supervisor), and administrators. */
export function assertReportReader(access: AccessContext | undefined): void {
  if (access && access.role !== 'bureau' && access.role !== 'supervisor' && access.role !== 'admin') {
    throw forbidden('Savings reports are for the health bureau (roles bureau, supervisor) and administrators');
  }
}

/** Populations of the group and of each stratum, in this order; the code says which figure each one is. */
const POPULATIONS: { figure: keyof Figures; code: CodeableConcept }[] = [
  { figure: 'prompts', code: hl7('initial-population', 'Initial Population') },
  { figure: 'accepted', code: hl7('measure-population', 'Measure Population') },
  { figure: 'accepted', code: hl7('measure-observation', 'Measure Observation') },
  { figure: 'offered', code: huren('reusable-offered', 'Reusable offered (eligible prompts)') },
  { figure: 'viewed', code: huren('viewed', 'Viewed') },
  { figure: 'referenceAccepted', code: huren('reference-accepted', '参考采纳 (reference-only results accepted)') },
  { figure: 'declined', code: huren('declined', 'Declined') },
  { figure: 'patients', code: huren('patients', '互认人次 (distinct patient visits)') },
];

function hl7(code: string, display: string): CodeableConcept {
  return { coding: [{ system: HL7_POPULATION, code, display }] };
}
function huren(code: string, display: string): CodeableConcept {
  return { coding: [{ system: POPULATION_SYSTEM, code, display }] };
}

function populations(f: Figures): MeasureReportGroupPopulation[] {
  return POPULATIONS.map(({ figure, code }) => {
    const count = f[figure];
    // A suppressed count is left out (count is 0..1): absent is "not reported", never a misleading 0.
    return typeof count === 'number' ? { code, count } : { code };
  });
}

function money(value: number | null): Quantity | undefined {
  return value === null ? undefined : { value, unit: 'CNY', system: 'urn:iso:std:iso:4217', code: 'CNY' };
}

function stratum(row: SavingsRow, value: CodeableConcept): MeasureReportGroupStratifierStratum {
  const score = money(row.saving);
  return { value, population: populations(row), ...(score ? { measureScore: score } : {}) };
}

/**
 * The summary MeasureReport of two reports over the same period and filter: by organization and by category (and,
 * over a federation, a third by region).
 */
export function buildMeasureReport(
  byOrganization: SavingsReport,
  byCategory: SavingsReport,
  now: Date,
  subject?: string,
  byRegion?: SavingsReport,
): MeasureReport {
  const totals = byOrganization.totals;
  const institutionStrata = byOrganization.rows.map((row) =>
    stratum(row, {
      coding: [{ system: INSTITUTION_SYSTEM, code: row.organization!.code, display: row.organization!.name?.zh }],
      text: row.organization!.reference,
    }),
  );
  const categoryStrata = byCategory.rows.map((row) =>
    stratum(row, {
      coding: [{ system: SYSTEMS.category, code: row.category!.code, display: row.category!.name?.zh }],
      text: row.category!.name?.en ?? row.category!.code,
    }),
  );
  const regionStrata = (byRegion?.federation?.regions ?? []).map((region): MeasureReportGroupStratifierStratum => {
    const value: CodeableConcept = {
      coding: [{ system: DIVISION_SYSTEM, code: region.code || 'this-broker', display: region.name.zh }],
      text: region.answered ? region.name.en : `${region.name.en}: did not answer (${region.reason ?? 'no reason'})`,
    };
    const row = byRegion!.rows.find((r) => r.region?.code === region.code);
    // A region that did not answer has no counts (absent: not reported); one that answered with nothing has zeros.
    if (!region.answered) return { value, population: POPULATIONS.map(({ code }) => ({ code })) };
    return row ? stratum(row, value) : { value, population: POPULATIONS.map(({ code }) => ({ code, count: 0 })) };
  });
  const group: MeasureReportGroup = {
    code: { coding: [{ system: POPULATION_SYSTEM, code: 'reuse-savings', display: '互认节约费用 Reuse savings' }] },
    population: populations(totals),
    measureScore: money(totals.saving),
    // FHIR R4 json.html: arrays are never empty; a period without savings has stratifiers without strata.
    stratifier: [
      { code: [{ text: 'institution' }], ...(institutionStrata.length ? { stratum: institutionStrata } : {}) },
      { code: [{ text: 'category' }], ...(categoryStrata.length ? { stratum: categoryStrata } : {}) },
      ...(byRegion ? [{ code: [{ text: 'region' }], ...(regionStrata.length ? { stratum: regionStrata } : {}) }] : []),
    ],
  };
  return {
    resourceType: 'MeasureReport',
    status: 'complete',
    type: 'summary',
    measure: MEASURE_URL,
    date: now.toISOString(),
    period: { start: byOrganization.period.from, end: byOrganization.period.to },
    // MeasureReport.subject cannot be an Organization in R4: the institution the figures are restricted to is
    // given as the reporter, whose data they are.
    ...(subject ? { reporter: { reference: `Organization/${subject}` } } : {}),
    improvementNotation: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-improvement-notation', code: 'increase' }],
    },
    group: [group],
  };
}

/**
 * Parses the operation's parameters (FHIR R4 Measure-evaluate-measure: periodStart, periodEnd, subject, reportType;
 * and Huren's scope).
 */
export function parseEvaluateRequest(req: FhirRequest, deps: FhirDeps): SavingsQuery & { federation: boolean } {
  const rules = deps.facts!.rules;
  assertKnownParams(req.query, PARAMS);
  const from = parseBound(single(req.query, 'periodStart'), 'periodStart', 'start');
  const to = parseBound(single(req.query, 'periodEnd'), 'periodEnd', 'end');
  assertPeriod(from, to, { from: 'periodStart', to: 'periodEnd' });
  const reportType = single(req.query, 'reportType');
  if (reportType !== undefined && reportType !== 'summary') {
    throw badRequest(
      `reportType '${reportType}' is not supported: savings are aggregates only (summary)`,
      'reportType',
    );
  }
  const subject = single(req.query, 'subject');
  if (subject !== undefined && !subject.startsWith('Organization/')) {
    throw badRequest('subject is an Organization reference (Organization/<id>): the requesting institution', 'subject');
  }
  const organization = subject === undefined ? undefined : parseOrganization(subject, 'subject', rules);
  const scope = single(req.query, 'scope') ?? 'local';
  if (scope !== 'local' && scope !== 'federation') {
    throw badRequest(`scope '${scope}' is not local (this broker) or federation (with its children)`, 'scope');
  }
  return { from, to, by: [], ...(organization ? { organization } : {}), federation: scope === 'federation' };
}

export async function evaluateMeasure(req: FhirRequest, deps: FhirDeps, id: string): Promise<FhirResponse> {
  assertReportReader(req.access);
  if (id !== MEASURE_ID)
    throw notFound(`Measure/${id} cannot be evaluated here; Huren evaluates Measure/${MEASURE_ID}`);
  if (!deps.rollups || !deps.facts) throw error(500, 'exception', 'The decisions ledger is not configured');
  const { federation, ...query } = parseEvaluateRequest(req, deps);
  const rules = deps.facts.rules;
  const options = { minCell: deps.config.reportMinCell };
  const now = new Date();
  if (federation) {
    if (!deps.federationFigures) throw error(500, 'exception', 'The federation is not configured');
    // Strata by institution and by category: the children send those dimensions only.
    const parts = await deps.federationFigures.regions(query.from, query.to, ['organization', 'category']);
    const report = (by: ReportDimension[]) => federatedReport(parts, rules, { ...query, by }, options, now);
    const body = buildMeasureReport(
      report(['region', 'organization']),
      report(['category']),
      now,
      query.organization,
      report(['region']),
    );
    return { status: 200, body };
  }
  // One tally of the period, grouped two ways.
  const { tally } = await deps.rollups.tally(query.from, query.to, rules.catalogue.timeZone, now);
  const byOrganization = reportFromTally(tally, rules, { ...query, by: ['organization'] }, options, now);
  const byCategory = reportFromTally(tally, rules, { ...query, by: ['category'] }, options, now);
  return { status: 200, body: buildMeasureReport(byOrganization, byCategory, now, query.organization) };
}
