/** The language of an answer meant for a doctor: zh-CN by default, English when the requester prefers it. */

export type Language = 'zh' | 'en';

/** `en` when the doctor's language (Accept-Language, or the EHR's setting) prefers English; zh-CN otherwise. */
export function languageOf(acceptLanguage: string | undefined, fallback?: string): Language {
  const ranked = (acceptLanguage ?? '')
    .split(',')
    .map((part) => {
      const [tag, ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([\d.]+)/.exec(p)?.[1]).find(Boolean);
      return { tag: (tag ?? '').toLowerCase(), q: q === undefined ? 1 : Number(q) };
    })
    .filter((x) => x.tag && x.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const { tag } of ranked) {
    if (tag.startsWith('zh')) return 'zh';
    if (tag.startsWith('en')) return 'en';
  }
  return fallback?.toLowerCase().startsWith('en') ? 'en' : 'zh';
}
