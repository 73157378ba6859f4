/**
 * The bureau dashboard (/dashboard): headline figures, the prompt → viewed → accepted funnel, savings by month, by
 * institution and by category, and decline reasons, for a period and optionally one institution. At a broker with
 * children (a city's, the province's), a region selector shows this broker's own figures, the whole federation's or
 * one region's, and a table shows every region (those that did not answer named as such) and the recognitions across
 * regions. Every figure comes from GET /reports/savings (the same numbers as the JSON/CSV reports and the
 * MeasureReport); nothing is computed here except layout.
 */
import type { EChartsOption, EChartsType } from 'echarts';
import {
  ApiError,
  clearSession,
  currentLang,
  demoSignIn,
  fetchWith,
  formatCount,
  formatRate,
  formatYuan,
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
import type {
  Bilingual,
  DeclineReasonLegend,
  DimensionValue,
  FederationSummary,
  Figures,
  SavingsRow as Row,
} from '../../reports/report-types.js';

declare const echarts: typeof import('echarts');

/** The part of the savings report the dashboard reads (GET /reports/savings). */
interface Report {
  period: { from: string; to: string };
  rows: Row[];
  totals: Figures;
  declineReasons: DeclineReasonLegend[];
  /** The exact definition of every figure (shown as tooltips). */
  definitions: Record<string, Bilingual>;
  generatedAt: string;
  minCell: number;
  federation?: FederationSummary;
}

const ROLE = 'bureau';

const T: Record<string, Bilingual> = {
  title: { zh: '检查检验结果互认监管看板', en: 'Result recognition dashboard' },
  signOut: { zh: '退出', en: 'Sign out' },
  signinTitle: { zh: '登录', en: 'Sign in' },
  signinText: {
    zh: '看板展示汇总数据，需卫生健康行政部门（bureau）角色的访问令牌。',
    en: 'The dashboard shows aggregates only and needs an access token of the health bureau (bureau role).',
  },
  demoSignin: { zh: '以演示卫健委身份进入', en: 'Enter as the demo health bureau' },
  tokenLabel: { zh: '访问令牌（Bearer）', en: 'Access token (Bearer)' },
  useToken: { zh: '使用令牌', en: 'Use token' },
  from: { zh: '开始日期', en: 'From' },
  to: { zh: '结束日期', en: 'To' },
  institution: { zh: '医疗机构', en: 'Institution' },
  allInstitutions: { zh: '全部机构', en: 'All institutions' },
  apply: { zh: '查询', en: 'Apply' },
  downloadCsv: { zh: '下载 CSV', en: 'Download CSV' },
  saving: { zh: '节约费用', en: 'Saving' },
  accepted: { zh: '互认项次', en: 'Items reused' },
  patients: { zh: '互认人次', en: 'Patient visits' },
  referenceAccepted: { zh: '参考采纳', en: 'Reference acceptances' },
  supervision: { zh: '不予互认监管', en: 'Supervision of declines' },
  recognitionRate: { zh: '互认率', en: 'Recognition rate' },
  retrievalRate: { zh: '调阅率', en: 'Retrieval rate' },
  prompts: { zh: '提醒次数', en: 'Prompts' },
  offered: { zh: '可互认提醒', en: 'Reusable offered' },
  viewed: { zh: '调阅', en: 'Viewed' },
  declined: { zh: '不予互认', en: 'Declined' },
  funnel: { zh: '提醒 → 调阅 → 互认', en: 'Prompt → viewed → reused' },
  byMonth: { zh: '按月节约费用', en: 'Saving by month' },
  byInstitution: { zh: '各机构节约费用', en: 'Saving by institution' },
  byCategory: { zh: '各类别节约费用', en: 'Saving by category' },
  declineReasons: { zh: '不予互认理由', en: 'Reasons for not reusing' },
  tableTitle: { zh: '各机构明细', en: 'By institution' },
  total: { zh: '合计', en: 'Total' },
  notCounted: { zh: '（不计为拒绝）', en: ' (not counted as a decline)' },
  generated: { zh: '数据生成于', en: 'Generated at' },
  period: { zh: '统计期间', en: 'Period' },
  noData: { zh: '该期间没有数据', en: 'No data for this period' },
  noDeclines: { zh: '该期间没有不予互认', en: 'No declines in this period' },
  expired: { zh: '登录已过期，请重新登录。', en: 'The session expired; sign in again.' },
  region: { zh: '地区', en: 'Region' },
  thisBroker: { zh: '本级', en: 'This broker' },
  allRegions: { zh: '本级及全部下级', en: 'This broker and all below' },
  regionsTitle: { zh: '各地区明细', en: 'By region' },
  crossRegion: { zh: '跨地区互认', en: 'Cross-region recognitions' },
  exportedBy: { zh: '结果所在地区', en: 'Result held in' },
  importedBy: { zh: '互认所在地区', en: 'Recognised in' },
  notAnswered: { zh: '未应答', en: 'did not answer' },
  missingNote: {
    zh: '以下地区未应答，其数据未计入：',
    en: 'These regions did not answer; their figures are not included: ',
  },
  noCrossRegion: { zh: '该期间没有跨地区互认', en: 'No cross-region recognitions in this period' },
};

let lang: Lang = currentLang();
let session: Session | undefined;
let lastReports: { org: Report; month: Report; category: Report } | undefined;
/** The federation by region (GET /reports/savings?scope=federation&by=region); absent at a broker without children. */
let lastRegions: Report | undefined;
const charts = new Map<string, EChartsType>();
/** The institutions of the unfiltered period, code → names (the filter's options, re-labelled on a language switch). */
const institutions = new Map<string, DimensionValue>();

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const t = (key: string) => T[key]![lang];
const nameOf = (v: DimensionValue | undefined) => (v ? (v.name?.[lang] ?? v.code) : '');

function chart(id: string): EChartsType {
  let c = charts.get(id);
  if (!c) {
    c = echarts.init($(id), undefined, { renderer: 'canvas' });
    charts.set(id, c);
  }
  return c;
}

/** The period alone, as query parameters. */
function period(): URLSearchParams {
  return new URLSearchParams({ from: $<HTMLInputElement>('from').value, to: $<HTMLInputElement>('to').value });
}

/** The region chosen: '' this broker's own figures, '*' the whole federation, else a division code. */
const regionChoice = () => $<HTMLSelectElement>('region').value;

/** The filters as query parameters (without `by`): the same in the page's URL and the report's. */
function filters(): URLSearchParams {
  const q = period();
  const region = regionChoice();
  if (region) q.set('scope', 'federation');
  if (region && region !== '*') q.set('region', region);
  const org = $<HTMLSelectElement>('organization').value;
  if (org && region !== '*') q.set('organization', org);
  return q;
}

function query(by: string): string {
  const q = filters();
  // Over the whole federation an institution is named with its region (the same id may be two institutions).
  q.set('by', regionChoice() === '*' && by.split(',').includes('organization') ? `region,${by}` : by);
  return q.toString();
}

/** The page's URL carries the filters, the period and the language: a view can be bookmarked and shared. */
function saveState(): void {
  const q = filters();
  q.set('lang', lang);
  history.replaceState(null, '', `${location.pathname}?${q.toString()}`);
  const link = document.getElementById('supervision-link') as HTMLAnchorElement | null;
  if (link) link.href = `/dashboard/supervision?${q.toString()}`;
}

/** Filters from the URL, when it has them. */
function restoreState(): void {
  const q = new URLSearchParams(location.search);
  const date = /^\d{4}-\d{2}-\d{2}$/;
  if (date.test(q.get('from') ?? '')) $<HTMLInputElement>('from').value = q.get('from')!;
  if (date.test(q.get('to') ?? '')) $<HTMLInputElement>('to').value = q.get('to')!;
  if (q.get('scope') === 'federation') {
    const region = q.get('region');
    const select = $<HTMLSelectElement>('region');
    const value = region && /^\d{6}$/.test(region) ? region : '*';
    if (![...select.options].some((o) => o.value === value)) select.append(h('option', { value }, value));
    select.value = value;
  }
  const org = q.get('organization');
  if (org && /^[A-Za-z0-9\-.]{1,64}$/.test(org)) {
    const select = $<HTMLSelectElement>('organization');
    // Named once the report lists it; selectable at once.
    if (![...select.options].some((o) => o.value === org)) select.append(h('option', { value: org }, org));
    select.value = org;
  }
  if (q.get('lang') === 'en' || q.get('lang') === 'zh') lang = q.get('lang') as Lang;
}

async function load(): Promise<void> {
  if (!session) return;
  $('error').textContent = '';
  try {
    const [org, month, category, regions] = await Promise.all([
      ...['organization', 'month', 'category'].map((by) => getJson<Report>(session!, `/reports/savings?${query(by)}`)),
      // The regions of the federation (this broker alone when it has no children).
      getJson<Report>(session!, `/reports/savings?${period().toString()}&scope=federation&by=region`),
    ]);
    lastReports = { org: org!, month: month!, category: category! };
    lastRegions = (regions!.federation?.regions.length ?? 0) > 1 ? regions : undefined;
    fillRegions();
    fillInstitutions(org!);
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

/** The region filter: shown at a broker with children, listing this broker, all of them, and each region. */
function fillRegions(): void {
  const select = $<HTMLSelectElement>('region');
  $('region-filter').hidden = !lastRegions && !regionChoice();
  for (const r of lastRegions?.federation?.regions ?? []) {
    if (r.depth === 0 || !r.code) continue;
    const label = `${'　'.repeat(r.depth - 1)}${r.name[lang]} (${r.code})`;
    const option = [...select.options].find((o) => o.value === r.code);
    if (option) option.textContent = label;
    else select.append(h('option', { value: r.code }, label));
  }
  // Over the whole federation institutions are not filtered one by one (the same id may be in two regions).
  $<HTMLSelectElement>('organization').disabled = regionChoice() === '*';
}

/** The institution filter lists the institutions of the periods shown (kept while a filter is applied). */
function fillInstitutions(report: Report): void {
  for (const row of report.rows) if (row.organization) institutions.set(row.organization.code, row.organization);
  labelInstitutions();
}

/** The filter's options in the page's language (again on every language switch). */
function labelInstitutions(): void {
  const select = $<HTMLSelectElement>('organization');
  const current = new Set([...select.options].map((o) => o.value));
  for (const [code, value] of institutions) {
    if (!current.has(code)) select.append(h('option', { value: code }, nameOf(value)));
  }
  for (const option of [...select.options]) {
    const value = institutions.get(option.value);
    if (value) option.textContent = nameOf(value);
  }
}

/** The exact definitions of the report, as tooltips of every figure's name. */
function showDefinitions(report: Report): void {
  for (const el of document.querySelectorAll<HTMLElement>('[data-def]')) {
    const def = report.definitions[el.dataset.def!];
    if (def) el.title = def[lang];
  }
}

/** A chart, or the card's no-data message instead of bare axes. */
function showChart(id: string, hasData: boolean, message = t('noData')): boolean {
  const el = $(id);
  const note = el.parentElement!.querySelector<HTMLElement>('.no-data')!;
  note.textContent = message;
  note.hidden = hasData;
  const wasHidden = el.hidden;
  el.hidden = !hasData;
  if (!hasData) charts.get(id)?.clear();
  else if (wasHidden) charts.get(id)?.resize();
  return hasData;
}

/** How wide a category axis's labels may be: the grid leaves them this room and they wrap within it. */
const labelWidth = (id: string) => Math.max(90, Math.min(220, Math.round($(id).clientWidth * 0.4)));

function render(): void {
  if (!lastReports) return;
  const { org, month, category } = lastReports;
  const totals = org.totals;
  showDefinitions(org);
  const empty = !totals.prompts;
  $('no-data').hidden = !empty;
  $('h-reference').textContent = formatCount(totals.referenceAccepted, lang);
  $('h-saving').textContent = formatYuan(totals.saving, lang);
  $('h-accepted').textContent = formatCount(totals.accepted, lang);
  $('h-patients').textContent = formatCount(totals.patients, lang);
  $('h-recognition').textContent = formatRate(totals.recognitionRate);
  $('h-retrieval').textContent = formatRate(totals.retrievalRate);
  $('h-prompts').textContent = formatCount(totals.prompts, lang);
  $('period-note').textContent = `${t('period')}: ${org.period.from} – ${org.period.to}`;
  $('generated').textContent =
    `${t('generated')} ${new Date(org.generatedAt).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB')}`;

  const base: EChartsOption = {
    textStyle: { fontFamily: 'system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif' },
    tooltip: { trigger: 'item' },
    animation: false,
  };
  if (showChart('chart-funnel', !empty))
    chart('chart-funnel').setOption(
      {
        ...base,
        series: [
          {
            type: 'funnel',
            sort: 'none',
            // The last step stays wide enough for its label.
            minSize: '30%',
            left: '10%',
            width: '80%',
            label: { show: true, position: 'inside', formatter: '{b}: {c}' },
            color: ['#94a3b8', '#1d4ed8', '#0891b2', '#0f766e'],
            data: [
              { name: t('prompts'), value: totals.prompts ?? 0 },
              { name: t('offered'), value: totals.offered ?? 0 },
              { name: t('viewed'), value: totals.viewed ?? 0 },
              { name: t('accepted'), value: totals.accepted ?? 0 },
            ],
          },
        ],
      },
      true,
    );
  const months = [...month.rows].sort((a, b) => (a.month?.code ?? '').localeCompare(b.month?.code ?? ''));
  if (showChart('chart-month', months.length > 0))
    chart('chart-month').setOption(
      {
        ...base,
        tooltip: { trigger: 'axis' },
        grid: { left: 70, right: 20, top: 20, bottom: 40 },
        xAxis: { type: 'category', data: months.map((r) => r.month?.code ?? '') },
        yAxis: { type: 'value', name: '¥' },
        series: [
          { type: 'bar', name: t('saving'), data: months.map((r) => r.saving ?? 0), itemStyle: { color: '#0f766e' } },
        ],
      },
      true,
    );
  rankedBars('chart-organization', org.rows, institutionLabel, base);
  rankedBars('chart-category', category.rows, (r) => nameOf(r.category), base);

  const reasons = org.declineReasons
    .map((r) => ({ r, n: totals.declinedByReason[r.code] ?? 0 }))
    .filter((x) => x.n > 0)
    .sort((a, b) => b.n - a.n);
  if (showChart('chart-reasons', reasons.length > 0, empty ? t('noData') : t('noDeclines')))
    chart('chart-reasons').setOption(
      {
        ...base,
        tooltip: { trigger: 'axis' },
        grid: { left: labelWidth('chart-reasons') + 12, right: 40, top: 10, bottom: 30 },
        xAxis: { type: 'value', minInterval: 1 },
        yAxis: {
          type: 'category',
          inverse: true,
          axisLabel: { width: labelWidth('chart-reasons'), overflow: 'break' },
          data: reasons.map((x) => `${x.r.name[lang]}${x.r.countsAsDecline ? '' : t('notCounted')}`),
        },
        series: [
          {
            type: 'bar',
            name: t('declined'),
            barMaxWidth: 26,
            data: reasons.map((x) => ({
              value: x.n,
              itemStyle: { color: x.r.countsAsDecline ? '#b45309' : '#94a3b8' },
            })),
            label: { show: true, position: 'right' },
          },
        ],
      },
      true,
    );
  renderTable(org);
  renderRegions();
}

/** An institution's name, with its region's over the whole federation. */
const institutionLabel = (r: Row) => (r.region ? `${nameOf(r.region)} · ` : '') + nameOf(r.organization);

/** Every region of the federation with its figures, those that did not answer named, and the cross-region table. */
function renderRegions(): void {
  $('regions-card').hidden = !lastRegions;
  if (!lastRegions) return;
  const summary = lastRegions.federation!;
  const byCode = new Map(lastRegions.rows.map((r) => [r.region?.code ?? '', r]));
  const cells = (f: Figures | undefined) =>
    [
      formatCount(f?.prompts ?? 0, lang),
      formatCount(f?.accepted ?? 0, lang),
      formatCount(f?.patients ?? 0, lang),
      formatCount(f?.declined ?? 0, lang),
      f ? formatRate(f.recognitionRate) : '—',
      formatYuan(f?.saving ?? 0, lang),
    ].map((c) => h('td', {}, c));
  $('regions-table')
    .querySelector('tbody')!
    .replaceChildren(
      ...summary.regions.map((r) => {
        const label = `${'　'.repeat(r.depth)}${r.name[lang]}${r.code ? ` (${r.code})` : ''}`;
        return h(
          'tr',
          { 'data-region': r.code, ...(r.answered ? {} : { class: 'missing' }) },
          h('th', { scope: 'row' }, label),
          ...(r.answered
            ? cells(byCode.get(r.code))
            : [h('td', { colspan: '6', class: 'no-data-cell' }, `${t('notAnswered')}: ${r.reason ?? ''}`)]),
        );
      }),
    );
  $('regions-table')
    .querySelector('tfoot')!
    .replaceChildren(h('tr', {}, h('th', { scope: 'row' }, t('total')), ...cells(lastRegions.totals)));
  const missing = $('regions-missing');
  missing.hidden = summary.missing.length === 0;
  missing.textContent = `${t('missingNote')}${summary.missing.map((r) => `${r.name[lang]} (${r.code})`).join(lang === 'zh' ? '、' : ', ')}`;
  const cross = summary.crossRegion;
  $('cross-table')
    .querySelector('tbody')!
    .replaceChildren(
      ...(cross.length
        ? cross.map((c) =>
            h(
              'tr',
              {},
              h('td', {}, `${nameOf(c.from)}${c.from.code ? ` (${c.from.code})` : ''}`),
              h('td', { class: 'text' }, `${nameOf(c.to)}${c.to.code ? ` (${c.to.code})` : ''}`),
              h('td', {}, formatCount(c.accepted, lang)),
              h('td', {}, formatYuan(c.saving, lang)),
            ),
          )
        : [h('tr', {}, h('td', { colspan: '4', class: 'no-data-cell' }, t('noCrossRegion')))]),
    );
}

function rankedBars(id: string, rows: Row[], label: (r: Row) => string, base: EChartsOption): void {
  const ranked = [...rows].sort((a, b) => (b.saving ?? 0) - (a.saving ?? 0));
  if (!showChart(id, ranked.length > 0)) return;
  chart(id).setOption(
    {
      ...base,
      tooltip: { trigger: 'axis' },
      grid: { left: labelWidth(id) + 12, right: 70, top: 10, bottom: 30 },
      // Fewer ticks on a phone, so the amounts do not run together.
      xAxis: { type: 'value', name: '¥', splitNumber: $(id).clientWidth < 500 ? 2 : 5 },
      yAxis: {
        type: 'category',
        inverse: true,
        axisLabel: { width: labelWidth(id), overflow: 'break' },
        data: ranked.map(label),
      },
      series: [
        {
          type: 'bar',
          name: t('saving'),
          data: ranked.map((r) => r.saving ?? 0),
          barMaxWidth: 26,
          itemStyle: { color: '#1d4ed8' },
          label: {
            show: true,
            position: 'right',
            formatter: (p: { value?: unknown }) => formatYuan(Number(p.value), lang),
          },
        },
      ],
    },
    true,
  );
}

function renderTable(report: Report): void {
  const cells = (f: Figures) => [
    formatCount(f.prompts, lang),
    formatCount(f.offered, lang),
    formatCount(f.viewed, lang),
    formatCount(f.accepted, lang),
    formatCount(f.referenceAccepted, lang),
    formatCount(f.patients, lang),
    formatCount(f.declined, lang),
    formatRate(f.recognitionRate),
    formatYuan(f.saving, lang),
  ];
  const body = $('table').querySelector('tbody')!;
  body.replaceChildren(
    ...(report.rows.length
      ? [...report.rows]
          .sort((a, b) => (b.saving ?? 0) - (a.saving ?? 0))
          .map((r) =>
            h(
              'tr',
              { 'data-organization': r.organization?.code ?? '' },
              h('th', { scope: 'row' }, institutionLabel(r)),
              ...cells(r).map((c) => h('td', {}, c)),
            ),
          )
      : [h('tr', {}, h('td', { colspan: '10', class: 'no-data-cell' }, t('noData')))]),
  );
  $('table')
    .querySelector('tfoot')!
    .replaceChildren(
      h(
        'tr',
        { id: 'totals-row' },
        h('th', { scope: 'row' }, t('total')),
        ...cells(report.totals).map((c) => h('td', {}, c)),
      ),
    );
}

async function downloadCsv(): Promise<void> {
  if (!session) return;
  try {
    const res = await fetchWith(
      session,
      `/reports/savings?${query('organization,category,month')}&format=csv&lang=${lang}`,
    );
    const blob = await res.blob();
    const a = h('a', {
      href: URL.createObjectURL(blob),
      download: `huren-savings-${$<HTMLInputElement>('from').value}-${$<HTMLInputElement>('to').value}.csv`,
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
  labelInstitutions();
  fillRegions();
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
  // Another region has other institutions: the institution filter starts again.
  $('region').addEventListener('change', () => {
    institutions.clear();
    const select = $<HTMLSelectElement>('organization');
    for (const o of [...select.options]) if (o.value) o.remove();
    select.value = '';
    void load();
  });
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
      session = await demoSignIn('bureau');
      showMain();
    } catch (e) {
      $('signin-error').textContent = e instanceof Error ? e.message : String(e);
    }
  });
  // Charts follow the width (the labels' width too: re-rendered).
  window.addEventListener('resize', () => {
    charts.forEach((c) => c.resize());
    render();
  });

  const info = (await (await fetch('/ui/info')).json()) as { demo: boolean };
  $('demo-signin').hidden = !info.demo;
  session = loadSession(ROLE);
  if (session) showMain();
  else showSignIn();
}

void start();
