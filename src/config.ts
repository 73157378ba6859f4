import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Typed configuration, read once from the environment and validated at start-up (fail fast). */
export interface Config {
  port: number;
  /** Public base URL of the FHIR endpoint, used in Location headers and bundle links. */
  baseUrl: string | undefined;
  mongodbUri: string | undefined;
  /** Where the embedded development database and generated demo material live. */
  dataDir: string;
  mode: 'demo' | 'production';
  logLevel: string;
  /** Maximum accepted request body, in bytes. */
  maxBodyBytes: number;
  /** Maximum number of entries in one Bundle. */
  maxBundleEntries: number;
  /** Maximum number of items in any other JSON array of a request body (Bundle.entry: `maxBundleEntries`). */
  maxArrayItems: number;
  defaultPageSize: number;
  maxPageSize: number;
  /** The longest a search's database query may run before it is stopped and refused as too costly. */
  searchTimeoutMs: number;
  /** Time zone (UTC offset) used for dates without a zone, e.g. search `date=2024-03-05`. */
  defaultTimeZone: string;
  /** How long in-flight requests may take to finish on shutdown. */
  shutdownGraceMs: number;
  /** How long a process holds a hospital's sync lease without renewing it (renewed after every page). */
  syncLeaseSeconds: number;
  /** Lifetime of access tokens, at most 5 minutes (SMART Backend Services). */
  tokenLifetimeSeconds: number;
  /** How often the broker's token-signing key is replaced. */
  keyRotationHours: number;
  /** Browser origins allowed to call the API (CORS); none by default. */
  corsOrigins: string[];
  /** Requests per minute one client may make (per broker process). */
  rateLimitPerMinute: number;
  /** Deepest JSON nesting accepted in a request body. */
  maxJsonDepth: number;
  /** Longest string (value or key) accepted in a JSON body, in characters (FHIR R4 §2.24.0.1: strings ≤ 1 MB). */
  maxStringLength: number;
  /** Largest request line plus headers Node's HTTP parser reads (`431` beyond, as an OperationOutcome). */
  maxHeaderBytes: number;
  /** Longest request URL (path and query) the app accepts (`414` beyond); below `maxHeaderBytes`. */
  maxUrlLength: number;
  /** Most query (or form) parameters in one request (`400` beyond). */
  maxParameters: number;
  /** A separate listener for `/metrics` without a token (Prometheus scrapers); unset: only the admin token. */
  metricsPort: number | undefined;
  /** Address the metrics listener binds to. */
  metricsHost: string;
  /** How long audit events are kept; at least 180 days (Cybersecurity Law: access logs ≥ 6 months). */
  auditRetentionDays: number;
  /** How often at most a process asks the database whether the recognition rules changed (ms). */
  rulesPollMs: number;
  /**
   * Secret of the pseudonymous patient keys (HMAC-SHA256), at least 32 bytes. Unset in demo mode: then
   * `patientKeySecretOf` generates one into `<dataDir>/patient-key-secret`. Required in production mode.
   */
  patientKeySecret: string | undefined;
  /**
   * Secrets of earlier key epochs still honoured during a rotation (HUREN_PATIENT_KEY_PREVIOUS_SECRETS, comma
   * separated): facts are indexed and asked for under these as well, so no match is lost (docs/federation.md).
   */
  patientKeyPreviousSecrets: string[];
  /** Savings reports hide counts below this (small-cell suppression); 0: off. */
  reportMinCell: number;
  /** Synthetic patients seeded at the first start in demo mode (with the showcase patient); 0: no demo data. */
  demoPatients: number;
  /**
   * The longest a reuse check waits for the federated brokers (parent, children, peers) before it answers with what
   * it has (docs/federation.md); each hop keeps a little of it back for the way back.
   */
  federationDeadlineMs: number;
  /**
   * Requests per minute and process that one neighbouring broker may send to this broker's `/federation/*` endpoints
   * (429 with Retry-After beyond): it bounds a runaway or compromised neighbour, not the normal traffic of a tree.
   */
  federationRateLimitPerMinute: number;
}

/** The variable holding the patient key secret. */
export const PATIENT_KEY_SECRET_VAR = 'HUREN_PATIENT_KEY_SECRET';
const MIN_SECRET_BYTES = 32;

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got '${raw}'`);
  }
  return n;
}

function byteSize(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const m = /^(\d+)\s*(b|kb|mb|gb)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} must be a size such as 5mb or 1048576, got '${raw}'`);
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}

