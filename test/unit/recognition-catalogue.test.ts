import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import {
  buildCatalogueCodeSystem,
  buildCatalogueValueSet,
  buildCategoryCodeSystem,
  buildIdentifyingCodeConceptMap,
  buildLocalCodeConceptMap,
  lookupCoding,
  parseCatalogue,
  priceFor,
  resolveCodings,
  type CatalogueItem,
} from '../../src/recognition/catalogue.js';
import { buildDeclineReasonCodeSystem, findDeclineReason } from '../../src/recognition/decline-reasons.js';
import { SeedDataError } from '../../src/recognition/errors.js';
import { parseAcceptanceMatrix, qualificationAt, type Institution } from '../../src/recognition/institutions.js';
import { SEED_FILES, loadRecognitionRules, parseRecognitionData } from '../../src/recognition/load.js';
import {
  addDays,
  formatLocalDateTime,
  localDate,
  offsetMinutesAt,
  parseFhirDateTime,
  startOfLocalDay,
} from '../../src/recognition/time.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';

const SEED = fileURLToPath(new URL('../../seed', import.meta.url));
const rules = loadRecognitionRules(SEED);
const seedJson = () =>
  Object.fromEntries(
    Object.entries(SEED_FILES).map(([key, file]) => [key, JSON.parse(readFileSync(path.join(SEED, file), 'utf8'))]),
  ) as Record<keyof typeof SEED_FILES, Record<string, unknown>>;
const item = (code: string) => rules.index.items.get(code) as CatalogueItem;

/** The problems a broken document is refused with. */
function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (e) {
    if (e instanceof SeedDataError) return e.problems;
    throw e;
  }
  throw new Error('expected a SeedDataError');
}

describe('the seed catalogue', () => {
  test('holds every row of the domain table, with panels expanded to their analytes', () => {
    const orderable = rules.catalogue.items.filter((i) => i.kind !== 'analyte');
    expect(orderable).toHaveLength(42); // 38 rows; the 3 tumour-marker rows priced "each" give 7 items
    expect(item('HR-LAB-LFT').members).toEqual([
      'HR-LAB-TP',
      'HR-LAB-ALB',
      'HR-LAB-TBIL',
      'HR-LAB-DBIL',
      'HR-LAB-ALT',
      'HR-LAB-AST',
      'HR-LAB-ALP',
      'HR-LAB-GGT',
    ]);
    expect(rules.index.panelsOf.get('HR-LAB-HBSAG')).toEqual(['HR-LAB-HBV5', 'HR-LAB-PREOP4']);
  });

  test('the CBC carries its LOINC code, national price code, window and price', () => {
    expect(item('HR-LAB-CBC')).toMatchObject({
      name: { zh: '血常规(五分类)', en: 'CBC with 5-part differential' },
      category: 'lab-hematology',
      validityDays: 7,
      prices: { default: 30 },
      nationalPriceCode: '250101015',
      codes: [{ system: SYSTEMS.loinc, code: '57021-8', verified: true }],
    });
  });

  test('analytes keep the Hubei windows: ferritin 30 days in a 7-day iron panel', () => {
    expect([item('HR-LAB-IRON'), item('HR-LAB-FE'), item('HR-LAB-FERR')].map((i) => i.validityDays)).toEqual([
      7, 7, 30,
    ]);
    expect(item('HR-LAB-FERR').prices).toEqual({});
  });

  test('codes marked "?" in the table are kept but flagged unverified, and none is invented', () => {
    expect(item('HR-IMG-CT-CHEST').codes).toEqual([{ system: SYSTEMS.loinc, code: '29252-4', verified: false }]);
    expect(item('HR-LAB-HBEAB').codes[0]?.verified).toBe(false);
    expect(item('HR-IMG-CT-ABD').codes).toEqual([]);
    expect(item('HR-IMG-CT-ABD').imaging).toEqual({ modality: 'CT', bodyPart: 'ABDOMEN', method: 'plain' });
  });

  test('ABO/Rh typing is valid 365 days but never for a crossmatch', () => {
    for (const code of ['HR-LAB-ABORH', 'HR-LAB-ABO', 'HR-LAB-RHD']) {
      expect(item(code)).toMatchObject({ validityDays: 365, notReusableInContexts: ['crossmatch'] });
    }
  });
});

