/**
 * Projection of a stored DiagnosticReport or Observation into recognition facts: one fact per catalogue item the
 * result stands for, carrying what the decision engine needs and nothing else (no names, no raw identifiers).
 *
 * Contract with the store: the facts of a source resource are REPLACED as a whole by each new projection of its
 * current version. That makes re-projection idempotent, lets an amended or corrected result update its facts, and
 * an entered-in-error, cancelled or not-yet-final version remove them (it projects to no facts).
 */
import type { Coding, DiagnosticReport, Observation, Reference } from 'fhir/r4';
import { resolveCodings, type CodeIndex, type MatchVia } from './catalogue.js';
import { parseFhirDateTime } from './time.js';
import { HR_MARK_URL, HR_SCOPES, type HrScope } from './vocabulary.js';

/** Statuses whose results can be recognised: released, possibly revised. */
export const RELEASED_STATUSES = ['final', 'amended', 'corrected', 'appended'] as const;
export type ReleasedStatus = (typeof RELEASED_STATUSES)[number];

/** Statuses that withdraw a result: any facts it had must go. */
export const WITHDRAWN_STATUSES = ['entered-in-error', 'cancelled'] as const;

export interface RecognitionFact {
  /** `<source>#<item>`: stable across re-projections of the same source. */
  id: string;
  /** The source resource, `DiagnosticReport/<id>` or `Observation/<id>`. */
  source: string;
  sourceVersion?: string;
  /** Pseudonymous keys of the subject, one per matching identifier (ID card, e-health card, insurance code). */
  patientKeys: string[];
  /** Catalogue item code. */
  item: string;
  category: string;
  matchedBy: MatchVia;
  /** False when the match rests on a code marked unverified in the catalogue. */
  matchVerified: boolean;
  matchedCode: { system: string; code: string };
  /** Effective time as a UTC instant (ISO 8601): when the exam was done or the specimen collected. */
  effective: string;
  /** The effective value as the hospital sent it. */
  effectiveSent: string;
  /** `day` when the hospital sent a date only: the result is placed at the start of that local day. */
  effectivePrecision: 'day' | 'time';
  /** The local day of the effective time in the catalogue's zone (windows count from it). */
  effectiveDay: string;
  issued?: string;
  /** Id of the performing Organization (institution), when known. */
  performer?: string;
  status: ReleasedStatus;
  hrMark?: HrScope;
}

export type SkipReason =
  'withdrawn' | 'not-released' | 'no-patient-key' | 'no-effective-time' | 'not-recognized' | 'no-result-value';

export interface Projection {
  /** Replace every fact of this source with `facts` (an empty list removes them). */
  source: string;
  facts: RecognitionFact[];
  /** Why there are no facts, when there are none. */
  skipped?: { reason: SkipReason; message: string };
  /** Things worth a look that did not stop the projection (assumed zone, disagreeing codings). No identifiers. */
  notes: string[];
}

export interface ProjectionContext {
  index: CodeIndex;
  /**
   * Keys of the subject: typically patientKeysOf(secret, identifiers of the referenced Patient, or of
   * subject.identifier). An empty list means the patient cannot be matched across institutions.
   */
  resolvePatientKeys: (subject: Reference) => readonly string[];
  /** Institution id to assume when the resource names no performing Organization (the submitting HIS's). */
  submitter?: string;
  /** Zone for date-only and zone-less values; the catalogue's by default. */
  timeZone?: string;
}

const ORGANIZATION_REFERENCE = /(?:^|\/)Organization\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** The id of the first performer that is an Organization. */
export function performingOrganization(performer: readonly Reference[] | undefined): string | undefined {
  for (const p of performer ?? []) {
    const m = p.reference ? ORGANIZATION_REFERENCE.exec(p.reference) : null;
    if (m) return m[1];
  }
  return undefined;
}

/** The HR mark scope of a result, from the hr-mark extension. */
export function hrMarkOf(resource: DiagnosticReport | Observation): HrScope | undefined {
  const code = resource.extension?.find((e) => e.url === HR_MARK_URL)?.valueCoding?.code;
  return (HR_SCOPES as readonly string[]).includes(code ?? '') ? (code as HrScope) : undefined;
}

function effectiveValue(resource: DiagnosticReport | Observation): string | undefined {
  if (resource.effectiveDateTime) return resource.effectiveDateTime;
  if (resource.effectivePeriod?.start) return resource.effectivePeriod.start;
  if (resource.resourceType === 'Observation' && resource.effectiveInstant) return resource.effectiveInstant;
  return undefined;
}

