/**
 * Administration of the recognition rules (`/admin/rules`): read the current version and its parts, replace one part
 * with optimistic locking (ETag `W/"<version>"`, If-Match required), list the versions. Bearer tokens as on the FHIR
 * API, role `admin` only; every error is an OperationOutcome.
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import type { OperationOutcomeIssue } from 'fhir/r4';
import { authenticate } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { parseJsonBody } from '../fhir/json-limits.js';
import { createTwoFilesPatch } from 'diff';
import {
  badRequest,
  error,
  forbidden,
  invalidResource,
  issue,
  notFound,
  preconditionFailed,
  unsupportedMediaType,
} from '../fhir/outcomes.js';
import type { Logger } from '../log.js';
import { SeedDataError } from '../recognition/errors.js';
import {
  PART_KEYS,
  PART_NAMES,
  partKeyOf,
  StaleRulesError,
  type PartKey,
  type RulesVersionDoc,
  type VersionSummary,
} from '../recognition/rules-store.js';
import type { RulesAdmin } from './rules-admin.js';

export interface RulesRouteDeps {
  rules: RulesAdmin;
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  config: Pick<Config, 'maxBodyBytes' | 'maxJsonDepth' | 'maxStringLength'>;
  log: Logger;
}

const etagOf = (version: number) => `W/"${version}"`;

/** Keeps the rules of this process current: at most one cheap query per poll interval, shared by all requests. */
export function refreshRules(rules: RulesAdmin, log: Logger): RequestHandler {
  return (_req, _res, next) => {
    rules.store
      .refresh()
      .catch((e: unknown) => log.warn('Recognition rules not refreshed', { error: (e as Error).message }))
      .finally(() => next());
  };
}

export function rulesRouter(deps: RulesRouteDeps): Router {
  const router = express.Router();
  const store = deps.rules.store;

  // Only under /rules: other administration routes may share the /admin mount.
  router.use('/rules', express.raw({ type: () => true, limit: deps.config.maxBodyBytes }));
  router.use('/rules', async (req: Request, _res: Response, next: NextFunction) => {
    const access = await authenticate(req, deps.auth);
    if (access.role !== 'admin') throw forbidden('The recognition rules are administered by the admin role only');
    callerOf(req).clientId = access.clientId;
    next();
  });

  router.get('/rules', async (_req, res) => {
    await store.refresh(true);
    res.setHeader('ETag', etagOf(store.current.version));
    res.json(await describeCurrent(deps.rules));
  });

  router.get('/rules/_history', async (_req, res) => {
    res.json({ versions: (await store.history()).map(summaryJson) });
  });

  // One version, every part readable, with what changed against the version before (a unified diff per part).
  router.get('/rules/_history/:version', async (req, res) => {
    const raw = String(req.params.version);
    const n = /^[1-9]\d{0,8}$/.test(raw) ? Number(raw) : NaN;
    if (Number.isNaN(n)) throw badRequest(`'${raw}' is not a version number`, 'version');
    const doc = await store.version(n);
    if (!doc) throw notFound(`No version ${n} of the recognition rules`);
    const previous = n > 1 ? await store.version(n - 1) : null;
    res.setHeader('ETag', etagOf(n));
    res.json({
      ...summaryJson(doc),
      previousVersion: previous ? previous._id : null,
      parts: Object.fromEntries(PART_KEYS.map((k) => [PART_NAMES[k], JSON.parse(doc.parts[k]) as unknown])),
      diff: previous ? diffOf(previous, doc) : {},
    });
  });

  router.get('/rules/:part', async (req, res) => {
    const part = assertPart(req.params.part as string);
    await store.refresh(true);
    const { version, doc } = store.current;
    res.setHeader('ETag', etagOf(version));
    res.type('application/json').send(doc.parts[part]);
  });

  router.put('/rules/:part', async (req, res) => {
    const part = assertPart(req.params.part as string);
    const baseVersion = ifMatchVersion(req);
    const json = jsonBody(req, deps.config);
    let changed: boolean;
    try {
      ({ changed } = await deps.rules.edit(part, json, baseVersion, callerOf(req).clientId ?? 'unknown'));
    } catch (e) {
      throw asOutcome(e, part);
    }
    // Identical content saves nothing: 200 with the current version's ETag, `changed: false`.
    res.setHeader('ETag', etagOf(store.current.version));
    res.json({ changed, ...(await describeCurrent(deps.rules)) });
  });

  return router;
}

/** Per-request data kept on the request (who is calling). */
function callerOf(req: Request): { clientId?: string } {
  return req as unknown as { clientId?: string };
}

