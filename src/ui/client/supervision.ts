/**
 * The supervision page (/dashboard/supervision): declines of reusable results by institution, department and
 * doctor with the reason distribution and the outliers against peers, and the case list for expert review (no
 * patient identifier), downloadable as CSV. An expert reviewer (role supervisor) opens a case with the prior result
 * that was declined; the server audits every such access. Every figure comes from the server.
 */
import {
  ApiError,
  clearSession,
  currentLang,
  demoSignIn,
  fetchWith,
  formatCount,
  formatRate,
  getJson,
  h,
  loadSession,
  localToday,
  sessionFromToken,
  setLang,
  translatePage,
  type Lang,
  type Session,
} from './common.js';
import type { Bilingual, DeclineReasonLegend, DimensionValue } from '../../reports/report-types.js';

/** The parts of GET /reports/savings?by=…,practitioner this page reads (src/reports/supervision.ts). */
interface GroupRow {
  organization?: DimensionValue;
  department?: DimensionValue;
  practitioner?: DimensionValue;
  decided: number;
  declined: number;
  declinedByReason: Record<string, number>;
  declineRate: number | null;
  expectedDeclined: number;
  peerDeclineRate: number | null;
  outlier: boolean;
}
interface Supervision {
  rows: GroupRow[];
  totals: GroupRow;
  declineReasons: DeclineReasonLegend[];
  definitions: Record<string, Bilingual>;
}
interface Case {
  id: string;
  check: string;
  date: string;
  organization: DimensionValue;
  department?: string;
  practitioner?: string;
  item: DimensionValue;
  reason: { code: string; name?: Bilingual; countsAsDecline: boolean };
  reasonText?: string;
}
interface CaseDetail {
  case: Case;
  performer?: { code: string; name?: Bilingual };
  priorResult: {
    resourceType: string;
    effectiveDateTime?: string;
    conclusion?: string;
    code?: { text?: string };
  } | null;
  observations: {
    code?: { text?: string; coding?: { display?: string; code?: string }[] };
    valueQuantity?: { value?: number; unit?: string };
    valueString?: string;
  }[];
}

const ROLE = 'supervisor';

const T: Record<string, Bilingual> = {
  title: { zh: '不予互认监管', en: 'Supervision of declines' },
  dashboard: { zh: '监管看板', en: 'Dashboard' },
  signOut: { zh: '退出', en: 'Sign out' },
  signinTitle: { zh: '登录', en: 'Sign in' },
  signinText: {
    zh: '需卫生健康行政部门（bureau）或专家审核（supervisor）角色的访问令牌。',
    en: 'Needs an access token of the health bureau (bureau) or its expert reviewers (supervisor).',
  },
  demoSignin: { zh: '以演示专家身份进入', en: 'Enter as the demo expert reviewer' },
  tokenLabel: { zh: '访问令牌（Bearer）', en: 'Access token (Bearer)' },
  useToken: { zh: '使用令牌', en: 'Use token' },
  from: { zh: '开始日期', en: 'From' },
  to: { zh: '结束日期', en: 'To' },
  groupBy: { zh: '分组', en: 'Group by' },
  byDoctor: { zh: '机构 · 科室 · 医生', en: 'Institution · department · doctor' },
  byDepartment: { zh: '机构 · 科室', en: 'Institution · department' },
  byInstitution: { zh: '机构', en: 'Institution' },
  apply: { zh: '查询', en: 'Apply' },
  downloadCases: { zh: '下载病例清单 CSV', en: 'Download case list (CSV)' },
  decided: { zh: '已决定', en: 'Decided' },
  declined: { zh: '不予互认', en: 'Declined' },
  declineRate: { zh: '拒绝率', en: 'Decline rate' },
  peerRate: { zh: '同行拒绝率', en: 'Peers’ rate' },
  expected: { zh: '同行预期', en: 'Expected' },
  outliers: { zh: '异常', en: 'Outliers' },
  outlier: { zh: '异常', en: 'Outlier' },
  groupsTitle: { zh: '不予互认分布与异常', en: 'Declines and outliers' },
  casesTitle: { zh: '病例清单', en: 'Cases' },
  casesNote: {
    zh: '不含患者标识；专家可查看既往结果，每次查看均记录审计。',
    en: 'No patient identifiers. Expert reviewers can open the prior result; every access is audited.',
  },
  date: { zh: '日期', en: 'Date' },
  institution: { zh: '医疗机构', en: 'Institution' },
  department: { zh: '科室', en: 'Department' },
  practitioner: { zh: '医生', en: 'Doctor' },
  item: { zh: '项目', en: 'Item' },
  reason: { zh: '理由', en: 'Reason' },
  reasonText: { zh: '说明', en: 'Explanation' },
  check: { zh: '检查编号', en: 'Check id' },
  open: { zh: '查看', en: 'Open' },
  detailTitle: { zh: '病例详情与既往结果', en: 'Case and prior result' },
  performer: { zh: '出具机构', en: 'Performed by' },
  effective: { zh: '检查时间', en: 'Effective' },
  conclusion: { zh: '结论', en: 'Conclusion' },
  values: { zh: '结果', en: 'Values' },
  notGiven: { zh: '（未提供）', en: '(not given)' },
  noData: { zh: '该期间没有不予互认', en: 'No declines in this period' },
  supervisorOnly: {
    zh: '既往结果仅供专家审核角色（supervisor）查看。',
    en: 'The prior result is shown to expert reviewers (supervisor role) only.',
  },
  expired: { zh: '登录已过期，请重新登录。', en: 'The session expired; sign in again.' },
};

