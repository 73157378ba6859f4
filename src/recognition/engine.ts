/**
 * The decision engine of `$reuse-check`: pure, with `now` passed in. For each requested item it proposes the most
 * recent qualifying result of another institution, or says why none can be reused. The doctor decides; the engine
 * only suggests and explains (domain.md: 以接诊医师判断为标准).
 *
 * Window: a result whose effective time (exam or specimen collection, not the report) falls on local day E in the
 * catalogue's zone (Asia/Shanghai) is valid through the END of local day E + D, D being the item's validity days.
 * A CBC (D = 7) taken any time on 2026-11-17 is reusable until 2026-11-24 23:59:59 +08:00 and expired from
 * 2026-11-25 00:00 +08:00. Only the local day counts: 00:30 +08:00 (16:30 UTC the day before) is day E.
 *
 * Results of the requester's own institution are not proposed: reusing one's own result is not a cross-institution
 * recognition, and counting it would inflate the bureau's savings. They are mentioned in the reason when they are
 * all there is. Results dated after `now` are ignored (they did not exist at the time of the check).
 */
import type { Coding, ServiceRequest } from 'fhir/r4';
import {
  itemCoding,
  priceFor,
  resolveCodings,
  type CatalogueItem,
  type CodeIndex,
  type CodeMatch,
  type ContextDef,
} from './catalogue.js';
import { RecognitionInputError } from './errors.js';
import type { RecognitionFact } from './facts.js';
import {
  acceptanceFor,
  cityOf,
  describePolicy,
  provinceOf,
  qualificationAt,
  type AcceptanceMatrix,
  type Institution,
  type InstitutionDirectory,
} from './institutions.js';
import { addDays, englishDate, formatLocalDateTime, formatLocalMinute, localDate, startOfLocalDay } from './time.js';
import { HR_SCOPE_NAMES, HUREN_FHIR_BASE, LEVEL_EN, SYSTEMS, narrowestScope, type Bilingual } from './vocabulary.js';

export type ReuseDecision = 'reusable' | 'reference-only' | 'expired' | 'none' | 'not-recognized';

export interface RequestedItem {
  /** The codings of one ordered concept (a `code` parameter, or ServiceRequest.code). Local codes allowed. */
  coding: Coding[];
  /** Imaging facets ordered with it (ServiceRequest.bodySite): an order for two body parts is two items. */
  facets?: Coding[];
}

export interface ReuseRequest {
  /** Keys of the patient (patientKeysOf the identifiers given); a fact matches when it shares one. */
  patientKeys: readonly string[];
  /** Institution id of the requesting (receiving) institution. */
  requester: string;
  items: readonly RequestedItem[];
  /** A context code of the catalogue: routine (default), emergency, pre-surgery, crossmatch. */
  context?: string;
}

export type RuleName =
  | 'match'
  | 'own-institution'
  | 'window'
  | 'performer'
  | 'qualification'
  | 'quality-control'
  | 'scope'
  | 'acceptance'
  | 'item-context'
  | 'context'
  | 'saving'
  | 'more-recent'
  | 'partial-panel';

/** One step of the rule path: which rule, whether it let the result through, and what it found. */
export interface RuleStep {
  rule: RuleName;
  passed: boolean;
  zh: string;
  en: string;
}

export type CandidateVia = 'direct' | 'panel' | 'analytes';

/** A result considered for an item, with its own verdict (for a list of alternatives in a user interface). */
export interface Candidate {
  decision: 'reusable' | 'reference-only' | 'expired';
  via: CandidateVia;
  facts: RecognitionFact[];
  performer?: string;
  effective: string;
  lastValidDay: string;
  validUntil: string;
  steps: RuleStep[];
}

