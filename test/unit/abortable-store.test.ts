import { describe, expect, test } from 'vitest';
import { abortableStore } from '../../src/fhir/abortable-store.js';
import { ClientGoneError } from '../../src/fhir/request.js';

/** Something shaped like the store that records which calls reached it. */
class RecordingStore {
  readonly calls: string[] = [];
  private readonly secret = 'kept';
  async find(): Promise<string[]> {
    this.calls.push('find');
    return [this.secret];
  }
  async findByRefs(): Promise<string[]> {
    this.calls.push('findByRefs');
    return [];
  }
  async commit(): Promise<string[]> {
    this.calls.push('commit');
    return [];
  }
  async releaseClaim(): Promise<void> {
    this.calls.push('releaseClaim');
  }
}

describe('a request whose client has gone away', () => {
  test('starts no further reads once its client is gone', async () => {
    const store = new RecordingStore();
    const controller = new AbortController();
    const seen = abortableStore(store, controller.signal);
    expect(await seen.find()).toEqual(['kept']); // methods still run on the store itself
    controller.abort(new ClientGoneError());
    await expect(() => seen.findByRefs()).toThrow(ClientGoneError);
    await expect(() => seen.find()).toThrow(ClientGoneError);
    expect(store.calls).toEqual(['find']);
  });

  test('stores no write once its client is gone, and still gives back its claims', async () => {
    const store = new RecordingStore();
    const controller = new AbortController();
    controller.abort(new ClientGoneError());
    const seen = abortableStore(store, controller.signal);
    await expect(() => seen.commit()).toThrow(ClientGoneError);
    await seen.releaseClaim();
    expect(store.calls).toEqual(['releaseClaim']);
  });

  test('without a signal the store is used as it is', () => {
    const store = new RecordingStore();
    expect(abortableStore(store, undefined)).toBe(store);
  });
});