function assertPart(name: string): PartKey {
  const part = partKeyOf(name);
  if (!part) {
    throw notFound(`No rules part '${name}'; the parts are ${PART_KEYS.map((k) => PART_NAMES[k]).join(', ')}`);
  }
  return part;
}

/** RFC 9110 §13.1.1: the version the change is based on; without it a change could overwrite another unseen. */
function ifMatchVersion(req: Request): number {
  const header = req.headers['if-match'];
  if (!header) {
    throw error(
      428,
      'required',
      'Send If-Match with the ETag of GET /admin/rules/{part}, so a change cannot overwrite another one unseen',
      'If-Match',
    );
  }
  const m = /^(?:W\/)?"(\d+)"$/.exec(header.trim());
  if (!m) throw preconditionFailed(`If-Match ${header} is not an ETag of the rules (W/"<version>")`, 'If-Match');
  return Number(m[1]);
}

function jsonBody(req: Request, config: Pick<Config, 'maxJsonDepth' | 'maxStringLength'>): unknown {
  const raw = req.body as Buffer | undefined;
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!/^application\/(fhir\+)?json$/.test(contentType)) {
    throw unsupportedMediaType(`Content-Type '${contentType || '(none)'}' is not supported; send application/json`);
  }
  if (!Buffer.isBuffer(raw) || raw.length === 0) throw error(400, 'required', 'PUT needs the part as a JSON body');
  // No array limit: a part's lists (a hospital's local codes, the catalogue) grow with the city, and only admins send
  // them; the body size limit still bounds them.
  return parseJsonBody(raw, req.headers['content-type'], {
    maxDepth: config.maxJsonDepth,
    maxArrayItems: Infinity,
    maxBundleEntries: Infinity,
    maxStringLength: config.maxStringLength,
  });
}

/** A rejected edit as an OperationOutcome: 412 when stale, 422 with every problem when the rules do not hold. */
function asOutcome(e: unknown, part: PartKey): unknown {
  if (e instanceof StaleRulesError) {
    return preconditionFailed(
      `The rules are at version ${e.current}; read them again (ETag ${etagOf(e.current)}) and reapply your change`,
      'If-Match',
    );
  }
  if (e instanceof SeedDataError) {
    const fileOf = (key: PartKey) => PART_NAMES[key];
    const at = PART_KEYS.find((k) => e.file.endsWith(`${fileOf(k)}.json`)) ?? part;
    return invalidResource(e.problems.map((p) => problemIssue(fileOf(at), p)));
  }
  return e;
}

/** `/items/3/validityDays: must be integer` → expression `catalogue/items/3/validityDays`. */
function problemIssue(partName: string, problem: string): OperationOutcomeIssue {
  const pointer = /^(\/[^:\s]*):/.exec(problem)?.[1];
  return issue('error', 'invariant', `${partName}: ${problem}`, pointer ? `${partName}${pointer}` : partName);
}

/**
 * What changed from one version to the next, per part that differs: a unified diff of the parts' JSON, both
 * normalised to two-space indentation (version 1 holds the seed files as written).
 */
function diffOf(before: RulesVersionDoc, after: RulesVersionDoc): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of PART_KEYS) {
    const a = `${JSON.stringify(JSON.parse(before.parts[k]), null, 2)}\n`;
    const b = `${JSON.stringify(JSON.parse(after.parts[k]), null, 2)}\n`;
    if (a === b) continue;
    const name = PART_NAMES[k];
    out[name] = createTwoFilesPatch(`${name}@${before._id}`, `${name}@${after._id}`, a, b, undefined, undefined, {
      context: 3,
    });
  }
  return out;
}

function summaryJson(v: VersionSummary) {
  return {
    version: v._id,
    changedParts: v.changedParts.map((k) => PART_NAMES[k]),
    changedBy: v.changedBy,
    changedAt: v.changedAt,
    ...(v.reindex ? { reindex: v.reindex } : {}),
  };
}

async function describeCurrent(admin: RulesAdmin) {
  const { version } = admin.store.current;
  const versions = await admin.store.history();
  const current = versions.find((v) => v._id === version) ?? admin.store.current.doc;
  const lastChange = (k: PartKey) => versions.find((v) => v.changedParts.includes(k));
  return {
    ...summaryJson(current),
    parts: Object.fromEntries(
      PART_KEYS.map((k) => {
        const v = lastChange(k);
        const changed = v ? { version: v._id, changedAt: v.changedAt, changedBy: v.changedBy } : {};
        return [PART_NAMES[k], { url: `/admin/rules/${PART_NAMES[k]}`, ...changed }];
      }),
    ),
    // The latest re-projection of the fact index, whichever version started it.
    reindex: versions.find((v) => v.reindex)?.reindex ?? null,
  };
}
