import { describe, expect, test } from 'vitest';
import { OperationOutcomeError } from '../../src/fhir/outcomes.js';
import { loadRecognitionRules } from '../../src/recognition/load.js';
import { savingsCsv } from '../../src/reports/csv.js';
import {
  federatedReport,
  reduceTally,
  tallyFromJson,
  tallyToJson,
  TALLY_DIMENSIONS,
  type RegionPart,
} from '../../src/reports/federated.js';
import { groupTally, type Dimension } from '../../src/reports/savings.js';
import { emptyCell, emptyTally, joinKey, type Cell, type LedgerTally } from '../../src/reports/rollups.js';

const rules = loadRecognitionRules('seed');
const NOW = new Date('2026-12-08T00:00:00Z');
const CITY = 'http://qingdao.example/fhir';
const DISTRICT = 'http://huangdao.example/fhir';

/** A tally of one institution and item in one month. */
function tally(organization: string, item: string, category: string, cell: Partial<Cell>, visits: number) {
  const t = emptyTally();
  t.cells.set(joinKey('2026-12', organization, category, item), { ...emptyCell(), ...cell });
  t.visits.set(joinKey('2026-12', organization), visits);
  t.categoryVisits.set(joinKey('2026-12', organization, category), visits);
  return t;
}

/** The province (this broker), its city and the city's district; the same institution id in the first two. */
function tree(tallies: { province: LedgerTally; city: LedgerTally; district?: LedgerTally }): RegionPart[] {
  return [
    {
      region: '370000',
      depth: 0,
      answered: true,
      tally: tallies.province,
      imports: [
        {
          from: DISTRICT,
          month: '2026-12',
          organization: 'demo-hospital-b',
          category: 'LAB',
          item: 'HR-LAB-CBC',
          accepted: 1,
          saving: 30,
        },
      ],
    },
    {
      region: '370200',
      broker: 'qingdao',
      name: '青岛市',
      base: CITY,
      parent: '370000',
      depth: 1,
      answered: true,
      tally: tallies.city,
      names: {
        organization: { 'demo-hospital-b': { zh: '青岛市立医院', en: 'Qingdao Municipal Hospital' } },
        category: {},
        item: {},
        reason: { 'city-only': { name: { zh: '本市理由', en: 'A city reason' }, countsAsDecline: true } },
      },
    },
    tallies.district
      ? {
          region: '370211',
          broker: 'huangdao',
          name: '黄岛区',
          base: DISTRICT,
          parent: '370200',
          depth: 2,
          answered: true,
          tally: tallies.district,
        }
      : {
          region: '370211',
          broker: 'huangdao',
          name: '黄岛区',
          base: DISTRICT,
          parent: '370200',
          depth: 2,
          answered: false,
          reason: 'no answer within 4600 ms',
        },
  ];
}

const province = tally(
  'demo-hospital-b',
  'HR-LAB-CBC',
  'LAB',
  { prompts: 2, offered: 2, accepted: 1, savingFen: 3000 },
  1,
);
const city = tally(
  'demo-hospital-b',
  'HR-LAB-CBC',
  'LAB',
  { prompts: 3, offered: 3, accepted: 2, declined: 1, reasons: { 'city-only': 1 }, savingFen: 6000 },
  2,
);

