/**
 * The generic way to ask "can this result be reused?": the simplest honest FHIR client. Per item, one search
 * `GET /fhir/DiagnosticReport?patient=…&code=…&date=ge<start of the item's window>` through the same HTTP server,
 * then client-side rules: the newest final result within the item's validity window from an institution holding a
 * valid HR qualification for the item's category on the result's day. It knows the catalogue (windows, categories)
 * and the institutions' qualifications, as a client of the regional platform would.
 */
import http from 'node:http';
import type { Bundle, DiagnosticReport, Parameters } from 'fhir/r4';
import { lookupCoding } from '../src/recognition/catalogue.js';
import { qualificationAt } from '../src/recognition/institutions.js';
import type { RecognitionRules } from '../src/recognition/load.js';
import { localDate } from '../src/recognition/time.js';
import type { SamplePatient } from './load.js';

const DAY = 86400_000;
const FINAL = new Set(['final', 'amended', 'corrected']);
const agent = new http.Agent({ keepAlive: true });

/**
 * GET over node:http rather than fetch: fetch (undici) gives up when response headers take over 300 s, which one
 * generic search took at 1 M results before searches narrowed on the token index (every DiagnosticReport scanned).
 */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

export function createGenericClient(rules: RecognitionRules, origin: string, now: Date) {
  const tz = rules.catalogue.timeZone;
  const itemOf = (c: { system: string; code: string }) => {
    const match = lookupCoding(rules.index, c)[0];
    return match ? rules.index.items.get(match.item) : undefined;
  };
  const isQualified = (performer: string | undefined, category: string, effective: string) => {
    const institution = rules.directory.byId.get(performer?.replace('Organization/', '') ?? '');
    if (!institution) return false;
    return qualificationAt(institution, category, localDate(Date.parse(effective), tz)).status === 'valid';
  };

  /** The newest reusable DiagnosticReport per item (`DiagnosticReport/<id>`), or undefined. */
  async function answerItem(token: string, s: SamplePatient, code: { system: string; code: string }) {
    const item = itemOf(code);
    if (!item) return undefined;
    const since = now.getTime() - item.validityDays * DAY;
    const query = new URLSearchParams({
      patient: `Patient/${s.id}`,
      code: `${code.system}|${code.code}`,
      date: `ge${localDate(since, tz)}`,
    });
    const res = await get(`${origin}/fhir/DiagnosticReport?${query}`, {
      Authorization: `Bearer ${token}`,
      Accept: 'application/fhir+json',
    });
    if (res.status !== 200) throw new Error(`generic search answered ${res.status}: ${res.body}`);
    const bundle = JSON.parse(res.body) as Bundle;
    let best: DiagnosticReport | undefined;
    for (const e of bundle.entry ?? []) {
      const r = e.resource as DiagnosticReport;
      const effective = r.effectiveDateTime;
      if (!effective || !FINAL.has(r.status) || Date.parse(effective) < since) continue;
      if (!isQualified(r.performer?.[0]?.reference, item.category, effective)) continue;
      if (!best || Date.parse(effective) > Date.parse(best.effectiveDateTime!)) best = r;
    }
    return best ? `DiagnosticReport/${best.id}` : undefined;
  }

  return {
    /** One search per item, one after the other, as a simple client does. */
    async answer(token: string, s: SamplePatient, items: number): Promise<(string | undefined)[]> {
      const out: (string | undefined)[] = [];
      for (const code of s.codes.slice(-items)) out.push(await answerItem(token, s, code));
      return out;
    },
  };
}

/** The result Huren proposes as reusable for each requested item (undefined when it proposes none). */
export function hurenAnswer(parameters: Parameters): (string | undefined)[] {
  return (parameters.parameter ?? [])
    .filter((p) => p.name === 'outcome')
    .map((p) => {
      const part = (name: string) => p.part?.find((x) => x.name === name);
      return part('decision')?.valueCode === 'reusable' ? part('result')?.valueReference?.reference : undefined;
    });
}