export interface ReuseOutcome {
  /** Index of the requested item this outcome answers (one requested item may give several outcomes). */
  requestIndex: number;
  requested: Coding[];
  /** The catalogue item (absent for not-recognized). */
  item?: Coding;
  decision: ReuseDecision;
  /** The chosen result's main fact; `facts` has all of them (a panel assembled from analytes has several). */
  fact?: RecognitionFact;
  facts: RecognitionFact[];
  via?: CandidateVia;
  performer?: string;
  /** Effective time as the performing hospital sent it. */
  effective?: string;
  /** Last instant the result is valid: end of the last valid local day, with the zone's offset. */
  validUntil?: string;
  lastValidDay?: string;
  /** The requester's price of the item when the result is reusable, otherwise 0. */
  saving: { value: number; currency: 'CNY' };
  /** The context justifies re-testing (emergency, pre-surgery …); the candidate is still shown. */
  retestJustified: boolean;
  /** The decline reason code the context corresponds to. */
  justification?: string;
  /** The whole explanation: the headline and every rule step. */
  reason: Bilingual;
  /** One plain sentence for the doctor (what, from whom, when, and why it is or is not reusable). */
  summary: Bilingual;
  path: RuleStep[];
  /** Every result considered, most recent first. */
  candidates: Candidate[];
}

interface Ctx {
  index: CodeIndex;
  directory: InstitutionDirectory;
  matrix: AcceptanceMatrix;
  requester: Institution;
  context: ContextDef;
  timeZone: string;
  nowMs: number;
  today: string;
}

interface Gathered {
  via: CandidateVia;
  facts: RecognitionFact[];
  primary: RecognitionFact;
  effectiveMs: number;
}

const VIA_PREFERENCE: Record<CandidateVia, number> = { direct: 0, panel: 1, analytes: 2 };

/** The requested items of a ServiceRequest: its code, with its body sites as imaging facets. */
export function requestedItemsFromServiceRequest(request: ServiceRequest): RequestedItem[] {
  const coding = request.code?.coding ?? [];
  const facets = (request.bodySite ?? []).flatMap((b) => b.coding ?? []);
  return [{ coding, ...(facets.length > 0 ? { facets } : {}) }];
}

/**
 * Decides, for each requested item, whether a result of another institution can be reused. Throws
 * RecognitionInputError for an unknown requester or context, or a request without patient keys.
 */
export function decideReuse(
  request: ReuseRequest,
  facts: readonly RecognitionFact[],
  institutions: InstitutionDirectory,
  catalogue: CodeIndex,
  matrix: AcceptanceMatrix,
  now: Date,
): ReuseOutcome[] {
  const requester = institutions.byId.get(request.requester);
  if (!requester) {
    throw new RecognitionInputError(
      'unknown-requester',
      `Organization/${request.requester} is not a participating institution`,
      'requester',
    );
  }
  const contextCode = request.context ?? 'routine';
  const context = catalogue.contexts.get(contextCode);
  if (!context) {
    throw new RecognitionInputError(
      'unknown-context',
      `Context '${contextCode}' is not one of ${[...catalogue.contexts.keys()].join(', ')}`,
      'context',
    );
  }
  if (request.patientKeys.length === 0) {
    throw new RecognitionInputError('no-patient-key', 'The patient has no identifier to match on', 'patient');
  }
  const timeZone = catalogue.catalogue.timeZone;
  const nowMs = now.getTime();
  const ctx: Ctx = {
    index: catalogue,
    directory: institutions,
    matrix,
    requester,
    context,
    timeZone,
    nowMs,
    today: localDate(nowMs, timeZone),
  };
  const keys = new Set(request.patientKeys);
  const patientFacts = facts.filter((f) => f.patientKeys.some((k) => keys.has(k)) && Date.parse(f.effective) <= nowMs);

  const outcomes: ReuseOutcome[] = [];
  request.items.forEach((requested, requestIndex) => {
    const codings = [...requested.coding, ...(requested.facets ?? [])];
    const { matches } = resolveCodings(catalogue, codings, requester.id);
    if (matches.length === 0) {
      outcomes.push(notRecognized(requestIndex, requested.coding, codings));
      return;
    }
    for (const match of matches) {
      const item = catalogue.items.get(match.item) as CatalogueItem;
      outcomes.push(decideItem(ctx, requestIndex, requested.coding, item, match, patientFacts));
    }
  });
  return outcomes;
}