describe('a malformed catalogue is refused with every problem and where it is', () => {
  test('wrong types and unknown properties are reported with their JSON pointer', () => {
    const json = seedJson().catalogue as { items: Record<string, unknown>[] };
    json.items[0] = { ...json.items[0], validityDays: '7', colour: 'red' };
    const problems = problemsOf(() => parseCatalogue(json));
    expect(problems).toContain('/items/0/validityDays: must be integer');
    expect(problems).toContain("/items/0: unknown property 'colour'");
  });

  test('rules between items are checked: members, windows, duplicate codes, imaging keys, categories', () => {
    const json = seedJson().catalogue as { items: Record<string, unknown>[] };
    const byCode = (code: string) => json.items.find((i) => i.code === code) as Record<string, unknown>;
    byCode('HR-LAB-LFT').members = ['HR-LAB-TP', 'HR-LAB-NOPE'];
    byCode('HR-LAB-IRON').validityDays = 14;
    byCode('HR-LAB-ESR').codes = [{ system: SYSTEMS.loinc, code: '57021-8', verified: true }];
    delete byCode('HR-IMG-US-ABD').imaging;
    byCode('HR-LAB-CRP').category = 'lab-astrology';
    byCode('HR-LAB-CBC').prices = { default: 30.123 };
    const problems = problemsOf(() => parseCatalogue(json, 'seed/catalogue.json'));
    expect(problems).toEqual(
      expect.arrayContaining([
        'items[3] (HR-LAB-ESR): code http://loinc.org|57021-8 already identifies HR-LAB-CBC',
        'items[0] (HR-LAB-CBC).prices.default: 30.123 has more than 2 decimals (fen)',
        expect.stringMatching(/\(HR-LAB-LFT\)\.members: 'HR-LAB-NOPE' is not an item/),
        expect.stringMatching(/\(HR-LAB-IRON\): window 14 days outlasts member HR-LAB-FE \(7 days\)/),
        expect.stringMatching(/\(HR-IMG-US-ABD\): an exam item needs an imaging key/),
        expect.stringMatching(/\(HR-LAB-CRP\): category 'lab-astrology' is not in categories/),
        expect.stringMatching(/\(HR-LAB-DBIL\): an analyte belongs to at least one panel/),
      ]),
    );
  });

  test('the loader names the file that cannot be read or parsed', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'huren-seed-'));
    try {
      for (const file of Object.values(SEED_FILES)) {
        writeFileSync(path.join(dir, file), readFileSync(path.join(SEED, file)));
      }
      writeFileSync(path.join(dir, 'institutions.json'), '{ "region": ');
      expect(() => loadRecognitionRules(dir)).toThrow(`${path.join(dir, 'institutions.json')} is not usable`);
      expect(() => loadRecognitionRules(dir)).toThrow(/is not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('files are checked against each other', () => {
    const json = seedJson();
    const institutions = json.institutions as { institutions: { qualifications: { category: string }[] }[] };
    (institutions.institutions[0]?.qualifications[0] as { category: string }).category = 'lab-genomics';
    expect(problemsOf(() => parseRecognitionData(json))).toEqual([
      "institutions[0] (demo-hospital-a).qualifications[0]: category 'lab-genomics' is not a catalogue category",
    ]);

    const json2 = seedJson();
    (json2.localCodes as { maps: { institution: string }[] }).maps[0]!.institution = 'demo-hospital-z';
    expect(problemsOf(() => parseRecognitionData(json2))).toEqual([
      "maps[0] (demo-hospital-z): institution 'demo-hospital-z' is not in institutions",
    ]);

    const json3 = seedJson();
    (json3.declineReasons as { reasons: { code: string }[] }).reasons = [
      {
        code: 'other',
        display: { zh: '其他', en: 'Other' },
        source: 'national',
        countsAsDecline: true,
        requiresText: true,
      },
    ] as never;
    expect(problemsOf(() => parseRecognitionData(json3))).toEqual([
      "context 'emergency': decline reason 'emergency' is not in decline-reasons.json",
      "context 'pre-surgery': decline reason 'key-time-point' is not in decline-reasons.json",
      "context 'crossmatch': decline reason 'key-time-point' is not in decline-reasons.json",
    ]);
  });

  test('an acceptance matrix with an explicit policy must say who accepts whom', () => {
    expect(
      problemsOf(() =>
        parseAcceptanceMatrix({
          default: { policy: 'explicit', allianceMembersAccept: true },
          regions: [{ region: '370200', policy: 'all', allianceMembersAccept: true, accepts: { 一级: ['二级'] } }],
        }),
      ),
    ).toEqual([
      "default: policy 'explicit' needs 'accepts'",
      "regions[0] (370200): 'accepts' is only read with policy 'explicit', not 'all'",
    ]);
  });
});

describe('code index', () => {
  test('LOINC, the national price code and the catalogue code all find the CBC', () => {
    for (const coding of [
      { system: SYSTEMS.loinc, code: '57021-8' },
      { system: SYSTEMS.nationalPriceCode, code: '250101015' },
      { system: SYSTEMS.catalogue, code: 'HR-LAB-CBC' },
      { system: ` ${SYSTEMS.loinc}`, code: '57021-8 ' },
    ]) {
      expect(lookupCoding(rules.index, coding).map((m) => m.item)).toEqual(['HR-LAB-CBC']);
    }
  });

  test('a panel code finds the panel and an analyte code the analyte', () => {
    expect(lookupCoding(rules.index, { system: SYSTEMS.loinc, code: '57698-3' }).map((m) => m.item)).toEqual([
      'HR-LAB-LIPID4',
    ]);
    expect(lookupCoding(rules.index, { system: SYSTEMS.loinc, code: '2093-3' }).map((m) => m.item)).toEqual([
      'HR-LAB-TC',
    ]);
  });

  test('local codes resolve for their own institution only', () => {
    const local = { system: 'https://demo-hospital-b.example.org/fhir/CodeSystem/his-order', code: 'GSGN' };
    expect(lookupCoding(rules.index, local, 'demo-hospital-b').map((m) => [m.item, m.via])).toEqual([
      ['HR-LAB-LFT', 'local'],
      ['HR-LAB-RFT', 'local'],
    ]);
    expect(lookupCoding(rules.index, local, 'demo-hospital-a')).toEqual([]);
    expect(lookupCoding(rules.index, local)).toEqual([]);
  });

  test('imaging facets resolve by modality, body part and method', () => {
    const r = resolveCodings(rules.index, [
      { system: SYSTEMS.dicom, code: 'mr' },
      { system: SYSTEMS.bodyPart, code: 'LSPINE' },
      { system: SYSTEMS.imagingMethod, code: 'plain' },
    ]);
    expect(r.matches.map((m) => [m.item, m.imagingKey])).toEqual([['HR-IMG-MR-LSPINE', 'MR|LSPINE|plain']]);
  });
});

describe('prices per institution level', () => {
  test('the seeded list price applies to every level; an analyte alone has none', () => {
    expect(priceFor(item('HR-IMG-MR-HEAD'), '社区')).toEqual({ amount: 421.2, key: 'default' });
    expect(priceFor(item('HR-LAB-ALT'), '三级甲等')).toEqual({ amount: 0 });
  });

  test('an exact level price wins over a grade price, which wins over the default', () => {
    const cbc = { ...item('HR-LAB-CBC'), prices: { default: 30, 三级: 32, 三级甲等: 35 } };
    expect(priceFor(cbc, '三级甲等')).toEqual({ amount: 35, key: '三级甲等' });
    expect(priceFor(cbc, '三级乙等')).toEqual({ amount: 32, key: '三级' });
    expect(priceFor(cbc, '二级')).toEqual({ amount: 30, key: 'default' });
  });
});

describe('seeded institutions and decline reasons', () => {
  const inst = (id: string) => rules.directory.byId.get(id) as Institution;

  test('a dozen Qingdao institutions of every level, two alliances, the demo hospitals A and B', () => {
    expect(rules.directory.byId.size).toBe(12);
    expect(new Set(rules.institutions.institutions.map((i) => i.level))).toEqual(
      new Set(['三级甲等', '三级乙等', '二级甲等', '二级', '一级', '社区']),
    );
    expect(rules.institutions.institutions.every((i) => i.district.code.startsWith('3702'))).toBe(true);
    expect(rules.directory.alliances.size).toBe(2);
    expect(inst('demo-hospital-a').level).toBe('三级甲等');
    expect(inst('demo-hospital-b').level).toBe('三级乙等');
  });

  test("hospital A's CT qualification lapsed; hospital D failed chemistry quality control", () => {
    expect(qualificationAt(inst('demo-hospital-a'), 'imaging-ct', '2026-11-25').status).toBe('lapsed');
    expect(qualificationAt(inst('demo-hospital-a'), 'imaging-ct', '2025-06-30').status).toBe('valid');
    expect(qualificationAt(inst('demo-hospital-d'), 'lab-chemistry', '2026-09-15').status).toBe('failed-qc');
    expect(qualificationAt(inst('demo-hospital-d'), 'lab-chemistry', '2026-09-14').status).toBe('valid');
    expect(qualificationAt(inst('demo-chc-huangdao'), 'lab-hematology', '2026-11-25').status).toBe('none');
  });

  test('images not received and serial monitoring are recorded but not counted as declines', () => {
    const reasons = rules.declineReasons;
    expect(reasons.reasons.filter((r) => !r.countsAsDecline).map((r) => r.code)).toEqual([
      'images-not-received',
      'serial-monitoring',
    ]);
    expect(reasons.reasons.filter((r) => r.source === 'national')).toHaveLength(6);
    expect(findDeclineReason(reasons, 'other')?.requiresText).toBe(true);
    const cs = buildDeclineReasonCodeSystem(reasons);
    const serial = cs.concept?.find((c) => c.code === 'serial-monitoring');
    expect(serial?.property).toContainEqual({ code: 'counts-as-decline', valueBoolean: false });
  });
});

describe('publishing the catalogue as FHIR terminology', () => {
  test('a CodeSystem with one concept per item, Chinese display, English designation and the rules', () => {
    const cs = buildCatalogueCodeSystem(rules.catalogue);
    expect(cs).toMatchObject({ resourceType: 'CodeSystem', url: SYSTEMS.catalogue, content: 'complete' });
    expect(cs.count).toBe(rules.catalogue.items.length);
    const alt = cs.concept?.find((c) => c.code === 'HR-LAB-ALT');
    expect(alt?.display).toBe('丙氨酸氨基转移酶');
    expect(alt?.designation?.[0]?.value).toBe('Alanine aminotransferase (ALT)');
    expect(alt?.property).toEqual(
      expect.arrayContaining([
        { code: 'validity-days', valueInteger: 30 },
        { code: 'panel', valueCode: 'HR-LAB-LFT' },
        { code: 'identifying-code', valueCoding: { system: SYSTEMS.loinc, code: '1742-6' } },
      ]),
    );
    const ct = cs.concept?.find((c) => c.code === 'HR-IMG-CT-CHEST');
    expect(ct?.property).toContainEqual({
      code: 'unverified-code',
      valueCoding: { system: SYSTEMS.loinc, code: '29252-4' },
    });
    expect(ct?.property).toContainEqual({ code: 'price', valueString: 'default=207.00 CNY' });
    const declared = new Set(cs.property?.map((p) => p.code));
    for (const c of cs.concept ?? []) for (const p of c.property ?? []) expect(declared).toContain(p.code);
    expect(buildCategoryCodeSystem(rules.catalogue).count).toBe(16);
  });

  test('a ValueSet of all items and one per category', () => {
    expect(buildCatalogueValueSet(rules.catalogue).compose?.include).toEqual([
      { system: SYSTEMS.catalogue, version: rules.catalogue.version },
    ]);
    expect(buildCatalogueValueSet(rules.catalogue, 'imaging-ct').compose?.include[0]?.filter).toEqual([
      { property: 'category', op: '=', value: 'imaging-ct' },
    ]);
  });

  test("a ConceptMap of hospital B's local codes; an order set maps to narrower items", () => {
    const map = rules.localCodes.find((m) => m.institution === 'demo-hospital-b');
    const cm = buildLocalCodeConceptMap(rules.catalogue, map!);
    expect(cm.url).toBe('https://huren.example.org/fhir/ConceptMap/local-codes-demo-hospital-b');
    const group = cm.group?.[0];
    expect(group?.source).toBe('https://demo-hospital-b.example.org/fhir/CodeSystem/his-order');
    expect(group?.element.find((e) => e.code === 'XCG')?.target).toEqual([
      { code: 'HR-LAB-CBC', display: '血常规(五分类)', equivalence: 'equivalent' },
    ]);
    expect(group?.element.find((e) => e.code === 'GSGN')?.target?.map((t) => [t.code, t.equivalence])).toEqual([
      ['HR-LAB-LFT', 'narrower'],
      ['HR-LAB-RFT', 'narrower'],
    ]);
  });

  test('a ConceptMap of LOINC and price codes; unverified codes are only related, with a comment', () => {
    const cm = buildIdentifyingCodeConceptMap(rules.catalogue);
    const loinc = cm.group?.find((g) => g.source === SYSTEMS.loinc);
    expect(loinc?.element.find((e) => e.code === '29252-4')?.target?.[0]).toMatchObject({
      code: 'HR-IMG-CT-CHEST',
      equivalence: 'relatedto',
    });
    expect(cm.group?.find((g) => g.source === SYSTEMS.nationalPriceCode)?.element).toEqual([
      { code: '250101015', target: [{ code: 'HR-LAB-CBC', display: '血常规(五分类)', equivalence: 'equivalent' }] },
    ]);
  });
});

describe('local days in Asia/Shanghai', () => {
  test('an instant belongs to its Beijing-time day', () => {
    expect(localDate(Date.parse('2026-11-17T16:30:00Z'), 'Asia/Shanghai')).toBe('2026-11-18');
    expect(localDate(Date.parse('2026-11-17T15:59:59Z'), 'Asia/Shanghai')).toBe('2026-11-17');
    expect(localDate(Date.parse('2026-11-17T16:30:00Z'), '+08:00')).toBe('2026-11-18');
  });

  test('day arithmetic crosses months, years and leap days', () => {
    expect(addDays('2026-12-28', 7)).toBe('2027-01-04');
    expect(addDays('2028-02-27', 2)).toBe('2028-02-29');
    expect(formatLocalDateTime(startOfLocalDay('2026-11-25', 'Asia/Shanghai') - 1000, 'Asia/Shanghai')).toBe(
      '2026-11-24T23:59:59+08:00',
    );
  });

  test('an offset that changes in the middle of a UTC hour is right on both sides of the change', () => {
    // Lord Howe Island moves from +10:30 to +11:00 at 02:00 local on 2026-10-04, i.e. 15:30 UTC: offsets are cached
    // per hour, and this hour has two. The hours around it have one each.
    const at = (iso: string) => offsetMinutesAt(Date.parse(iso), 'Australia/Lord_Howe');
    expect(at('2026-10-03T15:00:00Z')).toBe(630);
    expect(at('2026-10-03T15:29:59Z')).toBe(630);
    expect(at('2026-10-03T15:30:00Z')).toBe(660);
    expect(at('2026-10-03T15:59:59Z')).toBe(660);
    expect(at('2026-10-03T14:59:59Z')).toBe(630);
    expect(at('2026-10-03T16:00:00Z')).toBe(660);
    expect(localDate(Date.parse('2026-10-03T13:00:00Z'), 'Australia/Lord_Howe')).toBe('2026-10-03');
    expect(localDate(Date.parse('2026-10-03T13:30:00Z'), 'Australia/Lord_Howe')).toBe('2026-10-04');
  });

  test('impossible or imprecise FHIR dates give no instant', () => {
    expect(parseFhirDateTime('2026-02-30', 'Asia/Shanghai')).toBeUndefined();
    expect(parseFhirDateTime('2026', 'Asia/Shanghai')).toBeUndefined();
    expect(parseFhirDateTime('2026-11-24T25:00:00+08:00', 'Asia/Shanghai')).toBeUndefined();
    expect(parseFhirDateTime('2026-11-24T08:15:00.5-05:00', 'Asia/Shanghai')).toMatchObject({
      ms: Date.parse('2026-11-24T13:15:00.500Z'),
      localDate: '2026-11-24',
    });
  });
});
