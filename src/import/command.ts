import fs from 'node:fs';
import path from 'node:path';
import { EXIT, UsageError } from '../cli/errors.js';
import { megabytes, progress } from '../progress.js';
import { openServices } from '../cli/services.js';
import { importPath } from './import.js';
import { DEFAULT_ENCODING, isSupportedEncoding } from './readers.js';
import type { IngestCounts } from './ingest.js';

export const describeCounts = (c: IngestCounts) =>
  `${c.created} created, ${c.updated} updated, ${c.unchanged} unchanged, ${c.older} older skipped, ${c.rejected} rejected`;

export interface ImportOptions {
  rejects?: string;
  owner?: string;
  pageSize?: string;
  encoding?: string;
}

/** `huren import FILE|DIR [--rejects FILE] [--owner Organization/ID] [--page-size N] [--encoding gb18030]` */
export async function importCommand(file: string, options: ImportOptions): Promise<number> {
  const target = path.resolve(file);
  if (!fs.existsSync(target)) throw new UsageError(`${file} does not exist`);
  const owner = options.owner ? `Organization/${options.owner.replace(/^Organization\//, '')}` : undefined;
  const pageSize = options.pageSize ? Number(options.pageSize) : undefined;
  if (pageSize !== undefined && !(Number.isInteger(pageSize) && pageSize >= 1 && pageSize <= 1000)) {
    throw new UsageError('--page-size must be an integer from 1 to 1000');
  }
  const encoding = options.encoding ?? DEFAULT_ENCODING;
  if (!isSupportedEncoding(encoding)) {
    throw new UsageError(`--encoding ${encoding} is not a known character encoding (e.g. utf-8, gb18030, gbk)`);
  }
  const rejectsFile = path.resolve(options.rejects ?? 'huren-import-rejects.ndjson');
  const { deps, close } = await openServices();
  const bar = progress('import', { format: megabytes, unit: ' MB' });
  try {
    const summary = await importPath(deps, target, {
      owner,
      rejectsFile,
      pageSize,
      encoding,
      onProgress: (p) => bar.update(p.bytes, p.totalBytes, describeCounts(p.counts)),
    });
    bar.stop();
    deps.log.info('Import finished', { files: summary.files.length, ...summary.counts, ms: summary.ms });
    say(
      `Imported ${summary.files.length} file(s) in ${(summary.ms / 1000).toFixed(1)} s: ${describeCounts(summary.counts)}`,
    );
    if (summary.counts.rejected) say(`Refused resources, with their line and OperationOutcome: ${rejectsFile}`);
    return summary.counts.rejected ? EXIT.refused : EXIT.ok;
  } finally {
    bar.stop();
    await close();
  }
}

/** A result line on stdout (progress and logs go to stderr). */
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