function notRecognized(requestIndex: number, requested: Coding[], codings: Coding[]): ReuseOutcome {
  const codes = codings.map((c) => `${c.system ?? '(no system)'}|${c.code ?? '(no code)'}`).join(', ') || '(no code)';
  return {
    requestIndex,
    requested,
    decision: 'not-recognized',
    facts: [],
    saving: { value: 0, currency: 'CNY' },
    retestJustified: false,
    reason: {
      zh: `非互认项目：${codes} 不在互认目录中，也不是本机构已对照的本地编码。`,
      en: `Not recognised: ${codes} is neither in the recognition catalogue nor a mapped local code of the requester.`,
    },
    summary: {
      zh: `非互认项目：${codes} 不在互认目录中，也不是本机构已对照的本地编码。`,
      en: `Not recognised: ${codes} is neither in the recognition catalogue nor a mapped local code of the requester.`,
    },
    path: [
      {
        rule: 'match',
        passed: false,
        zh: `目录中没有与 ${codes} 对应的项目`,
        en: `no catalogue item matches ${codes}`,
      },
    ],
    candidates: [],
  };
}

function gatherCandidates(ctx: Ctx, item: CatalogueItem, facts: readonly RecognitionFact[]): Gathered[] {
  const out: Gathered[] = [];
  const single = (via: CandidateVia, f: RecognitionFact): Gathered => ({
    via,
    facts: [f],
    primary: f,
    effectiveMs: Date.parse(f.effective),
  });
  for (const f of facts) if (f.item === item.code) out.push(single('direct', f));
  if (item.kind === 'analyte') {
    const panels = new Set(ctx.index.panelsOf.get(item.code) ?? []);
    for (const f of facts) if (panels.has(f.item)) out.push(single('panel', f));
  }
  if (item.kind === 'panel') {
    // Analyte results of one specimen (same performer, same effective instant) that together cover every member.
    const members = item.members ?? [];
    const groups = new Map<string, Map<string, RecognitionFact>>();
    for (const f of facts) {
      if (!members.includes(f.item)) continue;
      const key = `${f.performer ?? ''}|${f.effective}`;
      const group = groups.get(key) ?? new Map<string, RecognitionFact>();
      const previous = group.get(f.item);
      if (!previous || (f.issued ?? '') > (previous.issued ?? '')) group.set(f.item, f);
      groups.set(key, group);
    }
    for (const group of groups.values()) {
      if (group.size !== members.length) continue;
      const memberFacts = members.map((m) => group.get(m) as RecognitionFact);
      const primary = memberFacts[0] as RecognitionFact;
      const duplicate = out.some(
        (c) =>
          c.via === 'direct' && c.primary.performer === primary.performer && c.primary.effective === primary.effective,
      );
      if (!duplicate) {
        out.push({ via: 'analytes', facts: memberFacts, primary, effectiveMs: Date.parse(primary.effective) });
      }
    }
  }
  return out.sort(
    (a, b) =>
      b.effectiveMs - a.effectiveMs ||
      VIA_PREFERENCE[a.via] - VIA_PREFERENCE[b.via] ||
      (b.primary.issued ?? '').localeCompare(a.primary.issued ?? '') ||
      a.primary.id.localeCompare(b.primary.id),
  );
}

function partialPanelNote(ctx: Ctx, item: CatalogueItem, facts: readonly RecognitionFact[]): RuleStep | undefined {
  if (item.kind !== 'panel') return undefined;
  const members = item.members ?? [];
  const byGroup = new Map<string, Set<string>>();
  for (const f of facts) {
    if (!members.includes(f.item) || f.performer === ctx.requester.id) continue;
    const key = `${f.performer ?? ''}|${f.effective}`;
    byGroup.set(key, (byGroup.get(key) ?? new Set()).add(f.item));
  }
  const best = Math.max(0, ...[...byGroup.values()].map((s) => s.size));
  if (best === 0 || best === members.length) return undefined;
  return {
    rule: 'partial-panel',
    passed: false,
    zh: `仅有本组合 ${members.length} 项中 ${best} 项的单项结果，不能代替整组检验`,
    en: `only ${best} of the ${members.length} analytes of the panel were found in one specimen; they do not replace the panel`,
  };
}

