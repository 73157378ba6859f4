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
  reasonText: { zh: '说明', en: 'Explanation' },
  cancel: { zh: '取消', en: 'Cancel' },
  confirmDecline: { zh: '确认不予互认', en: 'Confirm: do not reuse' },
  reusable: { zh: '可互认', en: 'Reusable' },
  'reference-only': { zh: '仅供参考', en: 'Reference only' },
  expired: { zh: '已超出有效期', en: 'Expired' },
  reuse: { zh: '互认（不再重复检查）', en: 'Reuse (do not repeat)' },
  decline: { zh: '不予互认…', en: 'Do not reuse…' },
  showValues: { zh: '查看结果', en: 'Show results' },
  hideValues: { zh: '收起结果', en: 'Hide results' },
  performed: { zh: '检查机构', en: 'Performed at' },
  effective: { zh: '检查时间', en: 'Done on' },
  validUntil: { zh: '有效期至', en: 'Valid until' },
  daysLeft: { zh: '剩余 {n} 天', en: '{n} days left' },
  lastDay: { zh: '今天到期', en: 'last day' },
  over: { zh: '已过期 {n} 天', en: 'expired {n} days ago' },
  scope: { zh: '互认范围', en: 'Recognition scope' },
  saving: { zh: '可节约', en: 'Saving' },
  accepted: { zh: '已互认，节约 {s}', en: 'Reused, saving {s}' },
  declined: { zh: '已记录：不予互认（{r}）', en: 'Recorded: not reused ({r})' },
  justified: {
    zh: '当前情形（急诊/术前等）可重新检查',
    en: 'The context (emergency, pre-surgery …) justifies re-testing',
  },
  item: { zh: '项目', en: 'Analyte' },
  result: { zh: '结果', en: 'Result' },
  range: { zh: '参考范围', en: 'Reference range' },
  trend: { zh: '趋势', en: 'Trend' },
  loading: { zh: '正在读取既往结果…', en: 'Loading prior results…' },
  count: { zh: '共 {n} 项可参考的既往结果', en: '{n} prior results' },
  none: { zh: '该患者在有效期内没有可互认的既往结果。', en: 'No recognisable prior results within their windows.' },
  chooseReason: { zh: '请选择理由', en: 'Choose a reason' },
  textRequired: { zh: '该理由须填写说明', en: 'This reason needs an explanation' },
  identity: {
    zh: '患者身份信息在各机构间不一致（可能是证件号录入错误或他人证件），互认前请核实身份：',
    en: 'The institutions disagree about this patient (the ID may be mistyped or shared): verify before reusing:',
  },
  // 医疗机构检查检验结果互认管理办法: result data and images are recognised, the previous diagnosis is not.
  conclusion: {
    zh: '原报告结论（仅供参考，不属互认内容）：',
    en: "The previous report's conclusion (for reference; not recognised): ",
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
  national: { zh: '全国', en: 'national' },
  provincial: { zh: '本省', en: 'provincial' },
  municipal: { zh: '本市', en: 'municipal' },
};

let lang: Lang = currentLang();
let session: (Session & { launch?: string }) | undefined;
let view: View | undefined;
const decided = new Map<string, { action: 'accepted' | 'declined'; saving?: number; reason?: string }>();
const viewed = new Set<string>();
const expanded = new Set<string>();
let declining: ItemView | undefined;

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const t = (key: string, vars: Record<string, string | number> = {}) =>
  Object.entries(vars).reduce((s, [k, v]) => s.replace(`{${k}}`, String(v)), T[key]?.[lang] ?? key);
const name = (b: Bilingual | undefined) => (b ? b[lang] : '');

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

function localTime(iso: string | undefined): string {
  if (!iso) return '';
  return new Date(iso).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: 'Asia/Shanghai',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
  });
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
  svg.setAttribute('aria-label', points.map((p) => `${p.effective.slice(0, 10)}: ${p.value}`).join('; '));
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