let lang: Lang = currentLang();
let session: Session | undefined;
let last: { groups: Supervision; cases: Case[] } | undefined;

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const t = (key: string) => T[key]![lang];
const nameOf = (v: DimensionValue | undefined) => (v ? (v.name?.[lang] ?? (v.code || t('notGiven'))) : '');

function filters(): URLSearchParams {
  return new URLSearchParams({ from: $<HTMLInputElement>('from').value, to: $<HTMLInputElement>('to').value });
}

/** The URL carries the period, the grouping and the language: a view can be bookmarked and shared. */
function saveState(): void {
  const q = filters();
  q.set('by', $<HTMLSelectElement>('by').value);
  q.set('lang', lang);
  history.replaceState(null, '', `${location.pathname}?${q.toString()}`);
  const back = filters();
  back.set('lang', lang);
  $<HTMLAnchorElement>('dashboard-link').href = `/dashboard?${back.toString()}`;
}

function restoreState(): void {
  const q = new URLSearchParams(location.search);
  const date = /^\d{4}-\d{2}-\d{2}$/;
  if (date.test(q.get('from') ?? '')) $<HTMLInputElement>('from').value = q.get('from')!;
  if (date.test(q.get('to') ?? '')) $<HTMLInputElement>('to').value = q.get('to')!;
  const by = $<HTMLSelectElement>('by');
  if ([...by.options].some((o) => o.value === q.get('by'))) by.value = q.get('by')!;
  if (q.get('lang') === 'en' || q.get('lang') === 'zh') lang = q.get('lang') as Lang;
}

async function load(): Promise<void> {
  if (!session) return;
  $('error').textContent = '';
  $('detail').hidden = true;
  try {
    const q = filters();
    const groupsQuery = new URLSearchParams(q);
    groupsQuery.set('by', $<HTMLSelectElement>('by').value);
    const [groups, cases] = await Promise.all([
      getJson<Supervision>(session, `/reports/savings?${groupsQuery.toString()}`),
      getJson<{ cases: Case[] }>(session, `/reports/supervision/cases?${q.toString()}`),
    ]);
    last = { groups, cases: cases.cases };
    saveState();
    render();
  } catch (e) {
    handleError(e);
  }
}

function handleError(e: unknown): void {
  if (e instanceof ApiError && e.status === 401) {
    clearSession(ROLE);
    session = undefined;
    showSignIn(t('expired'));
    return;
  }
  $('error').textContent = e instanceof Error ? e.message : String(e);
}

