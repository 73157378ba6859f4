/**
 * CDS Hooks cards for the outcomes of a reuse check (pure: no database, no clock of its own). One card per outcome
 * with a prior result: `info` when it is reusable, `warning` when it is for reference only; one informative card
 * for order codes Huren cannot map. Texts in the doctor's language (zh-CN or en).
 */
import type { Coding, Observation } from 'fhir/r4';
import type { CatalogueItem } from '../recognition/catalogue.js';
import { DECLINE_REASON_SYSTEM, type DeclineReason } from '../recognition/decline-reasons.js';
import type { ReuseOutcome } from '../recognition/engine.js';
import type { Institution } from '../recognition/institutions.js';
import { englishDate, formatLocalMinute, localDate } from '../recognition/time.js';
import { HR_SCOPE_NAMES, LEVEL_EN, SYSTEMS, type Bilingual } from '../recognition/vocabulary.js';

export { languageOf, type Language } from '../recognition/language.js';
import type { Language } from '../recognition/language.js';

export interface Action {
  type: 'create' | 'update' | 'delete';
  description: string;
  resourceId?: string;
}

export interface Suggestion {
  label: string;
  uuid: string;
  isRecommended: boolean;
  actions?: Action[];
}

export interface Link {
  label: string;
  url: string;
  type: 'absolute' | 'smart';
  appContext?: string;
}

export interface Card {
  uuid?: string;
  summary: string;
  detail?: string;
  indicator: 'info' | 'warning' | 'critical';
  source: { label: string; url?: string; topic?: Coding };
  suggestions?: Suggestion[];
  selectionBehavior?: 'at-most-one' | 'any';
  overrideReasons?: Coding[];
  links?: Link[];
}

/** The summary must stay under 140 characters (CDS Hooks 2.0, Card.summary). */
export const MAX_SUMMARY = 139;

const text = (b: Bilingual, lang: Language) => (lang === 'zh' ? b.zh : b.en);

function clip(s: string): string {
  return s.length <= MAX_SUMMARY ? s : `${s.slice(0, MAX_SUMMARY - 1)}…`;
}

function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86400_000);
}

/** How old the result is: hours within the first day, then local calendar days. */
export function ageText(effectiveMs: number, now: Date, timeZone: string, lang: Language): string {
  const hours = Math.floor((now.getTime() - effectiveMs) / 3600_000);
  if (hours < 24) {
    const h = Math.max(hours, 0);
    return lang === 'zh' ? `${h}小时前` : `${h} hour${h === 1 ? '' : 's'} ago`;
  }
  const days = daysBetween(localDate(effectiveMs, timeZone), localDate(now.getTime(), timeZone));
  return lang === 'zh' ? `${days}天前` : `${days} day${days === 1 ? '' : 's'} ago`;
}

/** Everything a result card shows besides the outcome itself. */
export interface CardInput {
  outcome: ReuseOutcome;
  item: CatalogueItem;
  performer?: Institution;
  /** The result's Observations, in report order. */
  observations: Observation[];
  check: string;
  /** `ServiceRequest/<id>` of the draft order the card is about, when it has an id. */
  order?: string;
  cardUuid: string;
  suggestionUuid: string;
  /** Broker origin, for the prior-results view (`<origin>/app?check=…&item=…`). */
  origin: string;
  reasons: readonly DeclineReason[];
  lang: Language;
  now: Date;
  timeZone: string;
  /** The patient's records disagree (identityCard): reusing is not recommended until the doctor has checked. */
  identityConflict?: boolean;
}

