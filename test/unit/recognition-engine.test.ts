import { fileURLToPath } from 'node:url';
import type { Coding, DiagnosticReport, ServiceRequest } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { buildCodeIndex, type Catalogue } from '../../src/recognition/catalogue.js';
import {
  decideReuse,
  requestedItemsFromServiceRequest,
  type RequestedItem,
  type ReuseOutcome,
  type ReuseRequest,
} from '../../src/recognition/engine.js';
import { RecognitionInputError } from '../../src/recognition/errors.js';
import { projectFacts, type RecognitionFact } from '../../src/recognition/facts.js';
import { indexInstitutions, type AcceptanceMatrix, type Institution } from '../../src/recognition/institutions.js';
import { loadRecognitionRules } from '../../src/recognition/load.js';
import { localDate } from '../../src/recognition/time.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';

const rules = loadRecognitionRules(fileURLToPath(new URL('../../seed', import.meta.url)));
const ZHANG = 'patient-key-zhang';
const LI = 'patient-key-li';
/** 2026-11-25 10:00 in Qingdao. */
const NOW = new Date('2026-11-25T10:00:00+08:00');

const loinc = (code: string): RequestedItem => ({ coding: [{ system: SYSTEMS.loinc, code }] });
const catalogueCode = (code: string): RequestedItem => ({ coding: [{ system: SYSTEMS.catalogue, code }] });

let seq = 0;
/** A fact as the projection makes it; `effective` is given with its offset, as hospitals send it. */
function fact(item: string, performer: string | undefined, effective: string, extra: Partial<RecognitionFact> = {}) {
  const ms = Date.parse(effective);
  const source = `DiagnosticReport/r${++seq}`;
  const f: RecognitionFact = {
    id: `${source}#${item}`,
    source,
    patientKeys: [ZHANG],
    item,
    category: rules.index.items.get(item)?.category ?? '',
    matchedBy: 'code',
    matchVerified: true,
    matchedCode: { system: SYSTEMS.loinc, code: 'x' },
    effective: new Date(ms).toISOString(),
    effectiveSent: effective,
    effectivePrecision: 'time',
    effectiveDay: localDate(ms, 'Asia/Shanghai'),
    issued: new Date(ms + 3_600_000).toISOString(),
    status: 'final',
    ...(performer ? { performer } : {}),
    ...extra,
  };
  return f;
}

function check(
  items: RequestedItem[],
  facts: RecognitionFact[],
  options: Partial<Omit<ReuseRequest, 'items'>> & { now?: Date; matrix?: AcceptanceMatrix } = {},
): ReuseOutcome[] {
  const request: ReuseRequest = {
    patientKeys: options.patientKeys ?? [ZHANG],
    requester: options.requester ?? 'demo-hospital-b',
    items,
    ...(options.context ? { context: options.context } : {}),
  };
  return decideReuse(request, facts, rules.directory, rules.index, options.matrix ?? rules.matrix, options.now ?? NOW);
}

function one(items: RequestedItem[], facts: RecognitionFact[], options: Parameters<typeof check>[2] = {}) {
  const outcomes = check(items, facts, options);
  expect(outcomes).toHaveLength(1);
  return outcomes[0] as ReuseOutcome;
}

const HIGHER_OR_PEER: AcceptanceMatrix = {
  default: { policy: 'all', allianceMembersAccept: true },
  regions: [
    {
      region: '370200',
      name: { zh: '青岛市', en: 'Qingdao' },
      policy: 'higher-or-peer',
      allianceMembersAccept: true,
    },
  ],
};

