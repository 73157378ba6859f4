/**
 * The requests of the scaling table and of the mixed load, each one HTTP request to the broker under test as the
 * client that would send it: searches and reads as demo-clinician-hospital-b (a `his` client sees only its own
 * institution's results), writes and reuse checks as demo-his-hospital-b, the report as demo-bureau. Each request
 * checks its status and throws otherwise; `i` picks the sample patient (or update target), so that consecutive
 * requests ask about other patients, spread over all the loaded data.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, DiagnosticReport, Observation, Resource } from 'fhir/r4';
import type { RecognitionRules } from '../src/recognition/load.js';
import { localDate } from '../src/recognition/time.js';
import { ingestStream } from './ingest.js';
import type { SamplePatient, UpdateTarget } from './load.js';

export const HIS_B = 'demo-his-hospital-b';
export const CLINICIAN_B = 'demo-clinician-hospital-b';
export const BUREAU = 'demo-bureau';
export const REQUESTER = 'Organization/demo-hospital-b';
const DAY = 86400_000;
/** A request that takes longer has failed (the broker answers long requests with 503 well before). */
const TIMEOUT_MS = 120_000;

export class RequestFailed extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call(url: string, init: RequestInit, ok: number[]): Promise<string> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
  const text = await res.text();
  if (!ok.includes(res.status)) {
    throw new RequestFailed(res.status, `${init.method ?? 'GET'} ${url} answered ${res.status}: ${text.slice(0, 300)}`);
  }
  return text;
}

export interface RequestContext {
  origin: string;
  token(clientId: string): Promise<string>;
  rules: RecognitionRules;
  now: Date;
  /** Sample patients (the loader's reservoir: it changes in place as more data is loaded). */
  sample: SamplePatient[];
  /** Observations of demo-hospital-b to update by identifier. */
  targets: UpdateTarget[];
  /** Distinguishes the resources this run creates from any other run's. */
  tag: string;
}

/** The `$reuse-check` Parameters asking about a sample patient's newest `items` result codes. */
export function checkBody(s: SamplePatient, items: number): string {
  return JSON.stringify({
    resourceType: 'Parameters',
    parameter: [
      { name: 'patient', valueIdentifier: { system: s.system, value: s.value } },
      ...s.codes.slice(-items).map((c) => ({ name: 'code', valueCoding: c })),
      { name: 'requester', valueReference: { reference: REQUESTER } },
    ],
  });
}