export function resultCard(c: CardInput): Card {
  const { outcome: o, item, lang } = c;
  const reusable = o.decision === 'reusable';
  const name = text(item.name, lang);
  const where = c.performer ? text(c.performer.name, lang) : (o.performer ?? '?');
  const effectiveMs = o.fact ? Date.parse(o.fact.effective) : c.now.getTime();
  const age = ageText(effectiveMs, c.now, c.timeZone, lang);
  const until = o.lastValidDay ?? o.validUntil?.slice(0, 10) ?? '';
  const summary =
    lang === 'zh'
      ? `${reusable ? '可互认' : '仅供参考'}：${name}，${where}，${age}${reusable ? `，有效至${until}` : ''}`
      : `${reusable ? 'Reusable' : 'For reference only'}: ${name} from ${where}, ${age}${reusable ? `, valid until ${englishDate(until)}` : ''}`;
  const appContext = JSON.stringify({ check: c.check, item: item.code, ...(o.fact ? { result: o.fact.source } : {}) });
  const url = `${c.origin}/app?check=${encodeURIComponent(c.check)}&item=${encodeURIComponent(item.code)}`;
  return {
    uuid: c.cardUuid,
    summary: clip(summary),
    detail: detailOf(c),
    indicator: reusable ? 'info' : 'warning',
    source: {
      label: lang === 'zh' ? 'Huren 检查检验结果互认' : 'Huren mutual recognition of results',
      topic: { system: SYSTEMS.catalogue, code: item.code, display: name },
    },
    // A reference-only result is not recognised: nothing to suggest (no delete of the order), no decline to give —
    // dismissing the card is not a decline (feedback.ts).
    ...(reusable
      ? {
          suggestions: [
            {
              label:
                lang === 'zh'
                  ? `采用${where}的既往结果，撤销本次医嘱`
                  : `Reuse the prior result from ${where} and remove this order`,
              uuid: c.suggestionUuid,
              isRecommended: !c.identityConflict,
              ...(c.order
                ? {
                    actions: [
                      {
                        type: 'delete' as const,
                        description: lang === 'zh' ? `撤销医嘱：${name}` : `Remove the draft order: ${name}`,
                        resourceId: c.order,
                      },
                    ],
                  }
                : {}),
            },
          ],
          selectionBehavior: 'at-most-one' as const,
          // "Other (explain)" last.
          overrideReasons: [...c.reasons]
            .sort((a, b) => Number(a.requiresText) - Number(b.requiresText))
            .map((r) => ({ system: DECLINE_REASON_SYSTEM, code: r.code, display: text(r.display, lang) })),
        }
      : {}),
    links: [
      {
        label: lang === 'zh' ? '查看既往结果' : 'View the prior result',
        url,
        type: 'smart',
        appContext,
      },
    ],
  };
}

/** Markdown table cells may not contain pipes or line breaks. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').trim();
}

function codeText(o: Observation): string {
  return o.code?.text ?? o.code?.coding?.find((x) => x.display)?.display ?? o.code?.coding?.[0]?.code ?? '?';
}

function valueText(o: Observation): string {
  if (o.valueQuantity?.value !== undefined) {
    const q = o.valueQuantity;
    return `${q.comparator ?? ''}${q.value}`;
  }
  if (o.valueString !== undefined) return o.valueString;
  if (o.valueCodeableConcept) {
    return o.valueCodeableConcept.text ?? o.valueCodeableConcept.coding?.[0]?.display ?? '';
  }
  if (o.valueBoolean !== undefined) return String(o.valueBoolean);
  if (o.valueInteger !== undefined) return String(o.valueInteger);
  return '';
}

function rangeText(o: Observation): string {
  const r = o.referenceRange?.[0];
  if (!r) return '';
  if (r.low?.value !== undefined || r.high?.value !== undefined) {
    return `${r.low?.value ?? ''}–${r.high?.value ?? ''}`;
  }
  return r.text ?? '';
}

/** HL7 v3 ObservationInterpretation flags in words (colour alone does not survive an EHR's card rendering). */
const FLAG_WORDS: Record<string, Bilingual> = {
  H: { zh: '↑偏高', en: '↑high' },
  L: { zh: '↓偏低', en: '↓low' },
  HH: { zh: '↑危急高值', en: '↑critical high' },
  LL: { zh: '↓危急低值', en: '↓critical low' },
  AA: { zh: '危急', en: 'critical' },
  A: { zh: '异常', en: 'abnormal' },
};

function flagOf(o: Observation, lang: Language): string {
  const code = o.interpretation?.[0]?.coding?.[0]?.code;
  if (!code || code === 'N') return '';
  return ` ${FLAG_WORDS[code] ? text(FLAG_WORDS[code], lang) : code}`;
}