describe('reusable results', () => {
  test('reuses a CBC from another hospital taken yesterday, with the saving and a readable reason', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00');
    const o = one([loinc('57021-8')], [cbc]);
    expect(o.decision).toBe('reusable');
    expect(o.item).toMatchObject({ system: SYSTEMS.catalogue, code: 'HR-LAB-CBC', display: '血常规(五分类)' });
    expect(o.fact?.source).toBe(cbc.source);
    expect(o.performer).toBe('demo-hospital-a');
    expect(o.effective).toBe('2026-11-24T08:15:00+08:00');
    expect(o.lastValidDay).toBe('2026-12-01');
    expect(o.validUntil).toBe('2026-12-01T23:59:59+08:00');
    expect(o.saving).toEqual({ value: 30, currency: 'CNY' });
    expect(o.retestJustified).toBe(false);
    expect(o.reason.en).toMatch(/^Reusable: CBC with 5-part differential \(HR-LAB-CBC\) from Qingdao Demo Hospital A/);
    expect(o.reason.en).toContain('valid through the end of 1 Dec 2026');
    expect(o.reason.en).toContain('saving ¥30.00');
    expect(o.reason.zh).toMatch(/^可互认：血常规\(五分类\)/);
    expect(o.path.map((s) => s.rule)).toEqual([
      'match',
      'match',
      'window',
      'qualification',
      'scope',
      'acceptance',
      'saving',
    ]);
    expect(o.path.every((s) => s.passed)).toBe(true);
  });

  test('proposes the most recent qualifying result among several', () => {
    const older = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-20T09:00:00+08:00');
    const newest = fact('HR-LAB-CBC', 'demo-hospital-c', '2026-11-23T16:40:00+08:00');
    const expired = fact('HR-LAB-CBC', 'demo-hospital-e', '2026-11-10T09:00:00+08:00');
    const o = one([loinc('57021-8')], [older, expired, newest]);
    expect(o.decision).toBe('reusable');
    expect(o.fact?.source).toBe(newest.source);
    expect(o.candidates.map((c) => [c.performer, c.decision])).toEqual([
      ['demo-hospital-c', 'reusable'],
      ['demo-hospital-a', 'reusable'],
      ['demo-hospital-e', 'expired'],
    ]);
  });

  test('passes over a more recent result that is only for reference, and says why', () => {
    const failedQc = fact('HR-LAB-GLU', 'demo-hospital-d', '2026-11-24T07:30:00+08:00');
    const qualified = fact('HR-LAB-GLU', 'demo-hospital-a', '2026-11-15T07:30:00+08:00');
    const o = one([loinc('14771-0')], [failedQc, qualified]);
    expect(o.decision).toBe('reusable');
    expect(o.fact?.source).toBe(qualified.source);
    const note = o.path.find((s) => s.rule === 'more-recent');
    expect(note?.en).toContain('Qingdao Demo Hospital D');
    expect(note?.en).toContain('quality control');
  });

  test("another patient's results are never proposed", () => {
    const theirs = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00', { patientKeys: [LI] });
    expect(one([loinc('57021-8')], [theirs]).decision).toBe('none');
  });

  test('a patient known by two identifiers matches a result indexed under either key', () => {
    const byHealthCard = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00', {
      patientKeys: ['key-of-e-health-card'],
    });
    const o = one([loinc('57021-8')], [byHealthCard], { patientKeys: [ZHANG, 'key-of-e-health-card'] });
    expect(o.decision).toBe('reusable');
  });
});

