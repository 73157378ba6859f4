/**
 * The doctor's prior-results view (/app), a SMART app launched by the EHR:
 *   /app?iss=<fhir base>&launch=<id>  → discovery at {iss}/.well-known/smart-configuration, authorize with PKCE S256
 *   /app?code=…&state=…               → code exchange at the token endpoint, then the view
 * In demo mode a standalone entry registers a launch as the demo doctor of hospital B and goes the same way.
 * Decisions are recorded with POST /fhir/$reuse-decision; opening an item's values records that it was viewed.
 */
import {
  ApiError,
  clearSession,
  currentLang,
  demoSignIn,
  fetchWith,
  formatYuan,
  getJson,
  h,
  loadSession,
  problemOf,
  saveSession,
  setLang,
  translatePage,
  type Lang,
  type Session,
} from './common.js';
import type { Bilingual, ItemView, PriorResultsView as View, TrendPoint } from '../view-types.js';

const ROLE = 'app';
const CLIENT_ID = 'huren-app';
const SCOPE = 'launch openid fhirUser user/*.rs';
const ID_CARD = 'urn:oid:2.16.156.10011.1.1';
const CATALOGUE = 'https://huren.example.org/fhir/CodeSystem/hr-catalogue';
const DECLINE_REASONS = 'https://huren.example.org/fhir/CodeSystem/hr-decline-reason';

