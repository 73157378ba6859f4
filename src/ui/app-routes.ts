/**
 * The doctor's prior-results view: the page at /app, the SMART EHR-launch endpoints it uses (launch registration by
 * the EHR, authorize, code exchange — see src/auth/app-launch.ts), and its data at /app/api/prior-results. Every
 * read of patient data is audited like a FHIR operation; decisions go through `$reuse-decision`.
 */
import type { Identifier, Patient } from 'fhir/r4';
import express, { type Request, type Response, type Router } from 'express';
import { decodeJwt } from 'jose';
import { APP_CLIENT_ID, type AppLaunches } from '../auth/app-launch.js';
import { authenticate } from '../auth/bearer.js';
import { OAuthError, type AccessContext } from '../auth/tokens.js';
import type { AppDeps } from '../app.js';
import { badRequest, error, forbidden, notFound } from '../fhir/outcomes.js';
import type { FhirRequest } from '../fhir/request.js';
import { normalizeIdentifier, isMatchingIdentifierSystem, patientKeysOf } from '../recognition/identity.js';
import { RecognitionInputError } from '../recognition/errors.js';
import { localDate } from '../recognition/time.js';
import { sendPage } from './assets.js';
import { priorResults } from './prior-results.js';
import { patientBanner } from './patient-banner.js';
import type { ReuseCheckDoc } from '../recognition/reuse-checks.js';

type Deps = AppDeps & { launches: AppLaunches };

function auditRequest(req: Request, res: Response, access: AccessContext, segments: string[]): FhirRequest {
  return {
    method: req.method,
    segments,
    query: {},
    headers: {},
    body: undefined,
    baseUrl: '',
    access,
    requestId: String(res.getHeader('X-Request-Id') ?? ''),
  };
}

/**
 * The patient of a launch: from the identifiers the EHR sends, or — for a CDS card's link, whose appContext names
 * the check — from that check of the caller's institution (the card was about that patient).
 */
async function launchPatient(
  deps: Deps,
  access: AccessContext,
  patient: unknown,
  appContext: unknown,
): Promise<{ patientKeys: string[]; identifiers: Identifier[] }> {
  if (patient === undefined && typeof appContext === 'string') {
    const checkId = new URLSearchParams(appContext).get('check');
    const check = checkId ? await deps.reuseChecks!.get(checkId) : null;
    if (!check || `Organization/${check.requester}` !== access.organization) {
      throw badRequest('appContext names no check of this institution; send the patient identifiers', 'appContext');
    }
    return { patientKeys: check.patientKeys, identifiers: [] };
  }
  if (!Array.isArray(patient) || patient.length === 0) {
    throw badRequest("patient is a list of the patient's identifiers ({system, value})", 'patient');
  }
  const identifiers: Identifier[] = [];
  patient.forEach((raw: unknown, i: number) => {
    const id = raw as Identifier;
    if (!id || typeof id.system !== 'string' || typeof id.value !== 'string') {
      throw badRequest('Each identifier has a system and a value', `patient[${i}]`);
    }
    if (!isMatchingIdentifierSystem(id.system)) return; // other identifiers (MRNs) do not match across hospitals
    try {
      identifiers.push(normalizeIdentifier(id.system, id.value));
    } catch (e) {
      if (e instanceof RecognitionInputError) throw badRequest(e.message, `patient[${i}].value`);
      throw e;
    }
  });
  const patientKeys = patientKeysOf(deps.facts.secret, identifiers);
  if (patientKeys.length === 0) {
    throw badRequest(
      'None of the identifiers is a resident ID card, e-health card or medical-insurance code',
      'patient',
    );
  }
  return { patientKeys, identifiers };
}