describe('validity window in Asia/Shanghai local days', () => {
  const cbc = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-17T09:00:00+08:00');

  test('a 7-day CBC is reusable through the end of the 7th local day after it was taken', () => {
    const o = one([loinc('57021-8')], [cbc], { now: new Date('2026-11-24T23:59:59+08:00') });
    expect(o.decision).toBe('reusable');
    expect(o.lastValidDay).toBe('2026-11-24');
    expect(o.validUntil).toBe('2026-11-24T23:59:59+08:00');
  });

  test('the same CBC is expired from local midnight the day after, with no saving', () => {
    const o = one([loinc('57021-8')], [cbc], { now: new Date('2026-11-25T00:00:00+08:00') });
    expect(o.decision).toBe('expired');
    expect(o.lastValidDay).toBe('2026-11-24');
    expect(o.saving.value).toBe(0);
    expect(o.reason.en).toMatch(/^Expired: /);
    expect(o.reason.en).toContain('today is 25 Nov 2026, so it has expired');
  });

  test('a result taken at 23:30 Beijing time counts for that local day, however late', () => {
    const late = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-17T23:30:00+08:00');
    expect(one([loinc('57021-8')], [late], { now: new Date('2026-11-24T23:00:00+08:00') }).decision).toBe('reusable');
    const next = one([loinc('57021-8')], [late], { now: new Date('2026-11-25T00:10:00+08:00') });
    expect(next.decision).toBe('expired');
    expect(next.lastValidDay).toBe('2026-11-24');
  });

  test('a result taken at 00:30 Beijing time (16:30 UTC the day before) counts for the local day, not the UTC day', () => {
    const early = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-17T16:30:00Z');
    const o = one([loinc('57021-8')], [early], { now: new Date('2026-11-25T09:00:00+08:00') });
    expect(o.decision).toBe('reusable');
    expect(o.lastValidDay).toBe('2026-11-25');
  });

  test('a troponin (1 day) taken late yesterday evening is still reusable today but not tomorrow', () => {
    const tni = fact('HR-LAB-HSCTNI', 'demo-hospital-c', '2026-11-24T22:00:00+08:00');
    expect(one([loinc('89579-7')], [tni]).decision).toBe('reusable');
    expect(one([loinc('89579-7')], [tni], { now: new Date('2026-11-26T00:00:00+08:00') }).decision).toBe('expired');
  });

  test('an HbA1c of 90 days ago is expired, and the answer says when its 60-day window ended', () => {
    const hba1c = fact('HR-LAB-HBA1C', 'demo-hospital-a', '2026-08-27T08:00:00+08:00');
    const o = one([loinc('4548-4')], [hba1c]);
    expect(o.decision).toBe('expired');
    expect(o.fact?.source).toBe(hba1c.source);
    expect(o.lastValidDay).toBe('2026-10-26');
    expect(o.reason.en).toContain('window 60 days from the exam/collection day 27 Aug 2026');
  });

  test('a result dated after the time of the check did not exist then and is ignored', () => {
    const later = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-25T11:00:00+08:00');
    expect(one([loinc('57021-8')], [later]).decision).toBe('none');
  });

  test('an in-window result for reference beats an expired qualifying one', () => {
    const expired = fact('HR-LAB-CBC', 'demo-hospital-c', '2026-11-01T09:00:00+08:00');
    const unqualified = fact('HR-LAB-CBC', 'demo-chc-huangdao', '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [expired, unqualified]);
    expect(o.decision).toBe('reference-only');
    expect(o.performer).toBe('demo-chc-huangdao');
  });
});

describe('institution qualification and quality control', () => {
  test('a chest CT from a hospital whose CT qualification lapsed is for reference only', () => {
    const ct = fact('HR-IMG-CT-CHEST', 'demo-hospital-a', '2026-11-15T14:00:00+08:00');
    const o = one([catalogueCode('HR-IMG-CT-CHEST')], [ct]);
    expect(o.decision).toBe('reference-only');
    expect(o.fact?.source).toBe(ct.source);
    expect(o.lastValidDay).toBe('2027-02-13');
    expect(o.saving.value).toBe(0);
    expect(o.reason.en).toContain("Qingdao Demo Hospital A's HR qualification for CT ended on 30 Jun 2025");
    expect(o.reason.zh).toMatch(/^仅供参考/);
    expect(o.path.at(-1)).toMatchObject({ rule: 'qualification', passed: false });
  });

  test('a CT taken while the qualification was valid stays reusable after it ends', () => {
    const ct = fact('HR-IMG-CT-CHEST', 'demo-hospital-a', '2025-06-20T14:00:00+08:00');
    const o = one([catalogueCode('HR-IMG-CT-CHEST')], [ct], { now: new Date('2025-07-10T10:00:00+08:00') });
    expect(o.decision).toBe('reusable');
    expect(o.saving.value).toBe(207);
  });

  test('results of a laboratory that failed quality control are for reference only from the evaluation day', () => {
    const after = fact('HR-LAB-GLU', 'demo-hospital-d', '2026-11-20T07:30:00+08:00');
    const o = one([loinc('14771-0')], [after]);
    expect(o.decision).toBe('reference-only');
    expect(o.reason.en).toContain('failed quality control for Clinical chemistry on 15 Sep 2026');

    const before = fact('HR-LAB-GLU', 'demo-hospital-d', '2026-09-10T07:30:00+08:00');
    expect(one([loinc('14771-0')], [before], { now: new Date('2026-09-20T10:00:00+08:00') }).decision).toBe('reusable');
  });

  test('quality control of one category does not affect another', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-hospital-d', '2026-11-24T07:30:00+08:00');
    expect(one([loinc('57021-8')], [cbc]).decision).toBe('reusable');
  });

  test('a community centre without any HR qualification gives results for reference only', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-chc-huangdao', '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [cbc]);
    expect(o.decision).toBe('reference-only');
    expect(o.reason.en).toContain('holds no HR qualification for Haematology');
  });

  test('a result from an unregistered or unnamed institution is for reference only', () => {
    const unknown = fact('HR-LAB-CBC', 'somewhere-else', '2026-11-24T09:00:00+08:00');
    expect(one([loinc('57021-8')], [unknown]).reason.en).toContain('Organization/somewhere-else is not a registered');
    const unnamed = fact('HR-LAB-CBC', undefined, '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [unnamed]);
    expect(o.decision).toBe('reference-only');
    expect(o.reason.en).toContain('names no performing institution');
  });
});