const T: Record<string, Bilingual> = {
  title: { zh: '既往检查检验结果', en: 'Prior results' },
  entryTitle: { zh: '打开患者的既往结果', en: "Open a patient's prior results" },
  entryText: {
    zh: '本页面通常由医生工作站（EHR）以 SMART 方式启动。',
    en: "This view is normally launched from the doctor's EHR (SMART App Launch).",
  },
  demoText: {
    zh: '演示模式：以演示医院B医生的身份打开一位患者。',
    en: 'Demo mode: open a patient as a doctor of demo hospital B.',
  },
  demoIdLabel: { zh: '居民身份证号', en: 'Resident ID card number' },
  demoOpen: { zh: '以演示医生身份打开', en: 'Open as the demo doctor' },
  declineTitle: { zh: '不予互认的理由', en: 'Reason for not reusing' },
  declineHint: {
    zh: '点选理由即记录；选“其他”须先填写说明。',
    en: 'Choosing a reason records it; for “other”, write the explanation first.',
  },
  reasonText: { zh: '说明（选“其他”时必填）', en: 'Explanation (required for “other”)' },
  cancel: { zh: '取消', en: 'Cancel' },
  reusable: { zh: '可互认', en: 'Reusable' },
  'reference-only': { zh: '仅供参考', en: 'Reference only' },
  expired: { zh: '已超出有效期', en: 'Expired' },
  reuse: { zh: '互认（不再重复检查）', en: 'Reuse (do not repeat)' },
  decline: { zh: '不予互认…', en: 'Do not reuse…' },
  showValues: { zh: '查看结果', en: 'Show results' },
  showReference: { zh: '查看（仅供参考）', en: 'View (reference only)' },
  hideValues: { zh: '收起结果', en: 'Hide results' },
  performed: { zh: '检查机构', en: 'Performed at' },
  effective: { zh: '检查时间', en: 'Done on' },
  validUntil: { zh: '有效期至', en: 'Valid until' },
  daysLeft: { zh: '剩余 {n} 天', en: '{n} days left' },
  lastDay: { zh: '今天到期', en: 'last day' },
  over: { zh: '已过期 {n} 天', en: 'expired {n} days ago' },
  scope: { zh: '互认范围', en: 'Recognition scope' },
  'scope-national': { zh: '全国HR', en: 'National HR' },
  'scope-provincial': { zh: '本省HR', en: 'Provincial HR' },
  'scope-municipal': { zh: '本市HR', en: 'Municipal HR' },
  saving: { zh: '可节约', en: 'Saving' },
  accepted: { zh: '已互认，节约 {s}', en: 'Reused, saving {s}' },
  referenceAccepted: { zh: '已参考采纳（仅供参考，不计互认）', en: 'Used for reference (not counted as reuse)' },
  declined: { zh: '已记录：不予互认（{r}）', en: 'Recorded: not reused ({r})' },
  recordedAt: { zh: '记录于 {t}', en: 'recorded {t}' },
  corrected: { zh: '（已更正）', en: ' (corrected)' },
  correct: { zh: '更正', en: 'Correct' },
  correctUntil: { zh: '{t} 前可更正一次', en: 'can be corrected once until {t}' },
  cancelCorrection: { zh: '取消更正', en: 'Keep the decision' },
  correcting: { zh: '更正已记录的决定：', en: 'Correcting the recorded decision:' },
  confirmReuseQ: {
    zh: '确认采用{who} {when}的{item}结果，不再重复检查？',
    en: 'Reuse the {item} from {who}, {when}, instead of repeating it?',
  },
  confirmReuse: { zh: '确认互认', en: 'Confirm reuse' },
  justified: {
    zh: '当前情形（急诊/术前等）可重新检查',
    en: 'The context (emergency, pre-surgery …) justifies re-testing',
  },
  rulePath: { zh: '判定依据', en: 'Why (rule path)' },
  item: { zh: '项目', en: 'Analyte' },
  result: { zh: '结果', en: 'Result' },
  range: { zh: '参考范围', en: 'Reference range' },
  trend: { zh: '趋势', en: 'Trend' },
  'flag-H': { zh: '偏高', en: 'High' },
  'flag-L': { zh: '偏低', en: 'Low' },
  'flag-HH': { zh: '危急高值', en: 'Critical high' },
  'flag-LL': { zh: '危急低值', en: 'Critical low' },
  'flag-AA': { zh: '危急', en: 'Critical' },
  'flag-A': { zh: '异常', en: 'Abnormal' },
  findings: { zh: '检查所见', en: 'Findings' },
  issued: { zh: '报告时间', en: 'Reported' },
  reportedBy: { zh: '报告医师', en: 'Reported by' },
  reviewedBy: { zh: '审核医师', en: 'Reviewed by' },
  images: { zh: '查看影像', en: 'Open images' },
  print: { zh: '打印报告', en: 'Print report' },
  loading: { zh: '正在读取既往结果…', en: 'Loading prior results…' },
  count: { zh: '共 {n} 项可参考的既往结果', en: '{n} prior results' },
  none: { zh: '该患者在有效期内没有可互认的既往结果。', en: 'No recognisable prior results within their windows.' },
  chooseReason: { zh: '请选择理由', en: 'Choose a reason' },
  textRequired: { zh: '该理由须填写说明', en: 'This reason needs an explanation' },
  identity: {
    zh: '患者身份信息在各机构间不一致（可能是证件号录入错误或他人证件），互认前请核实身份：',
    en: 'The institutions disagree about this patient (the ID may be mistyped or shared): verify before reusing:',
  },
  identityConfirm: { zh: '我已核实患者身份', en: "I have verified the patient's identity" },
  identityVerified: {
    zh: '患者身份信息在各机构间不一致，已由医生核实；互认时请再次确认。',
    en: 'The institutions disagree about this patient; the doctor verified the identity. Confirm again when reusing.',
  },
  identityReuse: {
    zh: '注意：各机构的患者身份信息不一致，请确认这是同一患者。',
    en: 'Caution: the institutions disagree about this patient; make sure it is the same person.',
  },
  // 医疗机构检查检验结果互认管理办法: result data and images are recognised, the previous diagnosis is not.
  conclusion: {
    zh: '诊断意见（原报告结论，仅供参考，不属互认内容）：',
    en: "Impression (the previous report's conclusion, for reference; not recognised): ",
  },
  notCounted: { zh: '（不计为拒绝）', en: ' (not counted as a decline)' },
  notLaunched: {
    zh: '请从医生工作站打开本页面（需要 SMART 启动参数）。',
    en: 'Open this view from your EHR (a SMART launch is needed).',
  },
  expiredSession: {
    zh: '会话已过期，请从工作站重新打开。',
    en: 'The session expired; open the view again from the EHR.',
  },
  patient: { zh: '患者', en: 'Patient' },
  male: { zh: '男', en: 'male' },
  female: { zh: '女', en: 'female' },
  other: { zh: '其他', en: 'other' },
  unknown: { zh: '性别未知', en: 'sex unknown' },
  years: { zh: '{n}岁', en: '{n} y' },
  months: { zh: '{n}个月', en: '{n} mo' },
  'resident-id': { zh: '身份证', en: 'ID card' },
  'ehealth-card': { zh: '电子健康卡', en: 'e-health card' },
  'insurance-code': { zh: '医保码', en: 'insurance code' },
  launchedAt: { zh: '就诊机构', en: 'Seen at' },
  noName: { zh: '（无姓名）', en: '(no name)' },
  ordered: { zh: '本次开立：{n}', en: 'Ordered: {n}' },
};