function institutionName(ctx: Ctx, id: string | undefined): Bilingual {
  const inst = id ? ctx.directory.byId.get(id) : undefined;
  if (inst) return inst.name;
  const ref = id ? `Organization/${id}` : '未知机构';
  return { zh: ref, en: id ? ref : 'an unknown institution' };
}

function categoryName(ctx: Ctx, code: string): Bilingual {
  return ctx.index.categories.get(code)?.name ?? { zh: code, en: code };
}

function viaStep(ctx: Ctx, item: CatalogueItem, g: Gathered): RuleStep {
  const f = g.primary;
  const how = f.matchVerified
    ? { zh: '', en: '' }
    : { zh: '（依据的编码尚待核实）', en: ' (by a code not yet verified)' };
  if (g.via === 'panel') {
    const panel = ctx.index.items.get(f.item);
    return {
      rule: 'match',
      passed: true,
      zh: `${item.name.zh}包含在${panel?.name.zh ?? f.item}(${f.item})的结果中${how.zh}`,
      en: `${item.name.en} is reported in the ${panel?.name.en ?? f.item} (${f.item}) result${how.en}`,
    };
  }
  if (g.via === 'analytes') {
    return {
      rule: 'match',
      passed: true,
      zh: `由同一标本的 ${g.facts.length} 项单项结果组成完整的${item.name.zh}`,
      en: `the ${g.facts.length} analyte results of one specimen together make up the ${item.name.en}`,
    };
  }
  return {
    rule: 'match',
    passed: true,
    zh: `结果按${codeLabel(f.matchedCode.system, f.matchedCode.code).zh}对应到 ${item.code}${how.zh}`,
    en: `the result maps to ${item.code} by ${codeLabel(f.matchedCode.system, f.matchedCode.code).en}${how.en}`,
  };
}