describe('acceptance matrix and recognition scope', () => {
  test('where only the same or a higher grade is accepted, a 三级 hospital does not accept a 一级 result', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-hospital-h', '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [cbc], { matrix: HIGHER_OR_PEER });
    expect(o.decision).toBe('reference-only');
    expect(o.path.at(-1)).toMatchObject({ rule: 'acceptance', passed: false });
    expect(o.reason.en).toContain('results of a primary institution are not accepted');
  });

  test('under the same rule the 一级 hospital accepts the 三级 result', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-hospital-b', '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [cbc], { matrix: HIGHER_OR_PEER, requester: 'demo-hospital-h' });
    expect(o.decision).toBe('reusable');
  });

  test('members of one medical alliance accept each other whatever the levels', () => {
    const cbc = fact('HR-LAB-CBC', 'demo-chc-shinan', '2026-11-24T09:00:00+08:00');
    const o = one([loinc('57021-8')], [cbc], { matrix: HIGHER_OR_PEER, requester: 'demo-hospital-a' });
    expect(o.decision).toBe('reusable');
    expect(o.reason.en).toContain('both members of Shinan close-knit medical alliance (demo)');
  });

  test('an explicit matrix lists the levels each level accepts', () => {
    const explicit: AcceptanceMatrix = {
      default: { policy: 'all', allianceMembersAccept: false },
      regions: [
        { region: '370200', policy: 'explicit', allianceMembersAccept: false, accepts: { 三级乙等: ['三级甲等'] } },
      ],
    };
    const fromA = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T09:00:00+08:00');
    const fromE = fact('HR-LAB-CBC', 'demo-hospital-e', '2026-11-24T10:00:00+08:00');
    const o = one([loinc('57021-8')], [fromA, fromE], { matrix: explicit });
    expect(o.decision).toBe('reusable');
    expect(o.performer).toBe('demo-hospital-a');
    expect(o.candidates.find((c) => c.performer === 'demo-hospital-e')?.decision).toBe('reference-only');
  });

  test('a municipal result is not recognised by a hospital in another city; a national one is', () => {
    const jinan: Institution = {
      id: 'demo-jinan',
      name: { zh: '济南演示医院', en: 'Jinan Demo Hospital' },
      level: '三级甲等',
      district: { code: '370102', name: { zh: '历下区', en: 'Lixia District' } },
      alliances: [],
      qualifications: [],
    };
    const directory = indexInstitutions({
      ...rules.institutions,
      institutions: [...rules.institutions.institutions, jinan],
    });
    const decide = (f: RecognitionFact) =>
      decideReuse(
        { patientKeys: [ZHANG], requester: 'demo-jinan', items: [loinc('57021-8')] },
        [f],
        directory,
        rules.index,
        rules.matrix,
        NOW,
      )[0] as ReuseOutcome;

    const municipal = decide(fact('HR-LAB-CBC', 'demo-hospital-b', '2026-11-24T09:00:00+08:00'));
    expect(municipal.decision).toBe('reference-only');
    expect(municipal.reason.en).toContain('does not cover a requester in another city');

    // Hospital C holds a national lab qualification, but an unmarked result has the item's default (municipal) scope.
    expect(decide(fact('HR-LAB-CBC', 'demo-hospital-c', '2026-11-24T09:00:00+08:00')).decision).toBe('reference-only');
    const marked = decide(fact('HR-LAB-CBC', 'demo-hospital-c', '2026-11-24T09:00:00+08:00', { hrMark: 'national' }));
    expect(marked.decision).toBe('reusable');
    expect(marked.reason.en).toContain('national HR (result marked national HR)');
    // A mark cannot claim more than the qualification: Hospital B is qualified for the city only.
    const overclaim = decide(
      fact('HR-LAB-CBC', 'demo-hospital-b', '2026-11-24T09:00:00+08:00', { hrMark: 'national' }),
    );
    expect(overclaim.decision).toBe('reference-only');
  });
});