let lang: Lang = currentLang();
let session: (Session & { launch?: string }) | undefined;
let view: View | undefined;
/** Items whose values are open, whose reuse awaits confirmation, whose decision is being corrected (check|item). */
const expanded = new Set<string>();
const confirming = new Set<string>();
const correcting = new Set<string>();
/** Items whose rule path is open (kept across re-renders). */
const rulesOpen = new Set<string>();
let declining: ItemView | undefined;
/** Set once the doctor confirmed the identity when the institutions' records disagree (asked again on reload). */
let identityVerified = false;

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const t = (key: string, vars: Record<string, string | number> = {}) =>
  Object.entries(vars).reduce((s, [k, v]) => s.replace(`{${k}}`, String(v)), T[key]?.[lang] ?? key);
const name = (b: Bilingual | undefined) => (b ? b[lang] : '');
const keyOf = (item: ItemView) => `${item.check}|${item.item}`;

// ---- SMART launch ----

function base64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function beginLaunch(iss: string, launch: string): Promise<void> {
  const config = (await (await fetch(`${iss.replace(/\/$/, '')}/.well-known/smart-configuration`)).json()) as {
    authorization_endpoint: string;
    token_endpoint: string;
  };
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(
    new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))),
  );
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('huren.pkce', JSON.stringify({ verifier, state, tokenEndpoint: config.token_endpoint, iss }));
  const url = new URL(config.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: `${location.origin}/app`,
    scope: SCOPE,
    state,
    aud: iss,
    launch,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

async function finishLaunch(code: string, state: string): Promise<void> {
  const saved = JSON.parse(sessionStorage.getItem('huren.pkce') ?? '{}') as {
    verifier?: string;
    state?: string;
    tokenEndpoint?: string;
  };
  sessionStorage.removeItem('huren.pkce');
  if (!saved.verifier || saved.state !== state || !saved.tokenEndpoint) {
    throw new Error('The launch state does not match; open the view again from the EHR');
  }
  const res = await fetch(saved.tokenEndpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: `${location.origin}/app`,
      client_id: CLIENT_ID,
      code_verifier: saved.verifier,
    }),
  });
  if (!res.ok) throw new Error(await problemOf(res));
  const body = (await res.json()) as {
    access_token: string;
    expires_in: number;
    organization: string;
    huren_launch: string;
  };
  session = {
    token: body.access_token,
    expiresAt: Date.now() + body.expires_in * 1000,
    organization: body.organization,
    role: ROLE,
    launch: body.huren_launch,
  };
  saveSession(ROLE, session);
  history.replaceState(null, '', '/app');
}

// ---- the view ----

async function loadView(): Promise<void> {
  $('entry').hidden = true;
  $('main').hidden = false;
  $('status').textContent = t('loading');
  try {
    view = await getJson<View>(session!, '/app/api/prior-results');
    render();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      clearSession(ROLE);
      $('status').textContent = '';
      $('error').textContent = t('expiredSession');
      return;
    }
    $('error').textContent = e instanceof Error ? e.message : String(e);
  }
}

function countdown(item: ItemView): HTMLElement | null {
  if (item.daysLeft === undefined) return null;
  const n = item.daysLeft;
  const text = n > 0 ? t('daysLeft', { n }) : n === 0 ? t('lastDay') : t('over', { n: -n });
  return h('span', { class: `countdown${n < 0 ? ' over' : n <= 2 ? ' soon' : ''}` }, text);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** One format per language, in the region's time: zh 2026-12-06 09:30, en 6 Dec 2026 09:30 (no time: the day). */
function localTime(iso: string | undefined, withTime = true): string {
  if (!iso) return '';
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone: 'Asia/Shanghai',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(new Date(iso))
      .map((p) => [p.type, p.value]),
  ) as Record<string, string>;
  const time = withTime ? ` ${parts.hour}:${parts.minute}` : '';
  return lang === 'zh'
    ? `${parts.year}-${parts.month}-${parts.day}${time}`
    : `${Number(parts.day)} ${MONTHS[Number(parts.month) - 1]} ${parts.year}${time}`;
}