/** Eligibility of a result's institution, stopping at the first rule that fails (the path taken). */
function eligibility(ctx: Ctx, item: CatalogueItem, g: Gathered, day: string): RuleStep[] {
  const steps: RuleStep[] = [];
  const f = g.primary;
  const performer = f.performer ? ctx.directory.byId.get(f.performer) : undefined;
  if (!performer) {
    steps.push({
      rule: 'performer',
      passed: false,
      zh: f.performer
        ? `Organization/${f.performer} 不是已登记的互认机构，无资质记录`
        : '结果未注明执行机构，无法核对资质',
      en: f.performer
        ? `Organization/${f.performer} is not a registered institution: no qualification on record`
        : 'the result names no performing institution: its qualification cannot be checked',
    });
    return steps;
  }
  const name = performer.name;
  const cat = categoryName(ctx, item.category);
  const q = qualificationAt(performer, item.category, day);
  switch (q.status) {
    case 'none':
      steps.push({
        rule: 'qualification',
        passed: false,
        zh: `${name.zh}没有${cat.zh}类互认资质`,
        en: `${name.en} holds no HR qualification for ${cat.en}`,
      });
      return steps;
    case 'lapsed':
      steps.push({
        rule: 'qualification',
        passed: false,
        zh: `${name.zh}的${cat.zh}互认资质已于 ${q.qualification.validTo} 到期，早于结果日期 ${day}`,
        en: `${name.en}'s HR qualification for ${cat.en} ended on ${englishDate(q.qualification.validTo)}, before the result of ${englishDate(day)}`,
      });
      return steps;
    case 'not-yet-valid':
      steps.push({
        rule: 'qualification',
        passed: false,
        zh: `${name.zh}的${cat.zh}互认资质自 ${q.qualification.validFrom} 起生效，晚于结果日期 ${day}`,
        en: `${name.en}'s HR qualification for ${cat.en} starts on ${englishDate(q.qualification.validFrom)}, after the result of ${englishDate(day)}`,
      });
      return steps;
    case 'failed-qc':
      steps.push({
        rule: 'qualification',
        passed: true,
        zh: `${name.zh}持有${cat.zh}互认资质（${q.qualification.validFrom} 至 ${q.qualification.validTo}）`,
        en: `${name.en} holds an HR qualification for ${cat.en} (${englishDate(q.qualification.validFrom)} to ${englishDate(q.qualification.validTo)})`,
      });
      steps.push({
        rule: 'quality-control',
        passed: false,
        zh: `${name.zh}于 ${q.qc.evaluatedOn} ${cat.zh}质控评价不合格${q.qc.programme ? `（${q.qc.programme}）` : ''}，此后的结果仅供参考`,
        en: `${name.en} failed quality control for ${cat.en} on ${englishDate(q.qc.evaluatedOn)}${q.qc.programme ? ` (${q.qc.programme})` : ''}: its results since are for reference only`,
      });
      return steps;
    case 'valid':
      break;
  }
  const qual = q.qualification;
  steps.push({
    rule: 'qualification',
    passed: true,
    zh: `${name.zh}在结果日期 ${day} 持有有效的${cat.zh}互认资质（${HR_SCOPE_NAMES[qual.scope].zh}，${qual.validFrom} 至 ${qual.validTo}）${q.qc ? `，${q.qc.evaluatedOn} 质控合格` : ''}`,
    en: `${name.en} held a valid HR qualification for ${cat.en} on ${englishDate(day)} (${HR_SCOPE_NAMES[qual.scope].en}, ${englishDate(qual.validFrom)} to ${englishDate(qual.validTo)})${q.qc ? `, quality control passed on ${englishDate(q.qc.evaluatedOn)}` : ''}`,
  });

  // A panel assembled from several Observations is recognised as widely as its most narrowly marked part.
  const marks = g.facts.flatMap((x) => (x.hrMark ? [x.hrMark] : []));
  const mark = marks.length > 0 ? narrowestScope(...marks) : undefined;
  const scope = narrowestScope(mark ?? item.scope, qual.scope);
  const req = ctx.requester;
  const covered =
    scope === 'national' ||
    (scope === 'provincial' && provinceOf(req.district.code) === provinceOf(performer.district.code)) ||
    (scope === 'municipal' && cityOf(req.district.code) === cityOf(performer.district.code));
  const scopeName = HR_SCOPE_NAMES[scope];
  const basisText = mark
    ? { zh: `结果标识${HR_SCOPE_NAMES[mark].zh}`, en: `result marked ${HR_SCOPE_NAMES[mark].en}` }
    : { zh: '结果无HR标识，按项目默认范围', en: "result unmarked, item's default scope" };
  steps.push({
    rule: 'scope',
    passed: covered,
    zh: covered
      ? `互认范围${scopeName.zh}（${basisText.zh}）覆盖申请机构`
      : `互认范围${scopeName.zh}（${basisText.zh}）不覆盖位于其他${scope === 'municipal' ? '城市' : '省份'}的申请机构`,
    en: covered
      ? `recognition scope ${scopeName.en} (${basisText.en}) covers the requester`
      : `recognition scope ${scopeName.en} (${basisText.en}) does not cover a requester in another ${scope === 'municipal' ? 'city' : 'province'}`,
  });
  if (!covered) return steps;

  const acceptance = acceptanceFor(ctx.matrix, req, performer);
  const regionName = acceptance.rule.name ?? {
    zh: acceptance.region === 'default' ? '默认规则' : `地区 ${acceptance.region}`,
    en: acceptance.region === 'default' ? 'default rule' : `region ${acceptance.region}`,
  };
  if (acceptance.via === 'alliance') {
    const alliance = ctx.directory.alliances.get(acceptance.alliance ?? '')?.name ?? {
      zh: acceptance.alliance ?? '',
      en: acceptance.alliance ?? '',
    };
    steps.push({
      rule: 'acceptance',
      passed: true,
      zh: `申请机构与${name.zh}同属${alliance.zh}，互认结果`,
      en: `the requester and ${name.en} are both members of ${alliance.en}, which accept each other's results`,
    });
  } else {
    const policy = describePolicy(acceptance.rule, req.level);
    steps.push({
      rule: 'acceptance',
      passed: acceptance.accepted,
      zh: `${regionName.zh}：${policy.zh}；${performer.level}机构的结果${acceptance.accepted ? '予以认可' : '不予认可'}`,
      en: `${regionName.en}: ${policy.en}; results of a ${LEVEL_EN[performer.level]} institution are ${acceptance.accepted ? 'accepted' : 'not accepted'}`,
    });
  }
  if (!acceptance.accepted) return steps;

  if (item.notReusableInContexts?.includes(ctx.context.code)) {
    steps.push({
      rule: 'item-context',
      passed: false,
      zh: `${item.name.zh}在「${ctx.context.name.zh}」时从不互认，须用新标本重新检测`,
      en: `${item.name.en} is never reused for ${ctx.context.name.en}: it must be tested on a fresh sample`,
    });
  }
  return steps;
}

