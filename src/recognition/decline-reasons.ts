/**
 * Reasons a doctor gives for not reusing a recognisable result (seed/decline-reasons.json): the national exception
 * list, provincial additions, and two operational codes that are recorded but not counted as declines.
 */
import type { CodeSystem } from 'fhir/r4';
import { SeedDataError, schemaChecker } from './errors.js';
import { HUREN_FHIR_BASE, type Bilingual } from './vocabulary.js';

export const DECLINE_REASON_SYSTEM = `${HUREN_FHIR_BASE}/CodeSystem/hr-decline-reason`;

export interface DeclineReason {
  code: string;
  display: Bilingual;
  definition?: string;
  /** national: 医疗机构检查检验结果互认管理办法 (2022); provincial: added by provinces; operational: Huren/practice. */
  source: 'national' | 'provincial' | 'operational';
  /** False for "images not received" and "serial monitoring": recorded, but not counted as a decline. */
  countsAsDecline: boolean;
  /** Free text must accompany the code (the national "other"). */
  requiresText: boolean;
}

export interface DeclineReasons {
  version: string;
  reasons: DeclineReason[];
}

const bilingual = {
  type: 'object',
  required: ['zh', 'en'],
  additionalProperties: false,
  properties: { zh: { type: 'string', minLength: 1 }, en: { type: 'string', minLength: 1 } },
};

const checkShape = schemaChecker({
  type: 'object',
  required: ['version', 'reasons'],
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    version: { type: 'string', minLength: 1 },
    reasons: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['code', 'display', 'source', 'countsAsDecline', 'requiresText'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', pattern: '^[a-z][a-z-]*$' },
          display: bilingual,
          definition: { type: 'string' },
          source: { enum: ['national', 'provincial', 'operational'] },
          countsAsDecline: { type: 'boolean' },
          requiresText: { type: 'boolean' },
        },
      },
    },
  },
});

/** Validates seed/decline-reasons.json. Throws SeedDataError listing every problem. */
export function parseDeclineReasons(json: unknown, file = 'decline-reasons.json'): DeclineReasons {
  const shape = checkShape(json);
  if (shape.length > 0) throw new SeedDataError(file, shape);
  const data = json as DeclineReasons;
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of data.reasons) {
    if (seen.has(r.code)) problems.push(`reason '${r.code}' is defined twice`);
    seen.add(r.code);
  }
  if (problems.length > 0) throw new SeedDataError(file, problems);
  return data;
}

export function findDeclineReason(reasons: DeclineReasons, code: string): DeclineReason | undefined {
  return reasons.reasons.find((r) => r.code === code);
}

/** The decline reasons as a CodeSystem, with `counts-as-decline` and `requires-text` as concept properties. */
export function buildDeclineReasonCodeSystem(reasons: DeclineReasons): CodeSystem {
  return {
    resourceType: 'CodeSystem',
    id: 'hr-decline-reason',
    url: DECLINE_REASON_SYSTEM,
    version: reasons.version,
    name: 'HrDeclineReason',
    title: '不予互认理由 (reasons for not reusing a result)',
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    description:
      'Reasons recorded when a recognisable result is not reused: the national exception list (2022), provincial ' +
      "additions, and operational codes that are recorded but not counted as declines ('counts-as-decline' false).",
    language: 'zh-CN',
    caseSensitive: true,
    content: 'complete',
    count: reasons.reasons.length,
    property: [
      { code: 'source', type: 'code', description: 'national | provincial | operational' },
      { code: 'counts-as-decline', type: 'boolean', description: 'Counted as a decline in recognition rates' },
      { code: 'requires-text', type: 'boolean', description: 'Free text must accompany the code' },
    ],
    concept: reasons.reasons.map((r) => ({
      code: r.code,
      display: r.display.zh,
      ...(r.definition ? { definition: r.definition } : {}),
      designation: [
        {
          language: 'en',
          use: { system: 'http://terminology.hl7.org/CodeSystem/designation-usage', code: 'display' },
          value: r.display.en,
        },
      ],
      property: [
        { code: 'source', valueCode: r.source },
        { code: 'counts-as-decline', valueBoolean: r.countsAsDecline },
        { code: 'requires-text', valueBoolean: r.requiresText },
      ],
    })),
  };
}