export function appRouter(deps: Deps, publicOrigin: (req: Request) => string): Router {
  const router = express.Router();
  const fhirBase = (req: Request) => `${publicOrigin(req)}/fhir`;

  router.get('/app', async (_req, res) => sendPage(res, 'app'));

  // 1. The EHR registers a launch for one patient (identifiers), optionally with a CDS card's appContext.
  router.post('/auth/launch', express.json({ limit: '16kb' }), async (req, res) => {
    const access = await authenticate(req, deps.auth);
    if (access.role !== 'his' && access.role !== 'clinician') {
      throw forbidden('A launch is registered by the EHR of an institution (his or clinician)');
    }
    const body = (req.body ?? {}) as { patient?: unknown; appContext?: unknown; practitioner?: unknown };
    if (body.appContext !== undefined && (typeof body.appContext !== 'string' || body.appContext.length > 2000)) {
      throw badRequest('appContext is a string of at most 2000 characters', 'appContext');
    }
    const { patientKeys } = await launchPatient(deps, access, body.patient, body.appContext);
    if (
      body.practitioner !== undefined &&
      (typeof body.practitioner !== 'string' || !/^Practitioner(Role)?\/[A-Za-z0-9\-.]{1,64}$/.test(body.practitioner))
    ) {
      throw badRequest('practitioner is a reference Practitioner/<id>', 'practitioner');
    }
    // The `patient` launch context: the launching institution's own record of the patient, else any record.
    const records = await deps.facts.patients.lookup(patientKeys);
    const own = records.find((r) => `Organization/${r.organization}` === access.organization) ?? records[0];
    const patient = own?.ref.slice('Patient/'.length);
    const launch = await deps.launches.create(access, {
      patientKeys,
      ...(patient ? { patient } : {}),
      ...(typeof body.appContext === 'string' ? { appContext: body.appContext } : {}),
      ...(typeof body.practitioner === 'string' ? { practitioner: body.practitioner } : {}),
    });
    const url = new URL(`${publicOrigin(req)}/app`);
    url.searchParams.set('iss', fhirBase(req));
    url.searchParams.set('launch', launch._id);
    res.status(201).json({ launch: launch._id, url: url.toString(), expiresAt: launch.expiresAt.toISOString() });
  });

  // 2. Authorization (EHR launch): a code for the launch, bound to the PKCE challenge.
  router.get('/auth/authorize', async (req, res) => {
    try {
      const to = await deps.launches.authorize(req.query as Record<string, unknown>, {
        redirectUri: `${publicOrigin(req)}/app`,
        aud: fhirBase(req),
      });
      res.redirect(302, to);
    } catch (e) {
      if (!(e instanceof OAuthError)) throw e;
      res.status(e.status).json({ error: e.error, error_description: e.description });
    }
  });

  // 3. The view's data: the launch's patient, seen from the launch's institution.
  /** The caller's launched session: its token and launch (the view's API is for a SMART launch from the EHR). */
  async function launchedSession(req: Request) {
    const access = await authenticate(req, deps.auth);
    const claims = decodeJwt(String(req.headers.authorization).replace(/^Bearer\s+/i, ''));
    if (access.clientId !== APP_CLIENT_ID || typeof claims.launch !== 'string') {
      throw forbidden('The prior-results view is opened through a SMART launch from the EHR');
    }
    const launch = await deps.launches.get(claims.launch);
    if (!launch || launch.organization !== access.organization) throw notFound('The launch of this session is gone');
    return { access, launch };
  }

  // Where the institutions' records of the patient disagree, the view asks the doctor to verify whose results these
  // are before reusing one: that confirmation is an access decision about patient data, and audited as one.
  router.post('/app/api/identity-verified', async (req, res) => {
    const { access, launch } = await launchedSession(req);
    await deps.audit(auditRequest(req, res, access, ['identity-verified']), 204, undefined, undefined, {
      patients: launch.patient ? [`Patient/${launch.patient}`] : [],
    });
    res.status(204).end();
  });

  router.get('/app/api/prior-results', async (req, res) => {
    const { access, launch } = await launchedSession(req);
    const context = new URLSearchParams(launch.appContext ?? '');
    const cardCheckId = context.get('check');
    const cardCheck = cardCheckId ? await deps.reuseChecks!.get(cardCheckId) : null;
    if (cardCheckId && (!cardCheck || `Organization/${cardCheck.requester}` !== access.organization)) {
      throw notFound(`The check ${cardCheckId} named by the launch is not one of this institution`);
    }
    if (!deps.facts || !deps.reuseChecks) throw error(500, 'exception', 'The recognition service is not configured');
    // The checks already asked: the card's, this launch's, and the view's earlier ones of the patient today (a
    // re-launch shows the decisions recorded in them instead of offering the buttons again).
    const now = new Date();
    const institution = access.organization.replace(/^Organization\//, '');
    const today = localDate(now.getTime(), deps.facts.rules.catalogue.timeZone);
    const dayIds = launch.patientKeys.map((key) => `${institution}|${key}|${today}`);
    const checkIds = [...new Set([...(await deps.launches.checksOfDay(dayIds)), ...(launch.viewChecks ?? [])])];
    const viewChecks = await Promise.all(checkIds.map((id) => deps.reuseChecks!.get(id)));
    const earlier = [cardCheck, ...viewChecks].filter(
      (c): c is ReuseCheckDoc => c !== null && c.requester === institution,
    );
    const view = await priorResults(
      { ...deps, access },
      {
        organization: access.organization.replace(/^Organization\//, ''),
        patientKeys: launch.patientKeys,
        clientId: access.clientId,
        now,
        earlier,
        ...(context.get('item') ? { highlight: context.get('item')! } : {}),
      },
    );
    if (view.check && !earlier.some((c) => c._id === view.check)) {
      await Promise.all([
        deps.launches.launches.updateOne({ _id: launch._id }, { $push: { viewChecks: view.check } }),
        ...dayIds.map((id) => deps.launches.addDayCheck(id, view.check, now)),
      ]);
    }
    const { resources, ...body } = view;
    // The banner: the launching institution's record of the patient (the launch's `patient`), masked.
    const record = launch.patient ? await deps.store.findCurrent('Patient', launch.patient) : null;
    const banner = patientBanner(
      record && !record.deleted ? (record.resource as Patient) : undefined,
      new Date(),
      deps.facts.rules.catalogue.timeZone,
    );
    await deps.audit(auditRequest(req, res, access, ['prior-results']), 200, undefined, undefined, {
      patients: launch.patient ? [`Patient/${launch.patient}`] : [],
      resources,
    });
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ...body, banner, ...(launch.patient ? { patient: launch.patient } : {}) });
  });

  return router;
}