/** A code as a doctor reads it in the rule path: LOINC 57021-8, catalogue code …, local code … (no system URLs). */
function codeLabel(system: string, code: string): Bilingual {
  if (system === 'http://loinc.org') return { zh: ` LOINC ${code} `, en: `LOINC ${code}` };
  if (system === SYSTEMS.catalogue) return { zh: `目录编码 ${code} `, en: `catalogue code ${code}` };
  if (system === SYSTEMS.nationalPriceCode)
    return { zh: `全国价格项目编码 ${code} `, en: `national price code ${code}` };
  if (system.startsWith(HUREN_FHIR_BASE)) return { zh: `编码 ${code} `, en: `code ${code}` };
  return { zh: `本地编码 ${code} `, en: `local code ${code}` };
}

function evaluate(ctx: Ctx, item: CatalogueItem, g: Gathered): Candidate {
  const day = localDate(g.effectiveMs, ctx.timeZone);
  const lastValidDay = addDays(day, item.validityDays);
  const validUntil = formatLocalDateTime(startOfLocalDay(addDays(lastValidDay, 1), ctx.timeZone) - 1000, ctx.timeZone);
  const inWindow = ctx.today <= lastValidDay;
  const steps: RuleStep[] = [viaStep(ctx, item, g)];
  steps.push({
    rule: 'window',
    passed: inWindow,
    zh: `有效期 ${item.validityDays} 天，自检查/采样日 ${day} 起算，至 ${lastValidDay} 24时（${ctx.timeZone}）；今天是 ${ctx.today}${inWindow ? '' : '，已过期'}`,
    en: `window ${item.validityDays} days from the exam/collection day ${englishDate(day)}: valid through the end of ${englishDate(lastValidDay)} (${ctx.timeZone}); today is ${englishDate(ctx.today)}${inWindow ? '' : ', so it has expired'}`,
  });
  let decision: Candidate['decision'];
  if (!inWindow) {
    decision = 'expired';
  } else {
    const checks = eligibility(ctx, item, g, day);
    steps.push(...checks);
    decision = checks.every((s) => s.passed) ? 'reusable' : 'reference-only';
  }
  return {
    decision,
    via: g.via,
    facts: g.facts,
    ...(g.primary.performer ? { performer: g.primary.performer } : {}),
    effective: g.primary.effectiveSent,
    lastValidDay,
    validUntil,
    steps,
  };
}