describe('panels and analytes', () => {
  test('an ALT order reuses the liver panel of another hospital; the analyte has no price of its own', () => {
    const lft = fact('HR-LAB-LFT', 'demo-hospital-a', '2026-11-20T08:00:00+08:00');
    const o = one([loinc('1742-6')], [lft]);
    expect(o.decision).toBe('reusable');
    expect(o.item?.code).toBe('HR-LAB-ALT');
    expect(o.via).toBe('panel');
    expect(o.fact?.source).toBe(lft.source);
    expect(o.saving.value).toBe(0);
    expect(o.reason.en).toContain('ALT) is reported in the Liver panel');
    expect(o.reason.en).toContain('no price configured');
  });

  test('a liver panel order reuses the eight analyte results of one specimen', () => {
    const at = '2026-11-20T08:00:00+08:00';
    const members = rules.index.items.get('HR-LAB-LFT')?.members ?? [];
    const analytes = members.map((m) => fact(m, 'demo-hospital-c', at));
    const o = one([catalogueCode('HR-LAB-LFT')], analytes);
    expect(o.decision).toBe('reusable');
    expect(o.via).toBe('analytes');
    expect(o.facts).toHaveLength(8);
    expect(o.saving.value).toBe(80);
  });

  test('a panel report and its own analyte results count as one result, reported as the panel', () => {
    const at = '2026-11-20T08:00:00+08:00';
    const members = rules.index.items.get('HR-LAB-RFT')?.members ?? [];
    const panel = fact('HR-LAB-RFT', 'demo-hospital-c', at);
    const o = one([catalogueCode('HR-LAB-RFT')], [...members.map((m) => fact(m, 'demo-hospital-c', at)), panel]);
    expect(o.via).toBe('direct');
    expect(o.fact?.source).toBe(panel.source);
    expect(o.candidates).toHaveLength(1);
  });

  test('some analytes of a panel do not replace the panel', () => {
    const at = '2026-11-20T08:00:00+08:00';
    const members = (rules.index.items.get('HR-LAB-LFT')?.members ?? []).slice(0, 6);
    const o = one(
      [catalogueCode('HR-LAB-LFT')],
      members.map((m) => fact(m, 'demo-hospital-c', at)),
    );
    expect(o.decision).toBe('none');
    expect(o.reason.en).toContain('only 6 of the 8 analytes of the panel were found');
  });

  test('analytes from two different specimens do not make up a panel', () => {
    const facts = [
      fact('HR-LAB-K', 'demo-hospital-c', '2026-11-23T08:00:00+08:00'),
      fact('HR-LAB-NA', 'demo-hospital-c', '2026-11-23T08:00:00+08:00'),
      fact('HR-LAB-CL', 'demo-hospital-c', '2026-11-24T08:00:00+08:00'),
    ];
    expect(one([catalogueCode('HR-LAB-ELEC')], facts).decision).toBe('none');
  });

  test('ferritin keeps its 30-day window from an iron panel while iron and the panel expire after 7', () => {
    const iron = fact('HR-LAB-IRON', 'demo-hospital-a', '2026-11-12T08:00:00+08:00');
    const [ferritin, fe, panel] = check(
      [catalogueCode('HR-LAB-FERR'), loinc('14798-3'), catalogueCode('HR-LAB-IRON')],
      [iron],
    );
    expect(ferritin).toMatchObject({ decision: 'reusable', lastValidDay: '2026-12-12', requestIndex: 0 });
    expect(fe).toMatchObject({ decision: 'expired', lastValidDay: '2026-11-19', requestIndex: 1 });
    expect(panel).toMatchObject({ decision: 'expired', requestIndex: 2 });
  });

  test('HBsAg is covered by both the HBV panel and the pre-operative screen', () => {
    const preop = fact('HR-LAB-PREOP4', 'demo-hospital-c', '2026-09-01T08:00:00+08:00');
    const o = one([loinc('5196-1')], [preop]);
    expect(o.decision).toBe('reusable');
    expect(o.lastValidDay).toBe('2027-02-28');
    expect(one([catalogueCode('HR-LAB-PREOP4')], [preop]).decision).toBe('expired');
  });
});

