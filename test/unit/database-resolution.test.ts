import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { DatabaseUnavailableError, startDatabase } from '../../src/store/database.js';

describe('database resolution', () => {
  const saved = { PATH: process.env.PATH, HUREN_CACHE_DIR: process.env.HUREN_CACHE_DIR };
  afterEach(() => {
    process.env.PATH = saved.PATH;
    if (saved.HUREN_CACHE_DIR === undefined) delete process.env.HUREN_CACHE_DIR;
    else process.env.HUREN_CACHE_DIR = saved.HUREN_CACHE_DIR;
  });

  test('MONGODB_URI wins and starts nothing', async () => {
    const db = await startDatabase({ uri: 'mongodb://db.example:27017/', dataDir: 'unused' });
    expect(db.kind).toBe('external');
    expect(db.uri).toBe('mongodb://db.example:27017/');
    expect(db.description).not.toContain('db.example'); // credentials in a URI never reach the banner
  });

  test('with no URI, no mongod, no cached FerretDB and no Go, the error says what to install', async () => {
    process.env.PATH = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-empty-path-'));
    process.env.HUREN_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-empty-cache-'));
    const attempt = startDatabase({ dataDir: 'unused' });
    await expect(attempt).rejects.toThrow(DatabaseUnavailableError);
    await expect(startDatabase({ dataDir: 'unused' })).rejects.toThrow(/MONGODB_URI.*mongod.*Go 1\.22/s);
  });
});
