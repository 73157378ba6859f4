import fs from 'node:fs';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import iconv from 'iconv-lite';

/**
 * Streaming readers of the files a FHIR Bulk Data export produces: NDJSON (one resource per line) and Bundle JSON.
 * Both hold one resource in memory at a time, so a multi-gigabyte file is read in constant memory.
 */

/** One resource read from a file, or the reason it could not be parsed; `line` is 1-based. */
export type ReadItem =
  { line: number; where: string; resource: unknown } | { line: number; where: string; error: string };

/** A file read so far: bytes consumed, for progress. */
export interface ReadProgress {
  bytes: number;
}

/** The character encoding files are read in: UTF-8 (FHIR R4 §2.6.0), or an export's own, such as GB18030 or GBK. */
export const DEFAULT_ENCODING = 'utf-8';

export function isSupportedEncoding(encoding: string): boolean {
  return iconv.encodingExists(encoding);
}

/** Bytes that are not text in the file's encoding; the rest of the file is not read. */
class NotTextError extends Error {}

/**
 * The text of a file, chunk by chunk. UTF-8 is decoded strictly: a byte sequence that is not UTF-8 (a GB18030 export
 * read without --encoding) stops the file with a clear error instead of becoming U+FFFD in stored resources. Other
 * encodings go through iconv-lite's decoder (GB18030 covers GBK and GB2312). A byte-order mark is dropped.
 */
async function* readText(file: string, progress: ReadProgress, encoding: string): AsyncGenerator<string> {
  const stream = fs.createReadStream(file, { highWaterMark: 256 * 1024 });
  const utf8 = iconv.encodingExists(encoding) && /^utf-?8$/i.test(encoding);
  const strict = new TextDecoder('utf-8', { fatal: true });
  const other = utf8 ? undefined : iconv.getDecoder(encoding);
  for await (const chunk of stream) {
    const offset = progress.bytes;
    progress.bytes = stream.bytesRead;
    if (other) {
      yield other.write(chunk as Buffer);
      continue;
    }
    try {
      yield strict.decode(chunk as Buffer, { stream: true });
    } catch {
      stream.destroy();
      throw new NotTextError(
        `The file is not UTF-8 text (within bytes ${offset}-${progress.bytes}): FHIR JSON is UTF-8; for an export ` +
          'written in GB18030 or GBK, import it with --encoding gb18030',
      );
    }
  }
  const rest = other ? other.end() : strict.decode();
  if (rest) yield rest;
}

export async function* readNdjson(
  file: string,
  progress: ReadProgress,
  encoding = DEFAULT_ENCODING,
): AsyncGenerator<ReadItem> {
  const lines = readline.createInterface({
    input: Readable.from(readText(file, progress, encoding)),
    crlfDelay: Infinity,
  });
  let line = 0;
  try {
    for await (const text of lines) {
      line++;
      if (text.trim() === '') continue;
      try {
        yield { line, where: `line ${line}`, resource: JSON.parse(text) as unknown };
      } catch (err) {
        yield { line, where: `line ${line}`, error: `Not valid JSON: ${(err as Error).message}` };
      }
    }
  } catch (err) {
    if (!(err instanceof NotTextError)) throw err;
    yield { line: line + 1, where: `line ${line + 1}`, error: err.message };
  }
}

/**
 * The resources of a Bundle file (`entry[i].resource`), found by a small JSON scanner that tracks nesting and
 * strings: each entry is parsed on its own as soon as its closing brace is read. Everything outside `entry` is
 * skipped. A file that is not a Bundle yields one error.
 */
export async function* readBundle(
  file: string,
  progress: ReadProgress,
  encoding = DEFAULT_ENCODING,
): AsyncGenerator<ReadItem> {
  const scan = new BundleScanner();
  try {
    for await (const chunk of readText(file, progress, encoding)) yield* scan.push(chunk);
  } catch (err) {
    if (!(err instanceof NotTextError)) throw err;
    yield { line: scan.currentLine, where: `line ${scan.currentLine}`, error: err.message };
    return;
  }
  yield* scan.end();
}

class BundleScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private line = 1;
  /** At depth 1: the last key read, whether a ':' followed it, and the string being read. */
  private lastKey = '';
  private afterColon = false;
  private stringText = '';
  private topType: string | undefined;
  private sawObject = false;
  private inEntryArray = false;
  private entryIndex = 0;
  private entryText: string[] | undefined;
  private entryLine = 0;

  get currentLine(): number {
    return this.line;
  }

  *push(chunk: string): Generator<ReadItem> {
    let start = 0; // where the entry being captured starts in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (c === '\n') this.line++;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.endString();
        else if (this.depth === 1) this.stringText += c;
        continue;
      }
      if (c === '"') {
        this.inString = true;
        this.stringText = '';
      } else if (c === ':' && this.depth === 1) {
        this.afterColon = true;
      } else if (c === ',' && this.depth === 1) {
        this.afterColon = false;
        this.lastKey = '';
      } else if (c === '{' || c === '[') {
        if (this.depth === 0 && c === '{') this.sawObject = true;
        this.depth++;
        if (this.depth === 2 && c === '[' && this.lastKey === 'entry' && this.afterColon) this.inEntryArray = true;
        if (this.depth === 3 && this.inEntryArray && c === '{') {
          this.entryText = [];
          this.entryLine = this.line;
          start = i;
        }
      } else if (c === '}' || c === ']') {
        this.depth--;
        if (this.depth === 2 && this.entryText && c === '}') {
          this.entryText.push(chunk.slice(start, i + 1));
          yield this.entry(this.entryText.join(''));
          this.entryText = undefined;
        }
        if (this.depth === 1 && c === ']') this.inEntryArray = false;
      }
    }
    if (this.entryText) this.entryText.push(chunk.slice(start));
  }

  *end(): Generator<ReadItem> {
    if (!this.sawObject || (this.topType !== undefined && this.topType !== 'Bundle')) {
      yield { line: 1, where: 'line 1', error: 'Not a FHIR Bundle: expected {"resourceType":"Bundle","entry":[…]}' };
    } else if (this.depth !== 0 || this.inString) {
      yield { line: this.line, where: `line ${this.line}`, error: 'The file ends in the middle of the Bundle' };
    }
  }

  private endString(): void {
    this.inString = false;
    if (this.depth !== 1) return;
    if (!this.afterColon) this.lastKey = this.stringText;
    else if (this.lastKey === 'resourceType') this.topType = this.stringText;
  }

  private entry(text: string): ReadItem {
    const index = this.entryIndex++;
    const where = `entry[${index}] (line ${this.entryLine})`;
    let parsed: { resource?: unknown };
    try {
      parsed = JSON.parse(text) as { resource?: unknown };
    } catch (err) {
      return { line: this.entryLine, where, error: `Not valid JSON: ${(err as Error).message}` };
    }
    if (parsed?.resource === undefined) return { line: this.entryLine, where, error: 'The entry has no resource' };
    return { line: this.entryLine, where, resource: parsed.resource };
  }
}
