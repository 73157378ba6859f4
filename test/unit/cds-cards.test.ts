import { describe, expect, test } from 'vitest';
import { ageText, languageOf, MAX_SUMMARY, resultCard, unmappedCard } from '../../src/cds/cards.js';
import type { CatalogueItem } from '../../src/recognition/catalogue.js';
import type { ReuseOutcome } from '../../src/recognition/engine.js';
import type { RecognitionFact } from '../../src/recognition/facts.js';

const TZ = 'Asia/Shanghai';
const NOW = new Date('2026-03-10T04:00:00Z'); // 12:00 in Shanghai

describe('languageOf', () => {
  test('Chinese by default, English when the doctor prefers it', () => {
    expect(languageOf(undefined)).toBe('zh');
    expect(languageOf('en-US,en;q=0.9')).toBe('en');
    expect(languageOf('zh-CN,zh;q=0.9,en;q=0.8')).toBe('zh');
    expect(languageOf('fr-FR, en;q=0.5')).toBe('en');
    expect(languageOf('en;q=0.2, zh;q=0.8')).toBe('zh');
    expect(languageOf('fr', 'en')).toBe('en');
  });
});

describe('ageText', () => {
  test('hours within the first day, then local calendar days', () => {
    expect(ageText(NOW.getTime() - 3 * 3600_000, NOW, TZ, 'zh')).toBe('3小时前');
    expect(ageText(NOW.getTime() - 1 * 3600_000, NOW, TZ, 'en')).toBe('1 hour ago');
    // 2026-03-08 23:30 Shanghai is two calendar days before 2026-03-10.
    expect(ageText(Date.parse('2026-03-08T15:30:00Z'), NOW, TZ, 'zh')).toBe('2天前');
    expect(ageText(Date.parse('2026-03-09T01:00:00Z'), NOW, TZ, 'en')).toBe('1 day ago');
  });
});

const item: CatalogueItem = {
  code: 'HR-LAB-CBC',
  kind: 'single',
  name: { zh: '血常规(五分类)', en: 'CBC with 5-part differential' },
  category: 'lab-hematology',
  validityDays: 7,
  prices: { default: 30 },
  scope: 'provincial',
  codes: [],
};

const fact = {
  source: 'DiagnosticReport/r1',
  effective: '2026-03-08T00:30:00.000Z',
  effectiveDay: '2026-03-08',
} as RecognitionFact;

const outcome = (decision: 'reusable' | 'reference-only'): ReuseOutcome =>
  ({
    requestIndex: 0,
    requested: [],
    item: { code: 'HR-LAB-CBC' },
    decision,
    fact,
    facts: [fact],
    performer: 'far-away',
    lastValidDay: '2026-03-15',
    saving: { value: decision === 'reusable' ? 30 : 0, currency: 'CNY' },
    retestJustified: false,
    reason: { zh: '理由', en: 'why' },
    summary: { zh: '一句话', en: 'one sentence' },
    path: [],
    candidates: [],
  }) as ReuseOutcome;

const input = (decision: 'reusable' | 'reference-only', performerName: string) => ({
  outcome: outcome(decision),
  item,
  performer: {
    id: 'far-away',
    name: { zh: performerName, en: performerName },
    level: '三级甲等' as const,
    district: { code: '370202', name: { zh: '市南区', en: 'Shinan' } },
    alliances: [],
    qualifications: [],
  },
  observations: [],
  check: 'c1',
  order: 'ServiceRequest/o1',
  cardUuid: 'u1',
  suggestionUuid: 's1',
  origin: 'https://huren.example.org',
  reasons: [],
  lang: 'zh' as const,
  now: NOW,
  timeZone: TZ,
});

describe('resultCard', () => {
  test('a summary never reaches 140 characters, however long the institution name', () => {
    const card = resultCard(input('reusable', '某某省某某市某某区人民医院'.repeat(12)));
    expect(card.summary.length).toBeLessThanOrEqual(MAX_SUMMARY);
    expect(card.summary.endsWith('…')).toBe(true);
  });

  test('reusable: info, recommended; reference-only: warning, with nothing to accept or decline', () => {
    const r = resultCard(input('reusable', '医院A'));
    expect(r.summary).toBe('可互认：血常规(五分类)，医院A，2天前，有效至2026-03-15');
    expect(r.indicator).toBe('info');
    expect(r.suggestions?.[0]?.isRecommended).toBe(true);
    const w = resultCard(input('reference-only', '医院A'));
    expect(w.indicator).toBe('warning');
    expect(w.summary).toBe('仅供参考：血常规(五分类)，医院A，2天前');
    // No suggestion to delete the order, no override reasons: dismissing it is not a decline.
    expect(w.suggestions).toBeUndefined();
    expect(w.selectionBehavior).toBeUndefined();
    expect(w.overrideReasons).toBeUndefined();
  });
});

describe('card detail', () => {
  test('flags read as words and dates in one format per language, the level in English', () => {
    const wbc = {
      resourceType: 'Observation' as const,
      status: 'final' as const,
      code: { text: '白细胞计数' },
      valueQuantity: { value: 31.2, unit: '10^9/L' },
      interpretation: [{ coding: [{ code: 'HH' }] }],
    };
    const zh = resultCard({ ...input('reusable', '医院A'), observations: [wbc] });
    expect(zh.detail).toContain('| 白细胞计数 | 31.2 ↑危急高值 | 10^9/L |');
    expect(zh.detail).toContain('有效至: 2026-03-15');
    const en = resultCard({ ...input('reusable', 'Hospital A'), observations: [wbc], lang: 'en' as const });
    expect(en.detail).toContain('| 31.2 ↑critical high |');
    expect(en.detail).toContain('Valid until: 15 Mar 2026');
    expect(en.detail).toContain('Hospital A (tertiary grade A)');
    expect(en.summary).toContain('valid until 15 Mar 2026');
  });
});

describe('unmappedCard', () => {
  test('names each code Huren could not map', () => {
    const card = unmappedCard([[{ system: 'urn:x', code: 'Q1', display: '某检查' }]], 'en');
    expect(card.summary).toBe('1 order not checked for reuse: the code is not in the catalogue or the local code map');
    expect(card.detail).toContain('- 某检查 Q1 (urn:x)');
  });
});
