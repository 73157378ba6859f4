import type { Collection } from 'mongodb';

const DUPLICATE_KEY = 11000;

/** What became of one caller's documents. */
export interface BatchedInsert {
  /** Positions (in the caller's list) refused because their `_id` exists already. */
  duplicates: number[];
}

interface Waiting<T> {
  docs: T[];
  resolve: (result: BatchedInsert) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for the small immutable documents written on every request of a hot path (reuse checks, their
 * ledger prompts, AuditEvents). While one insert is in flight, the documents of other requests wait and go together
 * in the next unordered insertMany. There is no timer: an idle collection is written at once (no added latency), a
 * busy one takes many documents per round trip instead of one. Every caller's promise settles only when its own
 * documents are stored (or refused), so nothing is answered before it is durable.
 */
export class InsertBatcher<T extends { _id: string }> {
  private queue: Waiting<T>[] = [];
  private flushing = false;

  constructor(
    private readonly collection: Collection<T>,
    /** Most documents in one insertMany. */
    private readonly maxDocs = 500,
  ) {}

  insert(docs: T[]): Promise<BatchedInsert> {
    if (docs.length === 0) return Promise.resolve({ duplicates: [] });
    return new Promise<BatchedInsert>((resolve, reject) => {
      this.queue.push({ docs, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch: Waiting<T>[] = [];
        let size = 0;
        while (this.queue.length > 0 && (batch.length === 0 || size + this.queue[0]!.docs.length <= this.maxDocs)) {
          const next = this.queue.shift()!;
          batch.push(next);
          size += next.docs.length;
        }
        await this.write(batch);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async write(batch: Waiting<T>[]): Promise<void> {
    const all = batch.flatMap((w) => w.docs);
    const failed = new Map<number, { code?: number }>();
    try {
      await this.collection.insertMany(all as never[], { ordered: false });
    } catch (err) {
      const raw = (err as { writeErrors?: unknown }).writeErrors;
      const list = (Array.isArray(raw) ? raw : raw ? [raw] : []) as { index: number; code?: number }[];
      if (list.length === 0) {
        // Not a per-document refusal (the connection, the server): every caller of this batch learns of it.
        for (const w of batch) w.reject(err);
        return;
      }
      for (const e of list) failed.set(e.index, e);
    }
    let offset = 0;
    for (const w of batch) {
      const mine = w.docs.map((_, i) => failed.get(offset + i));
      offset += w.docs.length;
      const other = mine.find((e) => e && e.code !== DUPLICATE_KEY);
      if (other) {
        w.reject(Object.assign(new Error('Insert refused'), { code: other.code }));
        continue;
      }
      w.resolve({ duplicates: mine.flatMap((e, i) => (e ? [i] : [])) });
    }
  }
}