function sparkline(points: TrendPoint[]): SVGSVGElement {
  const w = 110;
  const hgt = 28;
  const values = points.map((p) => p.value);
  const min = Math.min(...values);
  const max = Math.max(...values);
  const x = (i: number) => 4 + (i * (w - 8)) / Math.max(1, points.length - 1);
  const y = (v: number) => (max === min ? hgt / 2 : hgt - 4 - ((v - min) * (hgt - 8)) / (max - min));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'trend');
  svg.setAttribute('width', String(w));
  svg.setAttribute('height', String(hgt));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', points.map((p) => `${localTime(p.effective, false)}: ${p.value}`).join('; '));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points.map((p, i) => `${x(i)},${y(p.value)}`).join(' '));
  svg.append(line);
  const last = document.createElementNS(ns, 'circle');
  last.setAttribute('cx', String(x(points.length - 1)));
  last.setAttribute('cy', String(y(values[values.length - 1]!)));
  last.setAttribute('r', '2.5');
  svg.append(last);
  return svg;
}

/** H/L/critical flags as a word beside the value (colour alone is not enough). */
function flagBadge(flag: string | undefined): HTMLElement | null {
  if (!flag || flag === 'N') return null;
  const known = T[`flag-${flag}`] ? flag : 'A';
  const critical = flag === 'HH' || flag === 'LL' || flag === 'AA';
  const arrow = flag.startsWith('H') ? '↑' : flag.startsWith('L') ? '↓' : '';
  return h('span', { class: `flag${critical ? ' critical' : ''}` }, `${arrow}${t(`flag-${known}`)}`);
}

function valuesTable(item: ItemView): HTMLElement {
  const rows = item.values.map((v) => {
    const range =
      v.rangeText ??
      (v.low !== undefined && v.high !== undefined
        ? `${v.low}–${v.high}`
        : v.high !== undefined
          ? `≤${v.high}`
          : v.low !== undefined
            ? `≥${v.low}`
            : '');
    const result = v.value !== undefined ? `${v.value}${v.unit ? ` ${v.unit}` : ''}` : (v.text ?? '');
    const trend = item.trends[v.code];
    const label = lang === 'en' && v.displayEn ? v.displayEn : v.display || v.code;
    return h(
      'tr',
      {},
      h('th', { scope: 'row' }, label),
      h('td', { class: `num flag-${v.flag ?? 'N'}` }, result, flagBadge(v.flag) ? ' ' : '', flagBadge(v.flag) ?? ''),
      h('td', {}, range ? `${range}${v.unit ? ` ${v.unit}` : ''}` : ''),
      h('td', {}, trend ? sparkline(trend) : ''),
    );
  });
  return h(
    'table',
    { class: 'values' },
    h('thead', {}, h('tr', {}, ...['item', 'result', 'range', 'trend'].map((k) => h('th', { scope: 'col' }, t(k))))),
    h('tbody', {}, ...rows),
  );
}

function reportSection(item: ItemView): HTMLElement[] {
  const r = item.report;
  const out: HTMLElement[] = [];
  if (r?.findings) {
    out.push(h('div', { class: 'findings' }, h('strong', {}, t('findings')), h('p', {}, r.findings)));
  }
  if (item.conclusion) {
    out.push(h('p', { class: 'conclusion' }, h('strong', {}, t('conclusion')), item.conclusion));
  }
  const who = [
    r?.issued ? `${t('issued')}: ${localTime(r.issued)}` : '',
    r?.reportedBy ? `${t('reportedBy')}: ${r.reportedBy.join('、')}` : '',
    r?.reviewedBy ? `${t('reviewedBy')}: ${r.reviewedBy.join('、')}` : '',
  ].filter(Boolean);
  if (who.length) out.push(h('p', { class: 'report-meta muted' }, ...who.map((w) => h('span', {}, w))));
  if (r?.images?.length) {
    out.push(
      h(
        'p',
        { class: 'images' },
        ...r.images.map((img) =>
          h(
            'a',
            { href: img.url, target: '_blank', rel: 'noopener noreferrer' },
            `${t('images')}${img.title ? (lang === 'zh' ? `（${img.title}）` : ` (${img.title})`) : ''}`,
          ),
        ),
      ),
    );
  }
  return out;
}