function decideItem(
  ctx: Ctx,
  requestIndex: number,
  requested: Coding[],
  item: CatalogueItem,
  match: CodeMatch,
  facts: readonly RecognitionFact[],
): ReuseOutcome {
  const gathered = gatherCandidates(ctx, item, facts);
  const own = gathered.filter((g) => g.primary.performer === ctx.requester.id);
  const candidates = gathered
    .filter((g) => g.primary.performer !== ctx.requester.id)
    .map((g) => evaluate(ctx, item, g));
  const chosen =
    candidates.find((c) => c.decision === 'reusable') ??
    candidates.find((c) => c.decision === 'reference-only') ??
    candidates.find((c) => c.decision === 'expired');

  const path: RuleStep[] = [
    {
      rule: 'match',
      passed: true,
      zh: `申请项目按${codeLabel(match.system, match.code).zh}对应到互认目录 ${item.code} ${item.name.zh}${match.verified ? '' : '（编码尚待核实）'}`,
      en: `the order maps to catalogue item ${item.code} ${item.name.en} by ${codeLabel(match.system, match.code).en}${match.verified ? '' : ' (code not yet verified)'}`,
    },
  ];
  if (own.length > 0) {
    const o = own[0] as Gathered;
    path.push({
      rule: 'own-institution',
      passed: false,
      zh: `本机构 ${o.primary.effectiveSent} 的结果属院内结果，不作为跨机构互认提示`,
      en: `a result of the requester's own institution (${englishDate(formatLocalMinute(Date.parse(o.primary.effectiveSent), ctx.timeZone))}) is not a cross-institution recognition and is not proposed`,
    });
  }
  const price = priceFor(item, ctx.requester.level);
  const decision: ReuseDecision = chosen?.decision ?? 'none';
  if (chosen) {
    path.push(...chosen.steps);
    if (chosen.decision === 'reusable') {
      // Candidates are most recent first: a reference-only one listed before the chosen result is more recent.
      const newer = candidates.slice(0, candidates.indexOf(chosen)).find((c) => c.decision === 'reference-only');
      if (newer) {
        const failed = newer.steps.find((s) => !s.passed);
        const who = institutionName(ctx, newer.performer);
        path.push({
          rule: 'more-recent',
          passed: true,
          zh: `${who.zh} ${newer.effective} 的较新结果仅供参考：${failed?.zh ?? ''}`,
          en: `a more recent result from ${who.en} (${englishDate(formatLocalMinute(Date.parse(newer.effective), ctx.timeZone))}) is for reference only: ${failed?.en ?? ''}`,
        });
      }
      path.push(
        price.key
          ? {
              rule: 'saving',
              passed: true,
              zh: `按申请机构（${ctx.requester.level}）价格计，可节省 ¥${price.amount.toFixed(2)}`,
              en: `saving ¥${price.amount.toFixed(2)} at the requester's price (${LEVEL_EN[ctx.requester.level]}, ${price.key === 'default' ? 'list price' : price.key})`,
            }
          : {
              rule: 'saving',
              passed: true,
              zh: `申请机构（${ctx.requester.level}）未配置该项目价格，节省按 ¥0 计`,
              en: `no price configured for this item at a ${LEVEL_EN[ctx.requester.level]} institution: saving ¥0`,
            },
      );
    }
  } else {
    const partial = partialPanelNote(ctx, item, facts);
    if (partial) path.push(partial);
  }
  if (ctx.context.retestJustified) {
    path.push({
      rule: 'context',
      passed: true,
      zh: `${ctx.context.name.zh}：重新检查检验属合理情形（理由代码 ${ctx.context.declineReason}）${chosen ? '，已有结果仍列出供医师判断' : ''}`,
      en: `${ctx.context.name.en}: re-testing is justified (reason code ${ctx.context.declineReason})${chosen ? '; the earlier result is still shown for the doctor to judge' : ''}`,
    });
  }

  const fact = chosen?.facts[0];
  const outcome: ReuseOutcome = {
    requestIndex,
    requested,
    item: itemCoding(ctx.index, item.code),
    decision,
    facts: chosen?.facts ?? [],
    saving: { value: decision === 'reusable' ? price.amount : 0, currency: 'CNY' },
    retestJustified: ctx.context.retestJustified,
    reason: composeReason(ctx, item, decision, chosen, path),
    summary: composeSummary(ctx, item, decision, chosen),
    path,
    candidates,
  };
  if (ctx.context.declineReason && ctx.context.retestJustified) outcome.justification = ctx.context.declineReason;
  if (chosen && fact) {
    outcome.fact = fact;
    outcome.via = chosen.via;
    if (chosen.performer) outcome.performer = chosen.performer;
    outcome.effective = chosen.effective;
    outcome.validUntil = chosen.validUntil;
    outcome.lastValidDay = chosen.lastValidDay;
  }
  return outcome;
}