function render(): void {
  if (!last) return;
  const { groups, cases } = last;
  for (const el of document.querySelectorAll<HTMLElement>('[data-def]')) {
    const def = groups.definitions[el.dataset.def!];
    if (def) el.title = def[lang];
  }
  $('h-decided').textContent = formatCount(groups.totals.decided, lang);
  $('h-declined').textContent = formatCount(groups.totals.declined, lang);
  $('h-rate').textContent = formatRate(groups.totals.declineRate);
  $('h-outliers').textContent = formatCount(groups.rows.filter((r) => r.outlier).length, lang);
  renderGroups(groups);
  renderCases(cases);
}

function renderGroups(report: Supervision): void {
  const dims = (['organization', 'department', 'practitioner'] as const).filter((d) =>
    $<HTMLSelectElement>('by').value.split(',').includes(d),
  );
  // The reasons given at all in the period, counted first.
  const reasons = report.declineReasons
    .filter((r) => (report.totals.declinedByReason[r.code] ?? 0) > 0)
    .sort((a, b) => Number(b.countsAsDecline) - Number(a.countsAsDecline));
  const th = (text: string, def?: string) =>
    h('th', { scope: 'col', ...(def ? { 'data-def': def, title: report.definitions[def]?.[lang] ?? '' } : {}) }, text);
  $('groups')
    .querySelector('thead')!
    .replaceChildren(
      h(
        'tr',
        {},
        ...dims.map((d) => th(t(d === 'organization' ? 'institution' : d))),
        th(t('decided'), 'decided'),
        th(t('declined'), 'declined'),
        th(t('declineRate'), 'declineRate'),
        th(t('peerRate'), 'expectedDeclined'),
        th(t('expected'), 'expectedDeclined'),
        th(t('outlier'), 'outlier'),
        ...reasons.map((r) => th(r.name[lang])),
      ),
    );
  const body = $('groups').querySelector('tbody')!;
  const colspan = String(dims.length + 6 + reasons.length);
  body.replaceChildren(
    ...(report.rows.length
      ? report.rows.map((r) =>
          h(
            'tr',
            r.outlier ? { class: 'outlier' } : {},
            ...dims.map((d) => h('th', { scope: 'row' }, nameOf(r[d]))),
            h('td', {}, formatCount(r.decided, lang)),
            h('td', {}, formatCount(r.declined, lang)),
            h('td', {}, formatRate(r.declineRate)),
            h('td', {}, formatRate(r.peerDeclineRate)),
            h('td', {}, formatCount(r.expectedDeclined, lang)),
            h('td', {}, r.outlier ? `⚠ ${t('outlier')}` : ''),
            ...reasons.map((x) => h('td', {}, formatCount(r.declinedByReason[x.code] ?? 0, lang))),
          ),
        )
      : [h('tr', {}, h('td', { colspan, class: 'no-data-cell' }, t('noData')))]),
  );
}

function renderCases(cases: Case[]): void {
  const body = $('cases').querySelector('tbody')!;
  body.replaceChildren(
    ...(cases.length
      ? cases.map((c) => {
          const open = h('button', { type: 'button', class: 'link-button' }, t('open'));
          open.addEventListener('click', () => void openCase(c.id));
          return h(
            'tr',
            {},
            h('td', {}, c.date),
            h('td', {}, nameOf(c.organization)),
            h('td', {}, c.department ?? t('notGiven')),
            h('td', { class: 'code' }, c.practitioner ?? t('notGiven')),
            h('td', {}, nameOf(c.item)),
            h('td', {}, c.reason.name?.[lang] ?? c.reason.code),
            h('td', {}, c.reasonText ?? ''),
            h('td', { class: 'code' }, c.check.slice(0, 8)),
            h('td', {}, open),
          );
        })
      : [h('tr', {}, h('td', { colspan: '9', class: 'no-data-cell' }, t('noData')))]),
  );
}

