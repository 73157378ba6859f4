/**
 * `GET /reports/savings?from=&to=&by=organization|category|item|month[,…]&organization=&format=json|csv` for the
 * health bureau (design.md, external contracts). Same caller checks as the FHIR API (bearer token, rate limit);
 * errors are OperationOutcomes, sent by the app's error handler.
 */
import express, { type Request, type Response, type Router } from 'express';
import { authenticate, createRateLimiter } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { badRequest, error } from '../fhir/outcomes.js';
import type { FactProjector } from '../recognition/fact-store.js';
import type { DecisionLedger } from '../recognition/ledger.js';
import { savingsCsv } from './csv.js';
import type { LedgerRollups } from './rollups.js';
import type { ReportLang } from './report-types.js';
import { assertReportReader } from './measure.js';
import {
  assertKnownParams,
  assertPeriod,
  parseBound,
  parseBy,
  parseOrganization,
  savingsReport,
  single,
  type SavingsQuery,
} from './savings.js';
import type { RecognitionRules } from '../recognition/load.js';

export interface ReportDeps {
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  config: Config;
  facts: FactProjector;
  ledger?: DecisionLedger;
  rollups?: LedgerRollups;
}

const PARAMS = ['from', 'to', 'by', 'organization', 'format', 'lang'] as const;

/** The report's query from the URL; throws an OperationOutcome naming the parameter at fault. */
export function parseSavingsRequest(
  query: Record<string, unknown>,
  rules: RecognitionRules,
): SavingsQuery & { format: 'json' | 'csv'; lang: ReportLang } {
  assertKnownParams(query, PARAMS);
  const from = parseBound(single(query, 'from'), 'from', 'start');
  const to = parseBound(single(query, 'to'), 'to', 'end');
  assertPeriod(from, to, { from: 'from', to: 'to' });
  const format = single(query, 'format') ?? 'json';
  if (format !== 'json' && format !== 'csv') throw badRequest(`format '${format}' is not json or csv`, 'format');
  const lang = single(query, 'lang') ?? 'zh';
  if (lang !== 'zh' && lang !== 'en') throw badRequest(`lang '${lang}' is not zh or en`, 'lang');
  const org = single(query, 'organization');
  return {
    lang,
    from,
    to,
    by: parseBy(query.by),
    ...(org !== undefined ? { organization: parseOrganization(org, 'organization', rules) } : {}),
    format,
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
    const { format, lang, ...query } = parseSavingsRequest(req.query as Record<string, unknown>, rules);
    const report = await savingsReport(deps.rollups, rules, query, { minCell: deps.config.reportMinCell });
    if (format === 'csv') {
      res.type('text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="huren-savings-${query.from}-${query.to}.csv"`);
      res.send(savingsCsv(report, lang));
      return;
    }
    res.json(report);
  });
  return router;
}