describe('the savings report over a federation', () => {
  test('the same institution id in two regions is two rows, each named by its own broker', () => {
    const parts = tree({ province, city, district: emptyTally() });
    const report = federatedReport(
      parts,
      rules,
      { from: '2026-12-01', to: '2026-12-31', by: ['organization'] },
      { minCell: 0 },
      NOW,
    );
    expect(report.rows.map((r) => [r.organization?.reference, r.organization?.name?.en, r.accepted])).toEqual([
      ['Organization/demo-hospital-b', rules.directory.byId.get('demo-hospital-b')!.name.en, 1],
      [`${CITY}/Organization/demo-hospital-b`, 'Qingdao Municipal Hospital', 2],
    ]);
    expect(report.totals).toMatchObject({ prompts: 5, accepted: 3, patients: 3, saving: 90, declined: 1 });
    // A reason only the city knows is named as the city names it.
    expect(report.declineReasons.find((r) => r.code === 'city-only')?.name.en).toBe('A city reason');
    expect(report.totals.declinedByReason['city-only']).toBe(1);
  });

  test('a region that did not answer is listed as missing, in JSON and as a CSV row, and left out of the sums', () => {
    const parts = tree({ province, city });
    const report = federatedReport(
      parts,
      rules,
      { from: '2026-12-01', to: '2026-12-31', by: ['region'] },
      { minCell: 0 },
      NOW,
    );
    expect(report.rows.map((r) => r.region?.code)).toEqual(['370000', '370200']);
    expect(report.federation!.missing).toEqual([
      {
        code: '370211',
        name: { zh: '黄岛区', en: '黄岛区' },
        broker: 'huangdao',
        parent: '370200',
        depth: 2,
        answered: false,
        reason: 'no answer within 4600 ms',
      },
    ]);
    const csv = savingsCsv(report, 'en').trim().split('\r\n');
    expect(csv.at(-1)).toBe('Region not answering: 黄岛区 (370211): no answer within 4600 ms');
    expect(csv.at(-2)).toMatch(/^Total,,5,5,0,3,0,3,1,/);
  });

  test('cross-region recognitions name the holder’s region, and follow the region filter both ways', () => {
    const parts = tree({ province, city, district: emptyTally() });
    const query = { from: '2026-12-01', to: '2026-12-31', by: ['item' as const] };
    const all = federatedReport(parts, rules, query, { minCell: 0 }, NOW).federation!.crossRegion;
    expect(all).toEqual([
      {
        from: { code: '370211', name: { zh: '黄岛区', en: '黄岛区' } },
        to: { code: '370000', name: { zh: '本级', en: 'This broker' } },
        item: expect.objectContaining({ code: 'HR-LAB-CBC' }),
        accepted: 1,
        saving: 30,
        suppressed: [],
      },
    ]);
    // The district exported it: shown with the district; the city neither imported nor exported it.
    expect(
      federatedReport(parts, rules, { ...query, region: '370211' }, { minCell: 0 }, NOW).federation!.crossRegion,
    ).toHaveLength(1);
    expect(
      federatedReport(parts, rules, { ...query, region: '370200' }, { minCell: 0 }, NOW).federation!.crossRegion,
    ).toEqual([]);
    // A small cell is hidden as in the rows.
    const hidden = federatedReport(parts, rules, query, { minCell: 3 }, NOW).federation!.crossRegion[0]!;
    expect(hidden).toMatchObject({ accepted: null, saving: null, suppressed: ['accepted', 'saving'] });
  });

  test('a region outside the tree is refused, naming region', () => {
    const parts = tree({ province, city });
    try {
      federatedReport(
        parts,
        rules,
        { from: '2026-12-01', to: '2026-12-31', by: [], region: '370600' },
        { minCell: 0 },
        NOW,
      );
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(OperationOutcomeError);
      expect((e as OperationOutcomeError).outcome.issue[0]!.expression).toEqual(['region']);
    }
  });
});

describe('tallies between brokers', () => {
  test('sent with only the dimensions a report needs, they group as the whole tally does', () => {
    const whole = emptyTally();
    const add = (month: string, org: string, category: string, item: string, accepted: number, visits: number) => {
      whole.cells.set(joinKey(month, org, category, item), {
        ...emptyCell(),
        prompts: accepted + 1,
        accepted,
        savingFen: accepted * 3000,
      });
      whole.visits.set(joinKey(month, org), (whole.visits.get(joinKey(month, org)) ?? 0) + visits);
      const ck = joinKey(month, org, category);
      whole.categoryVisits.set(ck, (whole.categoryVisits.get(ck) ?? 0) + visits);
    };
    add('2026-11', 'demo-hospital-a', 'lab-hematology', 'HR-LAB-CBC', 2, 2);
    add('2026-11', 'demo-hospital-b', 'lab-hematology', 'HR-LAB-CBC', 1, 1);
    add('2026-12', 'demo-hospital-a', 'imaging-ct', 'HR-IMG-CT-CHEST', 3, 2);
    add('2026-12', 'demo-hospital-a', 'lab-hematology', 'HR-LAB-ESR', 1, 0);
    const groupings: Dimension[][] = [
      [],
      ['month'],
      ['organization'],
      ['category'],
      ['item'],
      ['organization', 'month'],
    ];
    for (const by of groupings) {
      const reduced = reduceTally(
        whole,
        TALLY_DIMENSIONS.filter((d) => by.includes(d)),
      );
      expect(reduced.cells.size).toBeLessThanOrEqual(whole.cells.size);
      expect(groupTally(reduced, { by }), by.join(',') || 'totals').toEqual(groupTally(whole, { by }));
      // And they travel as well.
      expect(groupTally(tallyFromJson(JSON.parse(JSON.stringify(tallyToJson(reduced)))), { by })).toEqual(
        groupTally(whole, { by }),
      );
    }
    expect(reduceTally(whole, []).cells.size).toBe(1);
  });

  test('travel as numbers and come back the same', () => {
    expect(tallyFromJson(JSON.parse(JSON.stringify(tallyToJson(city))))).toEqual({ ...city, staff: new Map() });
  });

  test.each([
    ['a negative count', (j: ReturnType<typeof tallyToJson>) => void (j.cells[0]!.cell.accepted = -1)],
    ['a fractional count', (j: ReturnType<typeof tallyToJson>) => void (j.visits[0]!.n = 1.5)],
    ['a month that is no month', (j: ReturnType<typeof tallyToJson>) => void (j.cells[0]!.month = '2026-12-01')],
    ['an institution id with a slash', (j: ReturnType<typeof tallyToJson>) => void (j.cells[0]!.organization = 'a/b')],
    ['a missing list', (j: ReturnType<typeof tallyToJson>) => void delete (j as Partial<typeof j>).categoryVisits],
  ])('are refused with %s (the region counts as not answering)', (_name, spoil) => {
    const json = tallyToJson(city);
    spoil(json);
    expect(() => tallyFromJson(json)).toThrow(/malformed figures/);
  });
});
