import type { Bundle, BundleEntry } from 'fhir/r4';
import {
  addCounts,
  emptyCounts,
  ingestPage,
  type IngestCounts,
  type IngestDeps,
  type IngestResult,
} from '../import/ingest.js';
import type { SyncEndpoint } from './endpoints.js';
import type { HospitalSource } from './source.js';

/**
 * One incremental pull of a hospital's results: `DiagnosticReport?_lastUpdated=ge<checkpoint>&_sort=_lastUpdated`
 * with its results and subject included, page after page by `link.next`. Each page is ingested as ONE ingest-log
 * entry, and only then does the checkpoint advance to the newest report of the page: a crash anywhere re-reads at
 * most the page in flight, which comes back unchanged. `ge` (not `gt`) re-reads the reports sharing the
 * checkpoint's instant, so several results written in the same millisecond are never skipped.
 */

export interface PullProgress {
  /** Reports read so far, and how many the hospital announced (when it says). */
  reports: number;
  total?: number;
  counts: IngestCounts;
}

export interface PageHooks {
  /** Called after a page is durably ingested, with the checkpoint it reached; persisting it is the caller's. */
  onPage(checkpoint: string | undefined, results: IngestResult[], reports: number): Promise<void>;
  onProgress?(progress: PullProgress): void;
}

export function firstPageUrl(endpoint: SyncEndpoint, checkpoint: string | undefined, summaryCount = false): string {
  const q = new URLSearchParams();
  if (checkpoint) q.append('_lastUpdated', `ge${checkpoint}`);
  if (summaryCount) {
    q.append('_summary', 'count');
  } else {
    q.append('_sort', '_lastUpdated');
    q.append('_include', 'DiagnosticReport:result');
    q.append('_include', 'DiagnosticReport:subject');
    q.append('_count', String(endpoint.pageSize));
  }
  return `DiagnosticReport?${q.toString()}`;
}

export async function pull(
  deps: IngestDeps,
  endpoint: SyncEndpoint,
  source: HospitalSource,
  startCheckpoint: string | undefined,
  hooks: PageHooks,
): Promise<{ counts: IngestCounts; reports: number; checkpoint?: string }> {
  const counts = emptyCounts();
  let checkpoint = startCheckpoint;
  let reports = 0;
  let total: number | undefined;
  if (hooks.onProgress) {
    total = await source
      .bundle(firstPageUrl(endpoint, checkpoint, true))
      .then((b) => b.total)
      .catch(() => undefined);
  }
  let url: string | undefined = firstPageUrl(endpoint, checkpoint);
  while (url) {
    const page: Bundle = await source.bundle(url);
    const { items, matches } = pageItems(page);
    const results = await ingestPage(deps, items, {
      owner: endpoint.institution,
      source: endpoint.baseUrl,
      agent: `sync:${endpoint._id}`,
    });
    addCounts(counts, results);
    reports += matches.length;
    checkpoint = newest(checkpoint, matches);
    await hooks.onPage(checkpoint, results, matches.length);
    hooks.onProgress?.({ reports, total, counts: { ...counts } });
    url = page.link?.find((l) => l.relation === 'next')?.url;
  }
  return { counts, reports, checkpoint };
}

/** The page's resources, included ones (results, patient) before the reports that point at them. */
function pageItems(page: Bundle): { items: { resource: unknown; where: string }[]; matches: BundleEntry[] } {
  const entries = (page.entry ?? []).filter((e) => e?.resource && e.search?.mode !== 'outcome');
  const matches = entries.filter(
    (e) => e.search?.mode !== 'include' && e.resource?.resourceType === 'DiagnosticReport',
  );
  const includes = entries.filter((e) => !matches.includes(e));
  const where = (e: BundleEntry) => e.fullUrl ?? `${e.resource?.resourceType}/${e.resource?.id}`;
  return { items: [...includes, ...matches].map((e) => ({ resource: e.resource, where: where(e) })), matches };
}

/** The later of the checkpoint and the newest `meta.lastUpdated` among the page's reports, as an ISO instant. */
function newest(checkpoint: string | undefined, matches: BundleEntry[]): string | undefined {
  let best = checkpoint ? Date.parse(checkpoint) : -Infinity;
  for (const e of matches) {
    const t = Date.parse(e.resource?.meta?.lastUpdated ?? '');
    if (!Number.isNaN(t) && t > best) best = t;
  }
  return Number.isFinite(best) ? new Date(best).toISOString() : undefined;
}