/** What the doctor recorded, in words: the reason chosen, or the doctor's own text for "other". */
function recordedText(item: ItemView): string {
  const r = item.recorded!;
  if (r.decision === 'accepted') return t('accepted', { s: formatYuan(r.saving, lang) });
  const reason = view!.declineReasons.find((x) => x.code === r.reason);
  const words =
    reason?.requiresText && r.reasonText
      ? r.reasonText
      : `${name(reason?.name)}${r.reasonText ? `：${r.reasonText}` : ''}`;
  return t('declined', { r: words });
}

function decisionButtons(item: ItemView, actions: HTMLElement): void {
  const key = keyOf(item);
  if (confirming.has(key)) {
    const who = item.performer ? name(item.performer.name) : '';
    const box = h(
      'div',
      { class: 'confirm', role: 'group', 'aria-label': t('confirmReuse') },
      ...(view?.identityConflicts?.length ? [h('p', { class: 'identity-note' }, t('identityReuse'))] : []),
      h('p', {}, t('confirmReuseQ', { who, when: localTime(item.effective), item: name(item.name) })),
    );
    const yes = h('button', { type: 'button', class: 'primary confirm-reuse' }, t('confirmReuse'));
    yes.addEventListener('click', () => void decide(item, 'accepted'));
    const no = h('button', { type: 'button', class: 'cancel-reuse' }, t('cancel'));
    no.addEventListener('click', () => {
      confirming.delete(key);
      keepFocus(item, '.reuse');
    });
    box.append(h('div', { class: 'actions' }, yes, no));
    actions.append(box);
    return;
  }
  // The suggested action is green only when nothing argues against it: an identity conflict makes it plain.
  const suggested = !view?.identityConflicts?.length;
  const reuse = h('button', { type: 'button', class: suggested ? 'primary reuse' : 'reuse' }, t('reuse'));
  reuse.addEventListener('click', () => {
    confirming.add(key);
    keepFocus(item, '.confirm-reuse');
  });
  const decline = h('button', { type: 'button', class: 'decline' }, t('decline'));
  decline.addEventListener('click', () => openDecline(item));
  actions.append(reuse, decline);
}

function itemCard(item: ItemView): HTMLElement {
  const key = keyOf(item);
  const open = expanded.has(key);
  const card = h('article', {
    class: `card item ${item.decision}${item.highlighted ? ' highlighted' : ''}`,
    'data-item': item.item,
    'aria-labelledby': `h-${item.item}`,
  });
  const meta = h(
    'div',
    { class: 'item-meta' },
    item.performer
      ? h(
          'span',
          {},
          `${t('performed')}: ${name(item.performer.name)}${item.performer.level ? (lang === 'zh' ? `（${item.performer.level.zh}）` : ` (${item.performer.level.en})`) : ''}`,
        )
      : null,
    h('span', {}, `${t('effective')}: ${localTime(item.effective)}`),
    item.validUntil
      ? h('span', {}, `${t('validUntil')}: ${localTime(item.validUntil, false)} `, countdown(item) ?? '')
      : null,
    item.hrScope ? h('span', {}, `${t('scope')}: ${t(`scope-${item.hrScope}`)}`) : null,
    item.saving && item.decision === 'reusable'
      ? h('span', {}, `${t('saving')}: ${formatYuan(item.saving, lang)}`)
      : null,
  );
  const actions = h('div', { class: 'actions' });
  const toggle = h(
    'button',
    { type: 'button', 'aria-expanded': String(open), class: 'show-values' },
    t(open ? 'hideValues' : item.decision === 'reusable' ? 'showValues' : 'showReference'),
  );
  toggle.addEventListener('click', () => void toggleValues(item));
  actions.append(toggle);
  // Only a reusable result is offered for 互认; reference-only and expired ones are for viewing.
  if (item.decision === 'reusable') {
    const recorded = item.recorded;
    if (recorded && !correcting.has(key)) {
      actions.append(
        h(
          'span',
          { class: `done ${recorded.decision}`, role: 'status' },
          recordedText(item),
          recorded.corrected ? t('corrected') : '',
        ),
        h('span', { class: 'muted when' }, t('recordedAt', { t: localTime(recorded.recordedAt) })),
      );
      if (recorded.correctableUntil && Date.parse(recorded.correctableUntil) > Date.now()) {
        const fix = h(
          'button',
          { type: 'button', class: 'correct', title: t('correctUntil', { t: localTime(recorded.correctableUntil) }) },
          t('correct'),
        );
        fix.addEventListener('click', () => {
          correcting.add(key);
          keepFocus(item, '.decline');
        });
        actions.append(fix);
      }
    } else {
      if (recorded) actions.append(h('span', { class: 'muted' }, t('correcting')));
      decisionButtons(item, actions);
      if (recorded) {
        const keep = h('button', { type: 'button', class: 'link keep' }, t('cancelCorrection'));
        keep.addEventListener('click', () => {
          correcting.delete(key);
          confirming.delete(key);
          keepFocus(item, '.show-values');
        });
        actions.append(keep);
      }
    }
  } else if (item.recorded?.decision === 'accepted') {
    // The hospital system accepted a result for reference only: shown as what it is, 参考采纳, never as 互认.
    actions.append(h('span', { class: 'done reference', role: 'status' }, t('referenceAccepted')));
  }
  const why = h('details', { class: 'rule-path' }, h('summary', {}, t('rulePath')));
  if (rulesOpen.has(key)) why.setAttribute('open', '');
  why.addEventListener('toggle', () => {
    if ((why as HTMLDetailsElement).open) rulesOpen.add(key);
    else rulesOpen.delete(key);
  });
  why.append(h('ol', {}, ...item.rulePath.map((s) => h('li', { class: s.passed ? 'passed' : 'failed' }, name(s)))));
  card.append(
    h(
      'div',
      { class: 'item-head' },
      h('h3', { id: `h-${item.item}` }, name(item.name)),
      h('span', { class: `tag ${item.decision}` }, t(item.decision)),
    ),
    meta,
    h('p', { class: 'reason' }, name(item.summary)),
    why,
    ...(item.retestJustified ? [h('p', { class: 'reason' }, t('justified'))] : []),
    actions,
  );
  if (open) {
    card.append(...reportSection(item));
    if (item.values.length) card.append(valuesTable(item));
    const print = h('button', { type: 'button', class: 'print' }, t('print'));
    print.addEventListener('click', () => printItem(card));
    card.append(h('div', { class: 'actions print-actions' }, print));
  }
  return card;
}