async function openCase(id: string): Promise<void> {
  if (!session) return;
  const panel = $('detail');
  const out = $('detail-body');
  panel.hidden = false;
  try {
    const d = await getJson<CaseDetail>(session, `/reports/supervision/cases/${encodeURIComponent(id)}`);
    const r = d.priorResult;
    const dl = (pairs: [string, string | undefined][]) =>
      h('dl', { class: 'facts' }, ...pairs.filter(([, v]) => v).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v!)]));
    out.replaceChildren(
      dl([
        [t('item'), nameOf(d.case.item)],
        [t('reason'), d.case.reason.name?.[lang] ?? d.case.reason.code],
        [t('reasonText'), d.case.reasonText],
        [t('institution'), nameOf(d.case.organization)],
        [t('department'), d.case.department],
        [t('practitioner'), d.case.practitioner],
        [t('performer'), d.performer?.name?.[lang] ?? d.performer?.code],
        [t('effective'), r?.effectiveDateTime],
        [t('conclusion'), r?.conclusion],
        [
          t('values'),
          d.observations
            .map((o) =>
              `${o.code?.text ?? o.code?.coding?.[0]?.display ?? o.code?.coding?.[0]?.code ?? ''} ${
                o.valueQuantity ? `${o.valueQuantity.value ?? ''} ${o.valueQuantity.unit ?? ''}` : (o.valueString ?? '')
              }`.trim(),
            )
            .join('；') || undefined,
        ],
      ]),
    );
  } catch (e) {
    out.replaceChildren(
      h(
        'p',
        { class: 'error' },
        e instanceof ApiError && e.status === 403 ? t('supervisorOnly') : String((e as Error).message),
      ),
    );
  }
  panel.scrollIntoView({ block: 'nearest' });
}

async function downloadCsv(): Promise<void> {
  if (!session) return;
  try {
    const q = filters();
    q.set('format', 'csv');
    q.set('lang', lang);
    const res = await fetchWith(session, `/reports/supervision/cases?${q.toString()}`);
    const a = h('a', {
      href: URL.createObjectURL(await res.blob()),
      download: `huren-declines-${$<HTMLInputElement>('from').value}-${$<HTMLInputElement>('to').value}.csv`,
    });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    handleError(e);
  }
}

function showSignIn(message = ''): void {
  $('signin').hidden = false;
  $('main').hidden = true;
  $('sign-out').hidden = true;
  $('signin-error').textContent = message;
}

function showMain(): void {
  $('signin').hidden = true;
  $('main').hidden = false;
  $('sign-out').hidden = false;
  void load();
}

function applyLang(): void {
  setLang(lang);
  translatePage(T, lang);
  $('lang').textContent = lang === 'zh' ? 'English' : '中文';
  document.title = `互认 Huren · ${t('title')}`;
  if (session) saveState();
  render();
}

async function start(): Promise<void> {
  const today = localToday();
  $<HTMLInputElement>('to').value = today;
  $<HTMLInputElement>('from').value = `${String(Number(today.slice(0, 4)) - 1)}${today.slice(4, 7)}-01`;
  restoreState();
  applyLang();
  $('lang').addEventListener('click', () => {
    lang = lang === 'zh' ? 'en' : 'zh';
    applyLang();
  });
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  $('csv').addEventListener('click', () => void downloadCsv());
  $('sign-out').addEventListener('click', () => {
    clearSession(ROLE);
    session = undefined;
    showSignIn();
  });
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $<HTMLInputElement>('token').value.trim();
    if (!token) return;
    session = sessionFromToken(token, ROLE);
    showMain();
  });
  $('demo-signin').addEventListener('click', async () => {
    try {
      session = await demoSignIn('supervisor');
      showMain();
    } catch (e) {
      $('signin-error').textContent = e instanceof Error ? e.message : String(e);
    }
  });
  const info = (await (await fetch('/ui/info')).json()) as { demo: boolean };
  $('demo-signin').hidden = !info.demo;
  session = loadSession(ROLE);
  if (session) showMain();
  else showSignIn();
}

void start();