function hasResultData(obs: Observation): boolean {
  const hasValue = (o: object) => Object.entries(o).some(([k, v]) => k.startsWith('value') && v !== undefined);
  return hasValue(obs) || (obs.component ?? []).some(hasValue) || (obs.hasMember ?? []).length > 0;
}

/** Codings that may identify the item: the code, and the imaging facets found in category, bodySite and method. */
function identifyingCodings(resource: DiagnosticReport | Observation): Coding[] {
  const codings = [...(resource.code.coding ?? [])];
  for (const c of resource.category ?? []) codings.push(...(c.coding ?? []));
  if (resource.resourceType === 'Observation') {
    codings.push(...(resource.bodySite?.coding ?? []), ...(resource.method?.coding ?? []));
  }
  return codings;
}

/**
 * Projects one DiagnosticReport or Observation (its current version) into facts. Pure: the patient keys come from
 * the resolver, the code index decides the items. A panel report gives a fact for the panel; its Observations give
 * facts for their analytes; an exam of several body parts gives one fact per part.
 */
export function projectFacts(resource: DiagnosticReport | Observation, context: ProjectionContext): Projection {
  if (!resource.id) throw new TypeError(`A ${resource.resourceType} is projected once stored, with its id`);
  const source = `${resource.resourceType}/${resource.id}`;
  const notes: string[] = [];
  const none = (reason: SkipReason, message: string): Projection => ({
    source,
    facts: [],
    skipped: { reason, message },
    notes,
  });

  const status = resource.status as string;
  if ((WITHDRAWN_STATUSES as readonly string[]).includes(status)) {
    return none('withdrawn', `Status ${status}: the result is withdrawn and can no longer be recognised`);
  }
  if (!(RELEASED_STATUSES as readonly string[]).includes(status)) {
    return none('not-released', `Status ${status}: only final, amended, corrected or appended results are recognised`);
  }
  if (resource.resourceType === 'Observation' && !hasResultData(resource)) {
    return none('no-result-value', 'The Observation has no value (dataAbsentReason): there is nothing to reuse');
  }

  const timeZone = context.timeZone ?? context.index.catalogue.timeZone;
  const sent = effectiveValue(resource);
  const effective = sent === undefined ? undefined : parseFhirDateTime(sent, timeZone);
  if (!sent || !effective) {
    return none(
      'no-effective-time',
      sent === undefined
        ? 'No effective time: windows count from the exam or collection time, which the result must carry'
        : `Effective time '${sent}' does not name a day: windows need at least a full date`,
    );
  }
  if (effective.assumedZone) notes.push(`Effective time without an offset, read in ${timeZone}`);

  const patientKeys = resource.subject ? [...new Set(context.resolvePatientKeys(resource.subject))] : [];
  if (patientKeys.length === 0) {
    return none(
      'no-patient-key',
      'The subject has no resident ID card, e-health card or insurance code to match across institutions',
    );
  }

  const performer = performingOrganization(resource.performer) ?? context.submitter;
  const resolution = resolveCodings(context.index, identifyingCodings(resource), performer);
  if (resolution.disagreeing.length > 0) {
    notes.push(
      `Codings disagree: kept ${resolution.matches.map((m) => m.item).join(', ')}, ` +
        `ignored ${resolution.disagreeing.map((m) => `${m.item} (${m.system}|${m.code})`).join(', ')}`,
    );
  }
  if (resolution.matches.length === 0) {
    return none('not-recognized', 'No catalogue item matches the codes of this result');
  }

  const issuedMs = resource.issued ? Date.parse(resource.issued) : NaN;
  const hrMark = hrMarkOf(resource);
  const facts = resolution.matches
    .map((m): RecognitionFact => {
      const item = context.index.items.get(m.item);
      return {
        id: `${source}#${m.item}`,
        source,
        ...(resource.meta?.versionId ? { sourceVersion: resource.meta.versionId } : {}),
        patientKeys,
        item: m.item,
        category: item?.category ?? '',
        matchedBy: m.via,
        matchVerified: m.verified,
        matchedCode: { system: m.system, code: m.imagingKey ?? m.code },
        effective: new Date(effective.ms).toISOString(),
        effectiveSent: sent,
        effectivePrecision: effective.precision,
        effectiveDay: effective.localDate,
        ...(Number.isNaN(issuedMs) ? {} : { issued: new Date(issuedMs).toISOString() }),
        ...(performer ? { performer } : {}),
        status: status as ReleasedStatus,
        ...(hrMark ? { hrMark } : {}),
      };
    })
    .sort((a, b) => a.item.localeCompare(b.item));
  return { source, facts, notes };
}
