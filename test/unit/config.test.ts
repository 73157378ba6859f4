import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('configuration', () => {
  test('defaults give a working demo set-up on port 8080 with data under ./data', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.mode).toBe('demo');
    expect(c.dataDir).toMatch(/\/data$/);
    expect(c.maxBodyBytes).toBe(5 * 1024 * 1024);
    expect(c.defaultTimeZone).toBe('+08:00');
    expect(c.mongodbUri).toBeUndefined();
  });

  test('request bodies are bounded: 1000 items per array, 1000 entries per Bundle, 64 levels deep', () => {
    const c = loadConfig({});
    expect([c.maxArrayItems, c.maxBundleEntries, c.maxJsonDepth]).toEqual([1000, 1000, 64]);
    expect(loadConfig({ HUREN_MAX_ARRAY_ITEMS: '5000' }).maxArrayItems).toBe(5000);
  });

  test('requests are bounded: 64 KiB of headers, 8192-character URLs, 200 parameters, 1 MiB strings; no metrics port', () => {
    const c = loadConfig({});
    expect([c.maxHeaderBytes, c.maxUrlLength, c.maxParameters, c.maxStringLength]).toEqual([65536, 8192, 200, 1048576]);
    expect([c.metricsPort, c.metricsHost]).toEqual([undefined, '127.0.0.1']);
    const tuned = loadConfig({
      HUREN_MAX_HEADER_SIZE: '128kb',
      HUREN_MAX_URL_LENGTH: '32768',
      HUREN_METRICS_PORT: '9464',
    });
    expect([tuned.maxHeaderBytes, tuned.maxUrlLength, tuned.metricsPort]).toEqual([131072, 32768, 9464]);
  });

  test('sizes accept units and the base URL loses its trailing slash', () => {
    const c = loadConfig({ HUREN_MAX_BODY: '512kb', HUREN_BASE_URL: 'https://huren.example.org/fhir/' });
    expect(c.maxBodyBytes).toBe(512 * 1024);
    expect(c.baseUrl).toBe('https://huren.example.org/fhir');
  });

  test.each([
    [{ PORT: 'eighty' }, /PORT must be an integer/],
    [{ HUREN_MODE: 'staging' }, /HUREN_MODE must be 'demo' or 'production'/],
    [{ HUREN_MAX_BODY: 'big' }, /HUREN_MAX_BODY must be a size/],
    [{ HUREN_DEFAULT_TIMEZONE: 'Asia/Shanghai' }, /UTC offset such as \+08:00/],
    [{ HUREN_PAGE_SIZE: '500', HUREN_MAX_PAGE_SIZE: '100' }, /must not exceed/],
    [{ HUREN_BASE_URL: 'ftp://x' }, /http\(s\) URL/],
    [{ HUREN_MAX_ARRAY_ITEMS: '0' }, /HUREN_MAX_ARRAY_ITEMS must be an integer between 10 and 1000000/],
    [{ HUREN_MAX_URL_LENGTH: '65536' }, /HUREN_MAX_URL_LENGTH must stay at least 1 KiB below HUREN_MAX_HEADER_SIZE/],
    [{ HUREN_MAX_HEADER_SIZE: '1kb' }, /HUREN_MAX_HEADER_SIZE must be between 8kb and 1mb/],
    [{ HUREN_MAX_PARAMETERS: '5' }, /HUREN_MAX_PARAMETERS must be an integer between 10 and 100000/],
    [{ HUREN_METRICS_PORT: 'x' }, /HUREN_METRICS_PORT must be an integer/],
    [{ HUREN_MODE: 'production' }, /HUREN_PATIENT_KEY_SECRET is required in production mode/],
    [{ HUREN_PATIENT_KEY_SECRET: 'too-short' }, /HUREN_PATIENT_KEY_SECRET must have at least 32 bytes/],
  ])('refuses %o with a message that says what to fix', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  test('secrets may be given as files (compose secrets): NAME_FILE holds the value, a final newline dropped', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-config-'));
    try {
      fs.writeFileSync(path.join(dir, 'secret'), 'a-patient-key-secret-of-32-bytes-or-more\n');
      fs.writeFileSync(path.join(dir, 'uri'), 'mongodb://u:p@mongo:27017/huren?replicaSet=rs0');
      const c = loadConfig({
        HUREN_MODE: 'production',
        HUREN_PATIENT_KEY_SECRET_FILE: path.join(dir, 'secret'),
        MONGODB_URI_FILE: path.join(dir, 'uri'),
      });
      expect(c.patientKeySecret).toBe('a-patient-key-secret-of-32-bytes-or-more');
      expect(c.mongodbUri).toBe('mongodb://u:p@mongo:27017/huren?replicaSet=rs0');
      expect(() => loadConfig({ MONGODB_URI_FILE: path.join(dir, 'missing') })).toThrow(/cannot be read \(ENOENT\)/);
      expect(() => loadConfig({ MONGODB_URI: 'mongodb://x', MONGODB_URI_FILE: path.join(dir, 'uri') })).toThrow(
        /Set MONGODB_URI or MONGODB_URI_FILE, not both/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