describe('codes of the order', () => {
  const cbc = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00');
  const B_ORDERS = 'https://demo-hospital-b.example.org/fhir/CodeSystem/his-order';

  test("the requester's local order code is mapped to the catalogue", () => {
    const o = one([{ coding: [{ system: B_ORDERS, code: 'XCG', display: '血常规' }] }], [cbc]);
    expect(o.decision).toBe('reusable');
    expect(o.item?.code).toBe('HR-LAB-CBC');
    // The rule path names codes as a doctor reads them, without code-system URLs.
    expect(o.reason.en).toContain('by local code XCG');
    expect(o.path.map((p) => p.zh).join()).toContain('按本地编码 XCG 对应到互认目录');
    expect(o.path.map((p) => `${p.zh} ${p.en}`).join()).not.toContain('http');
  });

  test('a local order set gives one answer per catalogue item', () => {
    const lft = fact('HR-LAB-LFT', 'demo-hospital-a', '2026-11-24T08:15:00+08:00');
    const outcomes = check([{ coding: [{ system: B_ORDERS, code: 'GSGN' }] }], [lft]);
    expect(outcomes.map((o) => [o.requestIndex, o.item?.code, o.decision])).toEqual([
      [0, 'HR-LAB-LFT', 'reusable'],
      [0, 'HR-LAB-RFT', 'none'],
    ]);
  });

  test("another hospital's local code means nothing to the requester", () => {
    const aCodes = 'https://demo-hospital-a.example.org/fhir/CodeSystem/lis-test';
    const o = one([{ coding: [{ system: aCodes, code: 'A-0101' }] }], [cbc]);
    expect(o.decision).toBe('not-recognized');
  });

  test('a code outside the catalogue is not recognised, and the answer names it', () => {
    const o = one([loinc('2345-7')], [cbc]);
    expect(o.decision).toBe('not-recognized');
    expect(o.item).toBeUndefined();
    expect(o.saving.value).toBe(0);
    expect(o.reason.en).toContain('http://loinc.org|2345-7');
    expect(o.reason.zh).toMatch(/^非互认项目/);
  });

  test('an imaging order for chest and abdomen gives two answers', () => {
    const ct = fact('HR-IMG-CT-ABD', 'demo-hospital-c', '2026-11-20T10:00:00+08:00');
    const order: ServiceRequest = {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: { reference: 'Patient/p1' },
      code: {
        coding: [
          { system: SYSTEMS.dicom, code: 'CT' },
          { system: SYSTEMS.imagingMethod, code: 'plain' },
        ],
      },
      bodySite: [
        { coding: [{ system: SYSTEMS.bodyPart, code: 'CHEST' }] },
        { coding: [{ system: SYSTEMS.bodyPart, code: 'ABDOMEN' }] },
      ],
    };
    const outcomes = check(requestedItemsFromServiceRequest(order), [ct]);
    expect(outcomes.map((o) => [o.item?.code, o.decision])).toEqual([
      ['HR-IMG-CT-CHEST', 'none'],
      ['HR-IMG-CT-ABD', 'reusable'],
    ]);
  });

  test('a match on a code the catalogue marks unverified says so', () => {
    const o = one([loinc('29252-4')], []);
    expect(o.decision).toBe('none');
    expect(o.path[0]?.en).toContain('(code not yet verified)');
  });
});

describe('context of the check', () => {
  const cbc = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00');

  test('in an emergency the reusable result is still shown, but re-testing is justified', () => {
    const o = one([loinc('57021-8')], [cbc], { context: 'emergency' });
    expect(o.decision).toBe('reusable');
    expect(o.retestJustified).toBe(true);
    expect(o.justification).toBe('emergency');
    expect(o.reason.en).toContain('emergency or rescue: re-testing is justified (reason code emergency)');
  });

  test('before surgery re-testing is justified as a key time point', () => {
    const o = one([loinc('57021-8')], [cbc], { context: 'pre-surgery' });
    expect(o).toMatchObject({ decision: 'reusable', retestJustified: true, justification: 'key-time-point' });
  });

  test('ABO/Rh typing from 200 days ago is reusable for routine care', () => {
    const typing = fact('HR-LAB-ABORH', 'demo-hospital-a', '2026-05-09T08:00:00+08:00');
    const o = one([catalogueCode('HR-LAB-ABORH')], [typing]);
    expect(o).toMatchObject({ decision: 'reusable', lastValidDay: '2027-05-09', retestJustified: false });
  });

  test('ABO/Rh typing is never reused for a crossmatch, even when valid', () => {
    const typing = fact('HR-LAB-ABORH', 'demo-hospital-a', '2026-11-20T08:00:00+08:00');
    const [panel, abo] = check([catalogueCode('HR-LAB-ABORH'), loinc('883-9')], [typing], { context: 'crossmatch' });
    for (const o of [panel, abo]) {
      expect(o?.decision).toBe('reference-only');
      expect(o?.retestJustified).toBe(true);
      expect(o?.saving.value).toBe(0);
      expect(o?.path.find((s) => s.rule === 'item-context')?.en).toContain('never reused for crossmatch');
    }
  });

  test('a crossmatch context does not stop reuse of other items', () => {
    expect(one([loinc('57021-8')], [cbc], { context: 'crossmatch' }).decision).toBe('reusable');
  });
});

