/**
 * `GET /reports/savings?from=&to=&by=organization|category|item|month[,…]&organization=&format=json|csv&lang=zh|en`
 * for the health bureau (design.md, external contracts); with `department` and/or `practitioner` in `by`, the same
 * report answers the supervision of declines (src/reports/supervision.ts). `GET /reports/supervision/cases` lists the
 * declines for expert review (JSON or CSV, no patient identifier); `GET /reports/supervision/cases/{id}` shows one
 * with the prior result that was declined, to the `supervisor` role only, every access audited. Same caller checks
 * as the FHIR API (bearer token, rate limit); errors are OperationOutcomes, sent by the app's error handler.
 */
import express, { type Request, type Response, type Router } from 'express';
import { authenticate, createRateLimiter } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { badRequest, error } from '../fhir/outcomes.js';
import type { Resource as FhirResource } from 'fhir/r4';
import type { FactProjector } from '../recognition/fact-store.js';
import type { DecisionLedger } from '../recognition/ledger.js';
import { savingsCsv } from './csv.js';
import type { LedgerRollups } from './rollups.js';
import type { ReportLang } from './report-types.js';
import { assertReportReader } from './measure.js';
import {
  assertKnownParams,
  assertPeriod,
  DIMENSIONS,
  FEDERATION_DIMENSIONS,
  parseBound,
  parseBy,
  parseOrganization,
  savingsReport,
  single,
  type SavingsReport,
} from './savings.js';
import { dimensionsNeeded, federatedReport, type FederatedQuery, type FederationSource } from './federated.js';
import { ID_PATTERN } from '../fhir/types.js';
import type { RecognitionRules } from '../recognition/load.js';
import type { AuditFn } from '../audit/recorder.js';
import type { AccessContext } from '../auth/tokens.js';
import type { FhirRequest } from '../fhir/request.js';
import { forbidden, notFound } from '../fhir/outcomes.js';
import { isCase, promptIdOf, type PromptDoc } from '../recognition/prompts.js';
import type { ResourceStore } from '../store/resource-store.js';
import {
  caseOf,
  casesCsv,
  isSupervisionBy,
  parseSupervisionBy,
  supervisionReport,
  type SupervisionCase,
} from './supervision.js';

export interface ReportDeps {
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  config: Config;
  facts: FactProjector;
  ledger?: DecisionLedger;
  rollups?: LedgerRollups;
  store?: ResourceStore;
  audit?: AuditFn;
  /** The children's figures, for `scope=federation` (src/federation/figures.ts). */
  federation?: { figures: FederationSource };
}

/** `by` as given: comma-separated and/or repeated. */
function rawBy(raw: unknown): string[] {
  if (raw === undefined) return [];
  return [raw]
    .flat()
    .flatMap((v) => String(v).split(','))
    .map((s) => s.trim())
    .filter(Boolean);
}

const PARAMS = ['from', 'to', 'by', 'organization', 'format', 'lang', 'scope', 'region'] as const;
const DIVISION = /^[1-9]\d{5}$/;

/**
 * The report's query from the URL; throws an OperationOutcome naming the parameter at fault. `scope=federation` adds
 * the children's figures (docs/federation.md), groups by `region` too and takes `region` (one region of the tree);
 * there `organization` names an institution of that region (of this broker's when no region is given).
 */