/**
 * Values given as files: for any HUREN_* variable and MONGODB_URI, `NAME_FILE` names a file holding the value
 * (Docker and compose secrets are files under /run/secrets). The file's content, without a final newline, is used.
 */
export function resolveFileVariables(env: Env): Env {
  const out: Env = { ...env };
  for (const [key, file] of Object.entries(env)) {
    const m = /^((?:HUREN_[A-Z0-9_]+)|MONGODB_URI)_FILE$/.exec(key);
    if (!m || !file) continue;
    const name = m[1]!;
    if (env[name]) throw new ConfigError(`Set ${name} or ${key}, not both`);
    try {
      out[name] = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new ConfigError(`${key} names ${file}, which cannot be read (${(e as NodeJS.ErrnoException).code})`);
    }
  }
  return out;
}

export function loadConfig(rawEnv: Env = process.env): Config {
  const env = resolveFileVariables(rawEnv);
  const mode = env.HUREN_MODE ?? 'demo';
  if (mode !== 'demo' && mode !== 'production') {
    throw new ConfigError(`HUREN_MODE must be 'demo' or 'production', got '${mode}'`);
  }
  const tz = env.HUREN_DEFAULT_TIMEZONE ?? '+08:00';
  if (!/^[+-](0\d|1[0-4]):[0-5]\d$/.test(tz)) {
    throw new ConfigError(`HUREN_DEFAULT_TIMEZONE must be a UTC offset such as +08:00, got '${tz}'`);
  }
  const baseUrl = env.HUREN_BASE_URL?.replace(/\/+$/, '') || undefined;
  if (baseUrl && !/^https?:\/\/[^\s]+$/.test(baseUrl)) {
    throw new ConfigError(`HUREN_BASE_URL must be an http(s) URL, got '${baseUrl}'`);
  }
  const defaultPageSize = integer(env, 'HUREN_PAGE_SIZE', 50, 1, 1000);
  const maxPageSize = integer(env, 'HUREN_MAX_PAGE_SIZE', 1000, 1, 10000);
  if (defaultPageSize > maxPageSize) throw new ConfigError('HUREN_PAGE_SIZE must not exceed HUREN_MAX_PAGE_SIZE');
  const patientKeySecret = env[PATIENT_KEY_SECRET_VAR] || undefined;
  if (patientKeySecret !== undefined && Buffer.byteLength(patientKeySecret) < MIN_SECRET_BYTES) {
    throw new ConfigError(`${PATIENT_KEY_SECRET_VAR} must have at least ${MIN_SECRET_BYTES} bytes`);
  }
  if (patientKeySecret === undefined && mode === 'production') {
    throw new ConfigError(
      `${PATIENT_KEY_SECRET_VAR} is required in production mode: a random string of at least 32 bytes, kept ` +
        'the same for the life of the database (the recognition index is keyed by it)',
    );
  }
  const patientKeyPreviousSecrets = (env.HUREN_PATIENT_KEY_PREVIOUS_SECRETS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (patientKeyPreviousSecrets.some((s) => Buffer.byteLength(s) < MIN_SECRET_BYTES)) {
    throw new ConfigError(
      `Every secret of HUREN_PATIENT_KEY_PREVIOUS_SECRETS must have at least ${MIN_SECRET_BYTES} bytes`,
    );
  }
  if (patientKeyPreviousSecrets.length && patientKeySecret === undefined) {
    throw new ConfigError(`HUREN_PATIENT_KEY_PREVIOUS_SECRETS is honoured beside ${PATIENT_KEY_SECRET_VAR} only`);
  }
  const maxHeaderBytes = byteSize(env, 'HUREN_MAX_HEADER_SIZE', 64 * 1024);
  if (maxHeaderBytes < 8 * 1024 || maxHeaderBytes > 1024 ** 2) {
    throw new ConfigError('HUREN_MAX_HEADER_SIZE must be between 8kb and 1mb');
  }
  const maxUrlLength = integer(env, 'HUREN_MAX_URL_LENGTH', 8192, 256, 1024 ** 2);
  // The app answers an overlong URL itself (414 naming the limit) only when Node's parser let it through.
  if (maxUrlLength > maxHeaderBytes - 1024) {
    throw new ConfigError('HUREN_MAX_URL_LENGTH must stay at least 1 KiB below HUREN_MAX_HEADER_SIZE');
  }
  return {
    port: integer(env, 'PORT', 8080, 0, 65535),
    baseUrl,
    mongodbUri: env.MONGODB_URI || undefined,
    dataDir: path.resolve(env.HUREN_DATA_DIR ?? 'data'),
    mode,
    logLevel: env.HUREN_LOG_LEVEL ?? (env.NODE_ENV === 'test' ? 'warn' : 'info'),
    maxBodyBytes: byteSize(env, 'HUREN_MAX_BODY', 5 * 1024 ** 2),
    maxBundleEntries: integer(env, 'HUREN_MAX_BUNDLE_ENTRIES', 1000, 1, 100000),
    maxArrayItems: integer(env, 'HUREN_MAX_ARRAY_ITEMS', 1000, 10, 1_000_000),
    defaultPageSize,
    maxPageSize,
    searchTimeoutMs: integer(env, 'HUREN_SEARCH_TIMEOUT_MS', 20000, 1, 600000),
    defaultTimeZone: tz,
    shutdownGraceMs: integer(env, 'HUREN_SHUTDOWN_GRACE_MS', 10000, 0, 600000),
    syncLeaseSeconds: integer(env, 'HUREN_SYNC_LEASE_SECONDS', 120, 5, 3600),
    tokenLifetimeSeconds: integer(env, 'HUREN_TOKEN_LIFETIME', 300, 30, 300),
    keyRotationHours: integer(env, 'HUREN_KEY_ROTATION_HOURS', 24, 1, 24 * 90),
    corsOrigins: (env.HUREN_CORS_ORIGINS ?? '')
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean),
    rateLimitPerMinute: integer(env, 'HUREN_RATE_LIMIT', 1200, 1, 1_000_000),
    maxJsonDepth: integer(env, 'HUREN_MAX_JSON_DEPTH', 64, 8, 1000),
    maxStringLength: integer(env, 'HUREN_MAX_STRING_LENGTH', 1024 * 1024, 1024, 100 * 1024 * 1024),
    maxHeaderBytes,
    maxUrlLength,
    maxParameters: integer(env, 'HUREN_MAX_PARAMETERS', 200, 10, 100000),
    metricsPort: env.HUREN_METRICS_PORT ? integer(env, 'HUREN_METRICS_PORT', 0, 0, 65535) : undefined,
    metricsHost: env.HUREN_METRICS_HOST || '127.0.0.1',
    auditRetentionDays: integer(env, 'HUREN_AUDIT_RETENTION_DAYS', 400, 180, 36500),
    rulesPollMs: integer(env, 'HUREN_RULES_POLL_MS', 5000, 100, 600000),
    patientKeySecret,
    patientKeyPreviousSecrets,
    reportMinCell: integer(env, 'HUREN_REPORT_MIN_CELL', 0, 0, 1000),
    demoPatients: integer(env, 'HUREN_DEMO_PATIENTS', env.NODE_ENV === 'test' ? 0 : 12, 0, 100000),
    federationDeadlineMs: integer(env, 'HUREN_FEDERATION_DEADLINE_MS', 300, 50, 10000),
    federationRateLimitPerMinute: integer(env, 'HUREN_FEDERATION_RATE_LIMIT', 300_000, 1, 100_000_000),
  };
}

/**
 * The patient key secret: the configured one, or in demo mode the one generated into `<dataDir>/patient-key-secret`
 * at first start (mode 0600, created with 'wx' so that parallel first starts agree on the one that landed first).
 */
export function patientKeySecretOf(config: Config): string {
  if (config.patientKeySecret !== undefined) return config.patientKeySecret;
  if (config.mode === 'production') throw new ConfigError(`${PATIENT_KEY_SECRET_VAR} is required in production mode`);
  const file = path.join(config.dataDir, 'patient-key-secret');
  fs.mkdirSync(config.dataDir, { recursive: true });
  try {
    fs.writeFileSync(file, randomBytes(32).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // Another process may have created the file an instant ago and not written it yet: wait for its content.
  for (let attempt = 0; ; attempt++) {
    const secret = fs.readFileSync(file, 'utf8').trim();
    if (Buffer.byteLength(secret) >= MIN_SECRET_BYTES) return secret;
    if (attempt >= 50) {
      throw new ConfigError(`${file} holds no usable patient key secret (at least ${MIN_SECRET_BYTES} bytes)`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}
