import fs from 'node:fs';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { issue, outcome } from '../fhir/outcomes.js';
import { addCounts, emptyCounts, ingestPage, type IngestCounts, type IngestDeps, type IngestItem } from './ingest.js';
import { readBundle, readNdjson, type ReadItem, type ReadProgress } from './readers.js';

/**
 * `huren import FILE|DIR`: bulk import of NDJSON and Bundle JSON files (the shape of a FHIR Bulk Data export),
 * streamed page by page through the connectors' ingest path. Re-importing the same files changes nothing; an import
 * killed half-way is completed by running it again (committed pages come back unchanged, the page in flight is
 * replayed from the ingest log at the next start).
 */

export interface ImportOptions {
  /** Every resource must belong to this institution (`Organization/…`), as if its HIS pushed it. */
  owner?: string;
  /** Where refused resources are reported, one JSON line each (file, line, OperationOutcome). */
  rejectsFile: string;
  /** Resources per ingest-log entry. */
  pageSize?: number;
  /** The files' character encoding (default UTF-8; `gb18030` for exports of systems that write GB18030/GBK). */
  encoding?: string;
  onProgress?: (progress: ImportProgress) => void;
}

export interface ImportProgress {
  file: string;
  bytes: number;
  totalBytes: number;
  counts: IngestCounts;
}

export interface ImportSummary {
  files: string[];
  counts: IngestCounts;
  rejectsFile: string;
  ms: number;
}

/** One line of the rejects file. */
export interface RejectLine {
  file: string;
  line: number;
  where: string;
  ref?: string;
  outcome: unknown;
}

const DEFAULT_PAGE_SIZE = 200;

/** Bulk Data files are per type; reference targets first so a result's patient is known when its facts are indexed. */
const TYPE_ORDER = ['Organization', 'Patient', 'ServiceRequest', 'Observation', 'DiagnosticReport'];

export async function importPath(deps: IngestDeps, target: string, options: ImportOptions): Promise<ImportSummary> {
  const started = Date.now();
  const files = listImportFiles(target, options.rejectsFile);
  const totalBytes = files.reduce((sum, f) => sum + fs.statSync(f).size, 0);
  const counts = emptyCounts();
  const rejects = fs.createWriteStream(options.rejectsFile, { flags: 'w' });
  let doneBytes = 0;
  try {
    for (const file of files) {
      const progress: ReadProgress = { bytes: 0 };
      const report = () =>
        options.onProgress?.({ file, bytes: doneBytes + progress.bytes, totalBytes, counts: { ...counts } });
      await importFile(deps, file, progress, options, counts, rejects, report);
      doneBytes += fs.statSync(file).size;
      progress.bytes = 0;
      report();
    }
  } finally {
    rejects.end();
    await finished(rejects);
  }
  return { files, counts, rejectsFile: options.rejectsFile, ms: Date.now() - started };
}

async function importFile(
  deps: IngestDeps,
  file: string,
  progress: ReadProgress,
  options: ImportOptions,
  counts: IngestCounts,
  rejects: fs.WriteStream,
  report: () => void,
): Promise<void> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const reader = /\.(ndjson|jsonl)$/i.test(file)
    ? readNdjson(file, progress, options.encoding)
    : readBundle(file, progress, options.encoding);
  let page: ReadItem[] = [];
  const flush = async () => {
    const items = page;
    page = [];
    const parsed = items.filter((i): i is ReadItem & IngestItem => 'resource' in i);
    const results = await ingestPage(deps, parsed, {
      ...(options.owner ? { owner: options.owner } : {}),
      agent: 'import',
    });
    addCounts(counts, results);
    const lines: RejectLine[] = [];
    for (const i of items) {
      if ('error' in i) {
        counts.rejected++;
        lines.push({ file, line: i.line, where: i.where, outcome: outcome(issue('error', 'structure', i.error)) });
      }
    }
    results.forEach((r, k) => {
      if (r.outcome === 'rejected') {
        lines.push({ file, line: parsed[k].line, where: r.where, ref: r.ref, outcome: r.reason });
      }
    });
    lines.sort((a, b) => a.line - b.line);
    for (const l of lines) {
      if (!rejects.write(JSON.stringify(l) + '\n'))
        await new Promise<void>((resolve) => rejects.once('drain', () => resolve()));
    }
    report();
  };
  for await (const item of reader) {
    page.push(item);
    if (page.length >= pageSize) await flush();
  }
  if (page.length) await flush();
}

/** The files to import: FILE itself, or the NDJSON and JSON files of DIR (not the rejects file), types in order. */
export function listImportFiles(target: string, rejectsFile: string): string[] {
  const stat = fs.statSync(target);
  if (!stat.isDirectory()) return [target];
  const skip = path.resolve(rejectsFile);
  const files = fs
    .readdirSync(target)
    .filter((name) => /\.(ndjson|jsonl|json)$/i.test(name) && !/rejects/i.test(name))
    .map((name) => path.join(target, name))
    .filter((f) => path.resolve(f) !== skip && fs.statSync(f).isFile());
  const rank = (f: string) => {
    const i = TYPE_ORDER.findIndex((t) => path.basename(f).startsWith(t));
    return i === -1 ? TYPE_ORDER.length : i;
  };
  return files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}