export function createRequests(ctx: RequestContext) {
  const { origin, rules, now } = ctx;
  const tz = rules.catalogue.timeZone;
  const yearAgo = localDate(now.getTime() - 365 * DAY, tz);
  const patient = (i: number) => ctx.sample[i % ctx.sample.length]!;
  const fhirJson = { Accept: 'application/fhir+json', 'Content-Type': 'application/fhir+json' };
  const get = async (client: string, path: string) =>
    call(`${origin}${path}`, { headers: { ...fhirJson, Authorization: `Bearer ${await ctx.token(client)}` } }, [200]);
  const send = async (client: string, method: string, path: string, body: unknown, ok: number[], extra = {}) =>
    call(
      `${origin}${path}`,
      {
        method,
        headers: { ...fhirJson, Authorization: `Bearer ${await ctx.token(client)}`, ...extra },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      },
      ok,
    );
  // New results of demo-hospital-b about sample patients (seed 2 of the generator: not the loaded city's).
  const stream = ingestStream(rules, ctx.sample, now, ctx.tag);
  const nextObservation = (): Observation => {
    for (;;) {
      const r = stream.next().value as Resource & { id?: string };
      if (r.resourceType !== 'Observation') continue;
      const copy = { ...r } as Observation;
      delete copy.id;
      return copy;
    }
  };
  const condition = (r: { identifier?: { system?: string; value?: string }[] }) =>
    `identifier=${encodeURIComponent(`${r.identifier![0]!.system}|${r.identifier![0]!.value}`)}`;
  let updates = 0;

  return {
    /** How many update targets there are (`conditionalUpdate(i)` takes the i-th modulo this). */
    targetCount: () => ctx.targets.length,
    /** `GET /fhir/Observation?patient=Patient/<id>` */
    searchByPatient: async (i: number) => {
      await get(CLINICIAN_B, `/fhir/Observation?patient=Patient/${patient(i).id}`);
    },
    /** `GET /fhir/Patient?identifier=<system>|<value>` */
    searchByIdentifier: async (i: number) => {
      const s = patient(i);
      await get(CLINICIAN_B, `/fhir/Patient?identifier=${encodeURIComponent(`${s.system}|${s.value}`)}`);
    },
    /** `GET /fhir/DiagnosticReport?patient=…&code=<system>|<code>&date=ge<a year ago>` */
    searchPatientCodeDate: async (i: number) => {
      const s = patient(i);
      const c = s.codes[i % s.codes.length]!;
      const q = new URLSearchParams({
        patient: `Patient/${s.id}`,
        code: `${c.system}|${c.code}`,
        date: `ge${yearAgo}`,
      });
      await get(CLINICIAN_B, `/fhir/DiagnosticReport?${q}`);
    },
    /** `GET /fhir/DiagnosticReport?patient=…&_include=DiagnosticReport:result` */
    searchInclude: async (i: number) => {
      await get(
        CLINICIAN_B,
        `/fhir/DiagnosticReport?patient=Patient/${patient(i).id}&_include=DiagnosticReport:result`,
      );
    },
    /** `GET /fhir/Observation?status=final`: nothing selective, the first page of a bucket-by-bucket scan */
    searchStatusOnly: async () => {
      await get(CLINICIAN_B, '/fhir/Observation?status=final');
    },
    /** `GET /fhir/<type>/<id>` of one of the patient's results */
    read: async (i: number) => {
      const s = patient(i);
      const source = s.facts[i % Math.max(1, s.facts.length)]?.source;
      await get(CLINICIAN_B, `/fhir/${source ?? `Patient/${s.id}`}`);
    },
    /** `PUT /fhir/Observation?identifier=…` of a loaded Observation of demo-hospital-b, with a new note */
    conditionalUpdate: async (i: number) => {
      const t = ctx.targets[i % ctx.targets.length]!;
      const body: Observation = { ...t.resource, note: [{ text: `bench ${ctx.tag} update ${++updates}` }] };
      delete body.meta;
      await send(HIS_B, 'PUT', `/fhir/Observation?${condition(t.resource)}`, body, [200]);
    },
    /** `POST /fhir/Observation` with `If-None-Exist: identifier=…` of a new Observation (it creates) */
    conditionalCreate: async () => {
      const r = nextObservation();
      await send(HIS_B, 'POST', '/fhir/Observation', r, [201], { 'If-None-Exist': condition(r) });
    },
    /** `POST /fhir` transaction of `size` new results, each `POST` with `ifNoneExist: identifier=…` */
    transaction: async (size: number) => {
      const entries: { fullUrl: string; resource: Resource & { id?: string } }[] = [];
      const fullUrls = new Map<string, string>();
      for (let k = 0; k < size; k++) {
        const r = { ...(stream.next().value as Resource & { id: string }) };
        const fullUrl = `urn:uuid:${randomUUID()}`;
        fullUrls.set(`${r.resourceType}/${r.id}`, fullUrl);
        entries.push({ fullUrl, resource: r });
      }
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: entries.map(({ fullUrl, resource }) => {
          const r = { ...resource } as Resource & { id?: string };
          delete r.id;
          if (r.resourceType === 'DiagnosticReport') {
            // Results in this bundle by fullUrl; those sent in an earlier one are left out (their ids were not kept).
            const report = r as DiagnosticReport;
            const result = report.result?.flatMap((ref) => {
              const url = fullUrls.get(ref.reference ?? '');
              return url ? [{ reference: url }] : [];
            });
            if (result?.length) report.result = result;
            else delete report.result;
          }
          return {
            fullUrl,
            resource: r,
            request: { method: 'POST', url: r.resourceType, ifNoneExist: condition(r as Observation) },
          };
        }),
      };
      await send(HIS_B, 'POST', '/fhir', bundle, [200]);
    },
    /** `POST /fhir/$reuse-check` about the patient's newest `items` result codes */
    reuseCheck: async (i: number, items: number) => {
      await send(HIS_B, 'POST', '/fhir/$reuse-check', checkBody(patient(i), items), [200]);
    },
    /** `GET /reports/savings?from=<a year ago>&to=<today>&by=month,organization` */
    yearReport: async () => {
      const from = localDate(now.getTime() - 364 * DAY, tz);
      const to = localDate(now.getTime(), tz);
      await call(
        `${origin}/reports/savings?from=${from}&to=${to}&by=month,organization`,
        { headers: { Authorization: `Bearer ${await ctx.token(BUREAU)}` } },
        [200],
      );
    },
  };
}

export type Requests = ReturnType<typeof createRequests>;