function detailOf(c: CardInput): string {
  const { outcome: o, item, lang } = c;
  const zh = lang === 'zh';
  // One date format per language: 2026-12-06 09:30 / 6 Dec 2026 09:30.
  const dateIn = (local: string) => (zh ? local : englishDate(local));
  const name = text(item.name, lang);
  const scope = HR_SCOPE_NAMES[o.fact?.hrMark ?? item.scope];
  const lines = [
    `**${name}** — ${c.performer ? `${text(c.performer.name, lang)}${zh ? `（${c.performer.level}）` : ` (${LEVEL_EN[c.performer.level]})`}` : (o.performer ?? '')}`,
    '',
    `- ${zh ? '检查/采样时间' : 'Performed or collected'}: ${o.fact ? dateIn(formatLocalMinute(Date.parse(o.fact.effective), c.timeZone)) : '?'}`,
  ];
  if (o.lastValidDay) lines.push(`- ${zh ? '有效至' : 'Valid until'}: ${dateIn(o.lastValidDay)}`);
  lines.push(`- ${zh ? '互认范围' : 'Recognition scope'}: ${text(scope, lang)}`);
  if (o.decision === 'reusable' && o.saving.value > 0) {
    lines.push(`- ${zh ? '可节省' : 'Saving'}: ¥${o.saving.value}`);
  }
  lines.push(`- ${zh ? '判断' : 'Why'}: ${text(o.summary, lang)}`);
  if (c.observations.length > 0) {
    lines.push(
      '',
      zh ? '| 项目 | 结果 | 单位 | 参考范围 |' : '| Test | Result | Unit | Reference range |',
      '|---|---|---|---|',
    );
    for (const obs of c.observations) {
      const unit = obs.valueQuantity?.unit ?? obs.valueQuantity?.code ?? '';
      lines.push(
        `| ${cell(codeText(obs))} | ${cell(valueText(obs) + flagOf(obs, lang))} | ${cell(unit)} | ${cell(rangeText(obs))} |`,
      );
    }
  }
  if (
    item.category.startsWith('imaging') ||
    item.category === 'electrophysiology' ||
    item.category === 'nuclear-medicine'
  ) {
    lines.push(
      '',
      zh
        ? '_互认的是影像与检查数据；既往医师的诊断结论不作为互认内容。_'
        : "_Images and data are recognised; the previous doctor's diagnostic conclusion is not._",
    );
  }
  return lines.join('\n');
}

/** One informative card for order codes Huren cannot map to a recognised item (no check was possible for them). */
/** The federated brokers did not all answer in time: the doctor sees that results of other regions may be missing. */
export function federationCard(note: Bilingual, lang: Language): Card {
  return {
    summary: clip(
      lang === 'zh'
        ? '部分互认平台未应答：可能缺少其他地区的结果'
        : 'Some federated brokers did not answer: results of other regions may be missing',
    ),
    detail: note[lang],
    indicator: 'info',
    source: { label: lang === 'zh' ? 'Huren 检查检验结果互认' : 'Huren mutual recognition of results' },
  };
}

export function unmappedCard(codings: Coding[][], lang: Language): Card {
  const list = codings
    .map((cs) =>
      cs
        .map((x) => `${x.display ? `${x.display} ` : ''}${x.code ?? '?'}${x.system ? ` (${x.system})` : ''}`)
        .join(' / '),
    )
    .map((s) => `- ${s}`);
  const n = codings.length;
  return {
    summary: clip(
      lang === 'zh'
        ? `${n}项医嘱的编码不在互认目录或本院编码对照中，未做互认检查`
        : `${n} order${n === 1 ? '' : 's'} not checked for reuse: the code is not in the catalogue or the local code map`,
    ),
    detail: [
      lang === 'zh'
        ? '以下医嘱编码无法对应到互认目录项目，请核对本院编码对照（ConceptMap）：'
        : 'These order codes map to no item of the recognition catalogue; check the local code map (ConceptMap):',
      '',
      ...list,
    ].join('\n'),
    indicator: 'info',
    source: { label: lang === 'zh' ? 'Huren 检查检验结果互认' : 'Huren mutual recognition of results' },
  };
}

/**
 * A warning card when the institutions' records of the patient (or the ID number itself) disagree on sex or birth
 * date: the identifier may be mistyped or shared, and no result should be reused before the doctor has checked.
 */
export function identityCard(conflicts: string[], lang: Language): Card {
  return {
    summary:
      lang === 'zh'
        ? '患者身份信息在各机构间不一致，互认前请核实身份'
        : 'Institutions disagree about this patient: verify the identity before reusing a result',
    detail: [
      lang === 'zh'
        ? '同一证件号在以下记录中的性别或出生日期不一致，可能是证件号录入错误或他人证件：'
        : 'Records with this identifier disagree on sex or birth date; the number may be mistyped or shared:',
      '',
      ...conflicts.map((c) => `- ${c}`),
    ].join('\n'),
    indicator: 'warning',
    source: { label: lang === 'zh' ? 'Huren 检查检验结果互认' : 'Huren mutual recognition of results' },
  };
}

/** An informative card when the patient carries no identifier Huren links patients on. */
export function noIdentifierCard(lang: Language): Card {
  return {
    summary:
      lang === 'zh'
        ? '患者无身份证、电子健康卡或医保码，无法查询他院结果'
        : 'No resident ID, e-health card or insurance code: other hospitals’ results cannot be looked up',
    indicator: 'info',
    source: { label: lang === 'zh' ? 'Huren 检查检验结果互认' : 'Huren mutual recognition of results' },
  };
}