function valuesTable(item: ItemView): HTMLElement {
  const rows = item.values.map((v) => {
    const range = v.rangeText ?? (v.low !== undefined || v.high !== undefined ? `${v.low ?? ''}–${v.high ?? ''}` : '');
    const result = v.value !== undefined ? `${v.value}${v.unit ? ` ${v.unit}` : ''}` : (v.text ?? '');
    const trend = item.trends[v.code];
    return h(
      'tr',
      {},
      h('th', { scope: 'row' }, v.display || v.code),
      h(
        'td',
        { class: `num flag-${v.flag ?? 'N'}` },
        `${result}${v.flag && v.flag !== 'N' ? ` ${v.flag === 'H' || v.flag === 'HH' ? '↑' : v.flag === 'L' || v.flag === 'LL' ? '↓' : v.flag}` : ''}`,
      ),
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

function itemCard(item: ItemView): HTMLElement {
  const key = `${item.check}|${item.item}`;
  const done = decided.get(key);
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
          `${t('performed')}: ${name(item.performer.name)}${item.performer.level ? `（${item.performer.level}）` : ''}`,
        )
      : null,
    h('span', {}, `${t('effective')}: ${localTime(item.effective)}`),
    item.validUntil
      ? h('span', {}, `${t('validUntil')}: ${item.validUntil.slice(0, 10)} `, countdown(item) ?? '')
      : null,
    item.hrScope ? h('span', {}, `${t('scope')}: ${t(item.hrScope)}HR`) : null,
    item.saving ? h('span', {}, `${t('saving')}: ${formatYuan(item.saving, lang)}`) : null,
  );
  const actions = h('div', { class: 'actions' });
  const toggle = h(
    'button',
    { type: 'button', 'aria-expanded': String(open), class: 'show-values' },
    t(open ? 'hideValues' : 'showValues'),
  );
  toggle.addEventListener('click', () => void toggleValues(item));
  actions.append(toggle);
  if (done) {
    const reason = done.reason ? name(view!.declineReasons.find((r) => r.code === done.reason)?.name) : '';
    actions.append(
      h(
        'span',
        { class: `done ${done.action}`, role: 'status' },
        done.action === 'accepted'
          ? t('accepted', { s: formatYuan(done.saving ?? 0, lang) })
          : t('declined', { r: reason }),
      ),
    );
  } else if (item.decision !== 'expired') {
    // A reference-only result may still be used by the doctor, but it is not the suggested action.
    const reuse = h(
      'button',
      { type: 'button', class: item.decision === 'reusable' ? 'primary reuse' : 'reuse' },
      t('reuse'),
    );
    reuse.addEventListener('click', () => void decide(item, 'accepted'));
    const decline = h('button', { type: 'button', class: 'decline' }, t('decline'));
    decline.addEventListener('click', () => openDecline(item));
    actions.append(reuse, decline);
  }
  card.append(
    h(
      'div',
      { class: 'item-head' },
      h('h3', { id: `h-${item.item}` }, name(item.name)),
      h('span', { class: `tag ${item.decision}` }, t(item.decision)),
    ),
    meta,
    h('p', { class: 'reason' }, name(item.reason)),
    ...(item.retestJustified ? [h('p', { class: 'reason' }, t('justified'))] : []),
    actions,
  );
  if (open) {
    if (item.conclusion) {
      card.append(h('p', { class: 'conclusion' }, h('strong', {}, t('conclusion')), item.conclusion));
    }
    if (item.values.length) card.append(valuesTable(item));
  }
  return card;
}

function render(): void {
  if (!view) return;
  $('org').textContent = name(view.organization.name) || view.organization.id;
  const total = view.categories.reduce((n, c) => n + c.items.length, 0);
  $('status').textContent = total ? t('count', { n: total }) : t('none');
  const identity = $('identity');
  identity.hidden = !view.identityConflicts?.length;
  identity.replaceChildren(
    ...(view.identityConflicts?.length
      ? [h('strong', {}, t('identity')), h('ul', {}, ...view.identityConflicts.map((c) => h('li', {}, name(c))))]
      : []),
  );
  $('categories').replaceChildren(
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
  const key = `${item.check}|${item.item}`;
  if (expanded.has(key)) expanded.delete(key);
  else expanded.add(key);
  keepFocus(item, '.show-values');
  if (expanded.has(key) && !viewed.has(key) && item.decision !== 'expired') {
    viewed.add(key);
    try {
      await record(item, 'viewed');
    } catch (e) {
      // Viewed twice (another tab) is fine; anything else is worth showing.
      if (!(e instanceof ApiError && e.status === 409)) $('error').textContent = (e as Error).message;
    }
  }
}

async function record(
  item: ItemView,
  decision: 'accepted' | 'declined' | 'viewed',
  reason?: string,
  reasonText?: string,
): Promise<{ saving: number }> {
  const parameter: unknown[] = [
    { name: 'check', valueId: item.check },
    { name: 'item', valueCoding: { system: CATALOGUE, code: item.item } },
    { name: 'decision', valueCode: decision },
  ];
  if (reason) parameter.push({ name: 'reason', valueCoding: { system: DECLINE_REASONS, code: reason } });
  if (reasonText) parameter.push({ name: 'reasonText', valueString: reasonText });
  const res = await fetchWith(session!, '/fhir/$reuse-decision', {
    method: 'POST',
    headers: { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Parameters', parameter }),
  });
  const body = (await res.json()) as { parameter?: { name: string; valueMoney?: { value: number } }[] };
  return { saving: body.parameter?.find((p) => p.name === 'saving')?.valueMoney?.value ?? 0 };
}

async function decide(item: ItemView, action: 'accepted' | 'declined', reason?: string, text?: string): Promise<void> {
  $('error').textContent = '';
  try {
    const { saving } = await record(item, action, reason, text);
    decided.set(`${item.check}|${item.item}`, { action, saving, ...(reason ? { reason } : {}) });
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
      const input = h('input', { type: 'radio', name: 'reason', value: r.code, id: `reason-${r.code}` });
      if (r.requiresText) input.dataset.requiresText = '1';
      return h(
        'label',
        { for: `reason-${r.code}` },
        input,
        h('span', {}, name(r.name)),
        r.countsAsDecline ? null : h('span', { class: 'note' }, t('notCounted')),
      );
    }),
  );
  dialog.showModal();
  dialog.querySelector<HTMLInputElement>('input[name=reason]')?.focus();
}

async function submitDecline(e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const item = declining;
  if (!item) return;
  const chosen = document.querySelector<HTMLInputElement>('#reasons input[name=reason]:checked');
  const text = $<HTMLTextAreaElement>('reason-text').value.trim();
  if (!chosen) {
    $('decline-error').textContent = t('chooseReason');
    return;
  }
  if (chosen.dataset.requiresText && !text) {
    $('decline-error').textContent = t('textRequired');
    $('reason-text').focus();
    return;
  }
  try {
    await decide(item, 'declined', chosen.value, text || undefined);
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
  $('decline-form').addEventListener('submit', (e) => void submitDecline(e as SubmitEvent));
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