/** Prints one prior report with the patient banner (the print style hides everything else). */
function printItem(card: HTMLElement): void {
  document.body.classList.add('printing-one');
  card.classList.add('print-target');
  const done = () => {
    document.body.classList.remove('printing-one');
    card.classList.remove('print-target');
    window.removeEventListener('afterprint', done);
  };
  window.addEventListener('afterprint', done);
  window.print();
}

function banner(): HTMLElement[] {
  const b = view!.banner;
  const age = b.age ? (b.age.years > 0 ? t('years', { n: b.age.years }) : t('months', { n: b.age.months })) : '';
  return [
    h('span', { class: 'patient-label' }, t('patient')),
    h('strong', { class: 'patient-name' }, b.name ?? t('noName')),
    h('span', { class: 'patient-sex' }, b.sex ? t(b.sex) : t('unknown')),
    age ? h('span', { class: 'patient-age' }, age) : null,
    b.identifier ? h('span', { class: 'patient-id' }, `${t(b.identifier.kind)} ${b.identifier.masked}`) : null,
    h(
      'span',
      { class: 'patient-org' },
      `${t('launchedAt')}: ${name(view!.organization.name) || view!.organization.id}`,
    ),
  ].filter((x): x is HTMLElement => x !== null);
}

function render(): void {
  if (!view) return;
  $('org').textContent = name(view.organization.name) || view.organization.id;
  $('patient').hidden = false;
  $('patient').replaceChildren(...banner());
  const total = view.categories.reduce((n, c) => n + c.items.length, 0);
  $('status').textContent = total ? t('count', { n: total }) : t('none');
  $('ordered').textContent = view.ordered ? t('ordered', { n: name(view.ordered.name) }) : '';
  $('ordered').hidden = !view.ordered;
  const conflicts = view.identityConflicts ?? [];
  const blocked = conflicts.length > 0 && !identityVerified;
  const identity = $('identity');
  identity.hidden = conflicts.length === 0;
  identity.className = `identity-warning${blocked ? ' blocking' : ''}`;
  if (blocked) {
    const ok = h('button', { type: 'button', class: 'confirm-identity' }, t('identityConfirm'));
    ok.addEventListener('click', () => {
      // Recorded in the audit trail first: the reuse buttons open only once the broker has it.
      $('error').textContent = '';
      fetchWith(session!, '/app/api/identity-verified', { method: 'POST' })
        .then(() => {
          identityVerified = true;
          render();
          document.querySelector<HTMLElement>('#categories .show-values')?.focus();
        })
        .catch((err: unknown) => {
          $('error').textContent = err instanceof Error ? err.message : String(err);
        });
    });
    identity.replaceChildren(
      h('strong', {}, t('identity')),
      h('ul', {}, ...conflicts.map((c) => h('li', {}, name(c)))),
      ok,
    );
  } else if (conflicts.length) {
    identity.replaceChildren(
      h('strong', {}, t('identityVerified')),
      h('ul', {}, ...conflicts.map((c) => h('li', {}, name(c)))),
    );
  }
  // Until the doctor has verified a disputed identity, the results cannot be acted on.
  const categories = $('categories');
  categories.toggleAttribute('inert', blocked);
  categories.classList.toggle('blocked', blocked);
  categories.replaceChildren(
    ...view.categories.map((c) =>
      h(
        'section',
        { class: 'category', 'aria-label': name(c.name) },
        h('h2', {}, name(c.name)),
        ...c.items.map(itemCard),
      ),
    ),
  );
}