export function parseSavingsRequest(
  query: Record<string, unknown>,
  rules: RecognitionRules,
): FederatedQuery & { format: 'json' | 'csv'; lang: ReportLang; scope: 'local' | 'federation' } {
  assertKnownParams(query, PARAMS);
  const from = parseBound(single(query, 'from'), 'from', 'start');
  const to = parseBound(single(query, 'to'), 'to', 'end');
  assertPeriod(from, to, { from: 'from', to: 'to' });
  const format = single(query, 'format') ?? 'json';
  if (format !== 'json' && format !== 'csv') throw badRequest(`format '${format}' is not json or csv`, 'format');
  const scope = single(query, 'scope') ?? 'local';
  if (scope !== 'local' && scope !== 'federation') {
    throw badRequest(`scope '${scope}' is not local (this broker) or federation (with its children)`, 'scope');
  }
  const federation = scope === 'federation';
  const region = single(query, 'region');
  if (region !== undefined && !federation) throw badRequest('region is a filter of scope=federation', 'region');
  if (region !== undefined && !DIVISION.test(region)) {
    throw badRequest(`region '${region}' is not a six-digit administrative division code`, 'region');
  }
  const lang = parseLang(query);
  const org = single(query, 'organization');
  let organization: string | undefined;
  if (org !== undefined && federation && region !== undefined) {
    // An institution of another broker's directory: its id (the report names it as that broker does).
    organization = org.replace(/^Organization\//, '');
    if (!ID_PATTERN.test(organization))
      throw badRequest(`organization '${org}' is not an institution id`, 'organization');
  } else if (org !== undefined) organization = parseOrganization(org, 'organization', rules);
  return {
    lang,
    from,
    to,
    by: parseBy(query.by, federation ? FEDERATION_DIMENSIONS : DIMENSIONS),
    ...(organization !== undefined ? { organization } : {}),
    ...(region !== undefined ? { region } : {}),
    format,
    scope,
  };
}

function parseLang(query: Record<string, unknown>): ReportLang {
  const lang = single(query, 'lang') ?? 'zh';
  if (lang !== 'zh' && lang !== 'en') throw badRequest(`lang '${lang}' is not zh or en`, 'lang');
  return lang;
}

/** The period and institution of a supervision request. */
function parsePeriod(query: Record<string, unknown>, rules: RecognitionRules) {
  const from = parseBound(single(query, 'from'), 'from', 'start');
  const to = parseBound(single(query, 'to'), 'to', 'end');
  assertPeriod(from, to, { from: 'from', to: 'to' });
  const org = single(query, 'organization');
  return { from, to, ...(org !== undefined ? { organization: parseOrganization(org, 'organization', rules) } : {}) };
}

/** The months a period touches, YYYY-MM. */
function monthsOf(from: string, to: string): string[] {
  const out: string[] = [];
  for (let m = from.slice(0, 7); m <= to.slice(0, 7);) {
    out.push(m);
    const [y, mo] = m.split('-').map(Number) as [number, number];
    m = mo === 12 ? `${y + 1}-01` : `${y}-${String(mo + 1).padStart(2, '0')}`;
  }
  return out;
}

/** Most cases in one answer: a longer list is asked for a shorter period or one institution. */
const MAX_CASES = 20000;

function auditRequest(req: Request, res: Response, access: AccessContext, id: string): FhirRequest {
  return {
    method: req.method,
    segments: ['supervision-case', id],
    query: {},
    headers: {},
    body: undefined,
    baseUrl: '',
    access,
    requestId: String(res.getHeader('X-Request-Id') ?? ''),
  };
}

export function reportsRouter(deps: ReportDeps): Router {
  const router = express.Router();
  const rateLimit = createRateLimiter(deps.config.rateLimitPerMinute);
  router.get('/savings', async (req: Request, res: Response) => {
    const access = await authenticate(req, deps.auth);
    if (!rateLimit(access.clientId).allowed) throw error(429, 'throttled', 'Too many requests from this client');
    assertReportReader(access);
    if (!deps.rollups) throw error(500, 'exception', 'The decisions ledger is not configured');
    const rules = deps.facts.rules;
    const by = rawBy(req.query.by);
    if (isSupervisionBy(by)) {
      const q = req.query as Record<string, unknown>;
      assertKnownParams(q, ['from', 'to', 'by', 'organization', 'format', 'lang']);
      if ((single(q, 'format') ?? 'json') !== 'json') {
        throw badRequest(
          'The supervision of declines is answered in JSON; its case list is downloadable as CSV at /reports/supervision/cases',
          'format',
        );
      }
      if (new Set(by).size !== by.length) throw badRequest('by names a grouping twice', 'by');
      parseLang(q);
      const period = parsePeriod(q, rules);
      const { tally } = await deps.rollups.tally(period.from, period.to, rules.catalogue.timeZone, new Date(), 'staff');
      res.json(supervisionReport(tally, rules, { ...period, by: parseSupervisionBy(by) }, new Date()));
      return;
    }
    const { format, lang, scope, ...query } = parseSavingsRequest(req.query as Record<string, unknown>, rules);
    const options = { minCell: deps.config.reportMinCell };
    let report: SavingsReport;
    if (scope === 'federation') {
      if (!deps.federation) throw error(500, 'exception', 'The federation is not configured');
      const parts = await deps.federation.figures.regions(query.from, query.to, dimensionsNeeded(query));
      report = federatedReport(parts, rules, query, options, new Date());
    } else report = await savingsReport(deps.rollups, rules, query, options);
    if (format === 'csv') {
      res.type('text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="huren-savings-${query.from}-${query.to}.csv"`);
      res.send(savingsCsv(report, lang));
      return;
    }
    res.json(report);
  });

  // The declines of reusable results in a period, for expert review: no patient identifier.
  router.get('/supervision/cases', async (req: Request, res: Response) => {
    const access = await authenticate(req, deps.auth);
    if (!rateLimit(access.clientId).allowed) throw error(429, 'throttled', 'Too many requests from this client');
    assertReportReader(access);
    if (!deps.ledger) throw error(500, 'exception', 'The decisions ledger is not configured');
    const q = req.query as Record<string, unknown>;
    assertKnownParams(q, ['from', 'to', 'organization', 'format', 'lang']);
    const rules = deps.facts.rules;
    const period = parsePeriod(q, rules);
    const format = single(q, 'format') ?? 'json';
    if (format !== 'json' && format !== 'csv') throw badRequest(`format '${format}' is not json or csv`, 'format');
    const lang = parseLang(q);
    // One indexed lookup per month (`caseMonth` is set on declined prompts only).
    const months = monthsOf(period.from, period.to);
    const found = (await Promise.all(months.map((m) => deps.ledger!.prompts.find({ caseMonth: m }).toArray()))).flat();
    const cases: SupervisionCase[] = found
      .filter(
        (p) =>
          isCase(p) &&
          p.day >= period.from &&
          p.day <= period.to &&
          (!period.organization || p.institution === period.organization),
      )
      .sort(
        (a, b) =>
          a.day.localeCompare(b.day) || a.institution.localeCompare(b.institution) || a._id.localeCompare(b._id),
      )
      .map((p) => caseOf(p, rules));
    if (cases.length > MAX_CASES) {
      throw error(
        400,
        'too-costly',
        `More than ${MAX_CASES} cases; ask for a shorter period or one institution`,
        'from',
      );
    }
    if (format === 'csv') {
      res.type('text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="huren-declines-${period.from}-${period.to}.csv"`);
      res.send(casesCsv(cases, lang));
      return;
    }
    res.json({ report: 'decline-cases', period: { from: period.from, to: period.to }, cases });
  });

  // One case with the prior result that was declined: the supervisor role only, every access audited.
  router.get('/supervision/cases/:id', async (req: Request, res: Response) => {
    const access = await authenticate(req, deps.auth);
    if (!rateLimit(access.clientId).allowed) throw error(429, 'throttled', 'Too many requests from this client');
    if (!deps.ledger || !deps.store || !deps.audit)
      throw error(500, 'exception', 'The decisions ledger is not configured');
    const id = String(req.params.id);
    const audit = (status: number, patients: string[] = [], resources: string[] = []) =>
      deps.audit!(auditRequest(req, res, access, id), status, undefined, undefined, { patients, resources });
    if (access.role !== 'supervisor') {
      await audit(403);
      throw forbidden(
        "A case's prior result is shown to the health commission's expert reviewers (role supervisor) only",
      );
    }
    const entry = /^[A-Za-z0-9\-.]{1,64}\|[A-Za-z0-9\-.]{1,64}\|(decision|correction)$/.test(id)
      ? await deps.ledger.collection.findOne({ _id: id })
      : null;
    const prompt: PromptDoc | null = entry ? await deps.ledger.prompts.findOne({ _id: promptIdOf(entry) }) : null;
    if (!entry || !prompt || prompt.decisionEntry !== id || !isCase(prompt)) {
      await audit(404);
      throw notFound(`There is no supervised case '${id}'`);
    }
    const rules = deps.facts.rules;
    const [type, resultId] = (prompt.result ?? '').split('/');
    const doc = type && resultId ? await deps.store.findCurrent(type, resultId) : null;
    const result = doc && !doc.deleted ? (doc.resource as FhirResource) : undefined;
    const observations: FhirResource[] = [];
    for (const ref of (result as { result?: { reference?: string }[] } | undefined)?.result ?? []) {
      const [t, i] = (ref.reference ?? '').split('/');
      const o = t === 'Observation' && i ? await deps.store.findCurrent(t, i) : null;
      if (o && !o.deleted) observations.push(o.resource as FhirResource);
    }
    const subject = (result as { subject?: { reference?: string } } | undefined)?.subject?.reference;
    await audit(
      200,
      subject?.startsWith('Patient/') ? [subject] : [],
      [prompt.result, ...observations.map((o) => `Observation/${o.id}`)].filter((r): r is string => !!r),
    );
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      case: caseOf(prompt, rules),
      performer: prompt.performer
        ? { code: prompt.performer, name: rules.directory.byId.get(prompt.performer)?.name }
        : undefined,
      priorResult: result ?? null,
      observations,
    });
  });
  return router;
}