const HEADLINE: Record<ReuseDecision, Bilingual> = {
  reusable: { zh: '可互认', en: 'Reusable' },
  'reference-only': { zh: '仅供参考', en: 'For reference only' },
  expired: { zh: '已过期', en: 'Expired' },
  none: { zh: '无可用结果', en: 'No result' },
  'not-recognized': { zh: '非互认项目', en: 'Not recognised' },
};

/** The one sentence a doctor reads: the rule path stays available on demand (`path`). */
function composeSummary(
  ctx: Ctx,
  item: CatalogueItem,
  decision: ReuseDecision,
  chosen: Candidate | undefined,
): Bilingual {
  if (!chosen) {
    return {
      zh: `无可用结果：该患者在其他机构没有${item.name.zh}结果。`,
      en: `No result: this patient has no ${item.name.en} from another institution.`,
    };
  }
  const who = institutionName(ctx, chosen.performer);
  const when = formatLocalMinute(Date.parse((chosen.facts[0] as RecognitionFact).effective), ctx.timeZone);
  const last = chosen.lastValidDay;
  if (decision === 'reusable') {
    return {
      zh: `可互认：${who.zh} ${when} 的${item.name.zh}结果在有效期内（至 ${last}），无需重复检查。`,
      en: `Reusable: the ${item.name.en} from ${who.en} on ${englishDate(when)} is valid until ${englishDate(last)}; no need to repeat it.`,
    };
  }
  if (decision === 'expired') {
    return {
      zh: `已过期：${who.zh} ${when} 的${item.name.zh}结果已超过 ${item.validityDays} 天有效期（至 ${last}）。`,
      en: `Expired: the ${item.name.en} from ${who.en} on ${englishDate(when)} is past its ${item.validityDays}-day window (ended ${englishDate(last)}).`,
    };
  }
  const failed = chosen.steps.find((s) => !s.passed);
  return {
    zh: `仅供参考：${who.zh} ${when} 的${item.name.zh}结果不能互认${failed ? `——${failed.zh}` : ''}。`,
    en: `For reference only: the ${item.name.en} from ${who.en} on ${englishDate(when)} cannot be reused${failed ? ` — ${failed.en}` : ''}.`,
  };
}

function composeReason(
  ctx: Ctx,
  item: CatalogueItem,
  decision: ReuseDecision,
  chosen: Candidate | undefined,
  path: RuleStep[],
): Bilingual {
  const head = HEADLINE[decision];
  let zh: string;
  let en: string;
  if (chosen) {
    const who = institutionName(ctx, chosen.performer);
    const when = formatLocalMinute(Date.parse((chosen.facts[0] as RecognitionFact).effective), ctx.timeZone);
    zh = `${head.zh}：${item.name.zh}（${item.code}），${who.zh} ${when} 的结果`;
    en = `${head.en}: ${item.name.en} (${item.code}) from ${who.en}, ${englishDate(when)}`;
  } else {
    zh = `${head.zh}：未找到该患者在其他机构的${item.name.zh}（${item.code}）结果`;
    en = `${head.en}: no ${item.name.en} (${item.code}) of this patient from another institution`;
  }
  return {
    zh: `${zh}。判定依据：${path.map((s) => s.zh).join('；')}。`,
    en: `${en}. Rule path: ${path.map((s) => s.en).join('; ')}.`,
  };
}