function keepFocus(item: ItemView, selector: string): void {
  render();
  document.querySelector<HTMLElement>(`[data-item="${item.item}"] ${selector}`)?.focus();
}

async function toggleValues(item: ItemView): Promise<void> {
  const key = keyOf(item);
  if (expanded.has(key)) expanded.delete(key);
  else expanded.add(key);
  keepFocus(item, '.show-values');
  if (expanded.has(key) && !item.viewed && item.decision !== 'expired') {
    item.viewed = true;
    try {
      await record(item, 'viewed');
    } catch (e) {
      // Viewed twice (another tab) is fine; anything else is worth showing.
      if (!(e instanceof ApiError && e.status === 409)) $('error').textContent = (e as Error).message;
    }
  }
}

interface RecordedParameters {
  parameter?: {
    name: string;
    valueCode?: string;
    valueCoding?: { code?: string };
    valueString?: string;
    valueInstant?: string;
    valueMoney?: { value: number };
  }[];
}

async function record(
  item: ItemView,
  decision: 'accepted' | 'declined' | 'viewed',
  reason?: string,
  reasonText?: string,
  correction = false,
): Promise<RecordedParameters> {
  const parameter: unknown[] = [
    { name: 'check', valueId: item.check },
    { name: 'item', valueCoding: { system: CATALOGUE, code: item.item } },
    { name: 'decision', valueCode: decision },
  ];
  if (reason) parameter.push({ name: 'reason', valueCoding: { system: DECLINE_REASONS, code: reason } });
  if (reasonText) parameter.push({ name: 'reasonText', valueString: reasonText });
  if (correction) parameter.push({ name: 'correction', valueBoolean: true });
  const res = await fetchWith(session!, '/fhir/$reuse-decision', {
    method: 'POST',
    headers: { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Parameters', parameter }),
  });
  return (await res.json()) as RecordedParameters;
}

async function decide(item: ItemView, action: 'accepted' | 'declined', reason?: string, text?: string): Promise<void> {
  $('error').textContent = '';
  const key = keyOf(item);
  try {
    const body = await record(item, action, reason, text, correcting.has(key));
    const p = (n: string) => body.parameter?.find((x) => x.name === n);
    // The decision as the server recorded it (the same as asked, or an earlier one answered unchanged).
    item.recorded = {
      decision: (p('decision')?.valueCode ?? action) as 'accepted' | 'declined',
      ...(p('reason')?.valueCoding?.code ? { reason: p('reason')!.valueCoding!.code! } : {}),
      ...(p('reasonText')?.valueString ? { reasonText: p('reasonText')!.valueString! } : {}),
      saving: p('saving')?.valueMoney?.value ?? 0,
      recordedAt: p('recorded')?.valueInstant ?? new Date().toISOString(),
      ...(p('correctableUntil')?.valueInstant ? { correctableUntil: p('correctableUntil')!.valueInstant! } : {}),
      ...(p('supersedes') ? { corrected: true } : {}),
    };
    confirming.delete(key);
    correcting.delete(key);
    keepFocus(item, '.show-values');
  } catch (e) {
    $('error').textContent = e instanceof Error ? e.message : String(e);
    throw e;
  }
}

function openDecline(item: ItemView): void {
  declining = item;
  const dialog = $<HTMLDialogElement>('decline');
  $('decline-item').textContent = `${name(item.name)} · ${item.performer ? name(item.performer.name) : ''}`;
  $('decline-error').textContent = '';
  $<HTMLTextAreaElement>('reason-text').value = '';
  $('reasons').replaceChildren(
    h('legend', {}, t('chooseReason')),
    ...view!.declineReasons.map((r) => {
      const button = h('button', { type: 'button', class: 'reason-choice', value: r.code }, name(r.name));
      button.addEventListener('click', () => void submitDecline(r.code, r.requiresText));
      return h('div', {}, button, r.countsAsDecline ? null : h('span', { class: 'note' }, t('notCounted')));
    }),
  );
  dialog.showModal();
  dialog.querySelector<HTMLButtonElement>('.reason-choice')?.focus();
}

/** Choosing a reason records the decline; one that requires an explanation needs it written first. */
async function submitDecline(reason: string, requiresText: boolean): Promise<void> {
  const item = declining;
  if (!item) return;
  const text = $<HTMLTextAreaElement>('reason-text').value.trim();
  if (requiresText && !text) {
    $('decline-error').textContent = t('textRequired');
    $('reason-text').focus();
    return;
  }
  try {
    await decide(item, 'declined', reason, text || undefined);
    $<HTMLDialogElement>('decline').close();
    declining = undefined;
    keepFocus(item, '.show-values');
  } catch (err) {
    $('decline-error').textContent = err instanceof Error ? err.message : String(err);
  }
}

// ---- start ----

function applyLang(): void {
  setLang(lang);
  translatePage(T, lang);
  $('lang').textContent = lang === 'zh' ? 'English' : '中文';
  document.title = `互认 Huren · ${t('title')}`;
  render();
}

async function standaloneEntry(): Promise<void> {
  $('entry').hidden = false;
  $('main').hidden = true;
  const info = (await (await fetch('/ui/info')).json()) as { demo: boolean; demoPatient?: string };
  if (!info.demo) {
    $('entry-error').textContent = t('notLaunched');
    return;
  }
  $('demo-form').hidden = false;
  // Opened from a CDS card's link (check and item of hospital B's check): the launch names that check.
  const here = new URLSearchParams(location.search);
  const appContext = here.get('check')
    ? new URLSearchParams({ check: here.get('check')!, item: here.get('item') ?? '' })
    : undefined;
  if (appContext) {
    $('demo-id-label').hidden = true;
    $('demo-id').hidden = true;
  } else if (info.demoPatient) $<HTMLInputElement>('demo-id').value = info.demoPatient;
  $('demo-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('entry-error').textContent = '';
    try {
      // The demo doctor's EHR registers the launch, then the view launches like from any EHR.
      const ehr = await demoSignIn('clinician');
      const res = await fetchWith(ehr, '/auth/launch', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(
          appContext
            ? { appContext: appContext.toString() }
            : { patient: [{ system: ID_CARD, value: $<HTMLInputElement>('demo-id').value.trim() }] },
        ),
      });
      const { url } = (await res.json()) as { url: string };
      location.assign(url);
    } catch (err) {
      $('entry-error').textContent = err instanceof Error ? err.message : String(err);
    }
  });
}

async function start(): Promise<void> {
  applyLang();
  $('lang').addEventListener('click', () => {
    lang = lang === 'zh' ? 'en' : 'zh';
    applyLang();
  });
  $('decline-form').addEventListener('submit', (e) => e.preventDefault());
  $('decline-cancel').addEventListener('click', () => $<HTMLDialogElement>('decline').close());

  const params = new URLSearchParams(location.search);
  try {
    if (params.get('error')) throw new Error(params.get('error_description') ?? params.get('error')!);
    if (params.get('code') && params.get('state')) {
      await finishLaunch(params.get('code')!, params.get('state')!);
      await loadView();
      return;
    }
    if (params.get('iss') && params.get('launch')) {
      await beginLaunch(params.get('iss')!, params.get('launch')!);
      return;
    }
  } catch (e) {
    await standaloneEntry();
    $('entry-error').textContent = e instanceof Error ? e.message : String(e);
    return;
  }
  session = loadSession(ROLE);
  if (session) await loadView();
  else await standaloneEntry();
}

void start();
