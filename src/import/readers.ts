import fs from 'node:fs';
import readline from 'node:readline';

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

export async function* readNdjson(file: string, progress: ReadProgress): AsyncGenerator<ReadItem> {
  const stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 });
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line++;
    progress.bytes = stream.bytesRead;
    if (text.trim() === '') continue;
    try {
      yield { line, where: `line ${line}`, resource: JSON.parse(text) as unknown };
    } catch (err) {
      yield { line, where: `line ${line}`, error: `Not valid JSON: ${(err as Error).message}` };
    }
  }
}

/**
 * The resources of a Bundle file (`entry[i].resource`), found by a small JSON scanner that tracks nesting and
 * strings: each entry is parsed on its own as soon as its closing brace is read. Everything outside `entry` is
 * skipped. A file that is not a Bundle yields one error.
 */
export async function* readBundle(file: string, progress: ReadProgress): AsyncGenerator<ReadItem> {
  const stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 });
  const scan = new BundleScanner();
  for await (const chunk of stream) {
    progress.bytes = stream.bytesRead;
    yield* scan.push(chunk as string);
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