describe("the requester's own results and bad requests", () => {
  test("results of the requester's own hospital are not proposed as a recognition", () => {
    const own = fact('HR-LAB-CBC', 'demo-hospital-b', '2026-11-24T08:15:00+08:00');
    const o = one([loinc('57021-8')], [own]);
    expect(o.decision).toBe('none');
    expect(o.candidates).toEqual([]);
    expect(o.reason.en).toContain("a result of the requester's own institution (24 Nov 2026 08:15)");
  });

  test('an unknown requester, an unknown context or a patient without keys is refused', () => {
    const attempt = (request: Partial<ReuseRequest>) => () =>
      decideReuse(
        { patientKeys: [ZHANG], requester: 'demo-hospital-b', items: [loinc('57021-8')], ...request },
        [],
        rules.directory,
        rules.index,
        rules.matrix,
        NOW,
      );
    expect(attempt({ requester: 'nobody' })).toThrow(RecognitionInputError);
    expect(attempt({ requester: 'nobody' })).toThrow('Organization/nobody is not a participating institution');
    expect(attempt({ context: 'holiday' })).toThrow(/Context 'holiday' is not one of routine, emergency/);
    expect(attempt({ patientKeys: [] })).toThrow(RecognitionInputError);
  });
});

describe('saving at the price of the requester', () => {
  const catalogue: Catalogue = {
    ...rules.catalogue,
    items: rules.catalogue.items.map((i) =>
      i.code === 'HR-LAB-CBC' ? { ...i, prices: { default: 30, 二级: 25, 三级乙等: 28 } } : i,
    ),
  };
  const index = buildCodeIndex(catalogue, rules.localCodes);
  const cbc = fact('HR-LAB-CBC', 'demo-hospital-a', '2026-11-24T08:15:00+08:00');
  const saving = (requester: string) =>
    decideReuse(
      { patientKeys: [ZHANG], requester, items: [loinc('57021-8')] },
      [cbc],
      rules.directory,
      index,
      rules.matrix,
      NOW,
    )[0]?.saving.value;

  test('an exact level price wins, then the grade price, then the default', () => {
    expect(saving('demo-hospital-b')).toBe(28); // 三级乙等
    expect(saving('demo-hospital-e')).toBe(25); // 二级甲等 → grade 二级
    expect(saving('demo-hospital-c')).toBe(30); // 三级甲等 → default
  });
});

describe('end to end from FHIR resources', () => {
  const report = (status: DiagnosticReport['status']): DiagnosticReport => ({
    resourceType: 'DiagnosticReport',
    id: 'cbc-1',
    meta: { versionId: status === 'final' ? '1' : '2' },
    status,
    code: { coding: [{ system: SYSTEMS.loinc, code: '57021-8' }] },
    subject: { reference: 'Patient/zhang' },
    effectiveDateTime: '2026-11-24T08:15:00+08:00',
    issued: '2026-11-24T10:02:00+08:00',
    performer: [{ reference: 'Organization/demo-hospital-a' }],
  });
  const project = (r: DiagnosticReport) => projectFacts(r, { index: rules.index, resolvePatientKeys: () => [ZHANG] });
  const CBC: Coding = { system: SYSTEMS.loinc, code: '57021-8' };

  test('a CBC marked entered-in-error is no longer reusable', () => {
    const store = new Map<string, RecognitionFact[]>();
    const apply = (r: DiagnosticReport) => {
      const p = project(r);
      store.set(p.source, p.facts);
    };
    apply(report('final'));
    expect(one([{ coding: [CBC] }], [...store.values()].flat()).decision).toBe('reusable');
    apply(report('entered-in-error'));
    const o = one([{ coding: [CBC] }], [...store.values()].flat());
    expect(o.decision).toBe('none');
    expect(o.fact).toBeUndefined();
  });
});
