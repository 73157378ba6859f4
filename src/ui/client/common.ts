/**
 * What every Huren page shares: the language (zh-CN default, English), the session token (demo sign-in in demo mode,
 * or a pasted bearer token), and JSON/CSV fetches that turn an OperationOutcome into a readable message.
 */

export type Lang = 'zh' | 'en';

const LANG_KEY = 'huren.lang';

export function currentLang(): Lang {
  const stored = localStorage.getItem(LANG_KEY);
  if (stored === 'zh' || stored === 'en') return stored;
  // zh-CN by default: the users are Chinese health bureaus and doctors; English on request.
  return 'zh';
}

export function setLang(lang: Lang): void {
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

/** Fills every element with `data-i18n="key"` from the dictionary. */
export function translatePage(dict: Record<string, { zh: string; en: string }>, lang: Lang): void {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll<HTMLElement>('[data-i18n]')) {
    const entry = dict[el.dataset.i18n!];
    if (entry) el.textContent = entry[lang];
  }
  for (const el of document.querySelectorAll<HTMLElement>('[data-i18n-label]')) {
    const entry = dict[el.dataset.i18nLabel!];
    if (entry) el.setAttribute('aria-label', entry[lang]);
  }
}

export interface Session {
  token: string;
  expiresAt: number;
  organization?: string;
  role?: string;
}

function sessionKey(role: string): string {
  return `huren.session.${role}`;
}

export function loadSession(role: string): Session | undefined {
  const raw = sessionStorage.getItem(sessionKey(role));
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as Session;
    return s.expiresAt > Date.now() + 5000 ? s : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(role: string, session: Session): void {
  sessionStorage.setItem(sessionKey(role), JSON.stringify(session));
}

export function clearSession(role: string): void {
  sessionStorage.removeItem(sessionKey(role));
}

/** Demo mode: the broker signs the page in as its demo client of that role. */
export async function demoSignIn(role: 'bureau' | 'supervisor' | 'clinician', organization?: string): Promise<Session> {
  const res = await fetch('/ui/demo-session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Huren-Page': '1' },
    body: JSON.stringify({ role, ...(organization ? { organization } : {}) }),
  });
  if (!res.ok) throw new Error(await problemOf(res));
  const body = (await res.json()) as { access_token: string; expires_in: number; organization: string };
  const session = {
    token: body.access_token,
    expiresAt: Date.now() + body.expires_in * 1000,
    organization: body.organization,
    role,
  };
  saveSession(role, session);
  return session;
}

/** A pasted token: its expiry read from the JWT (not verified here; the server does that). */
export function sessionFromToken(token: string, role: string): Session {
  let expiresAt = Date.now() + 300_000;
  try {
    const payload = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: number };
    if (payload.exp) expiresAt = payload.exp * 1000;
  } catch {
    // Not a JWT we can read: keep the default; the server decides.
  }
  const session = { token: token.trim(), expiresAt, role };
  saveSession(role, session);
  return session;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The diagnostics of an OperationOutcome (or an OAuth error), else the status text. */
export async function problemOf(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as {
      issue?: { diagnostics?: string }[];
      error_description?: string;
      error?: string;
    };
    const text =
      body.issue
        ?.map((i) => i.diagnostics)
        .filter(Boolean)
        .join('; ') ||
      body.error_description ||
      body.error;
    if (text) return text;
  } catch {
    // not JSON
  }
  return `${res.status} ${res.statusText}`;
}

export async function fetchWith(session: Session, url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${session.token}`);
  const res = await fetch(url, { ...init, headers });
  if (!res.ok) throw new ApiError(res.status, await problemOf(res));
  return res;
}

export async function getJson<T>(session: Session, url: string): Promise<T> {
  const res = await fetchWith(session, url, { headers: { Accept: 'application/json' } });
  return (await res.json()) as T;
}

/** Creates an element with attributes and children (text or nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function formatYuan(value: number | null | undefined, lang: Lang): string {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en-US', {
    style: 'currency',
    currency: 'CNY',
    maximumFractionDigits: 2,
  }).format(value);
}

export function formatCount(value: number | null | undefined, lang: Lang): string {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en-US').format(value);
}

export function formatRate(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return `${(value * 100).toFixed(1)}%`;
}

/** Today's date in Asia/Shanghai, YYYY-MM-DD (the region the reports count days in). */
export function localToday(): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(new Date());
}
