import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Db } from 'mongodb';
import client from 'prom-client';
import {
  emptyCounts,
  ingestPage,
  type IngestCounts,
  type IngestDeps,
  type IngestItem,
  type IngestResult,
} from '../import/ingest.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import {
  acquireLease,
  publicView,
  releaseLease,
  renewLease,
  syncCollections,
  type SyncCollections,
  type SyncEndpoint,
  type ResourceCounts,
  type SyncRunCounts,
  type SyncStatus,
} from './endpoints.js';
import { pull, type PullProgress } from './pull.js';
import { DEFAULT_RETRY, HospitalSource, type RetryPolicy } from './source.js';

export interface SyncServiceDeps extends IngestDeps {
  db: Db;
  log: Logger;
  metrics: Metrics;
}

export interface SyncServiceOptions {
  retry?: RetryPolicy;
  /** How long a lease lasts without renewal (renewed after every page). */
  leaseMs?: number;
  /** How often the scheduler looks for hospitals due for a pull. */
  tickMs?: number;
}

export interface SyncRunResult {
  endpoint: string;
  outcome: 'success' | 'failed' | 'busy';
  reports: number;
  counts: ReturnType<typeof emptyCounts>;
  error?: string;
  /** When busy: until when another process holds the hospital's lease (a crashed one's lease runs out then). */
  busyUntil?: Date;
}

const MAX_REJECTS_KEPT = 20;

/**
 * Pull sync of every registered hospital: on demand (`huren sync`, admin API, notifications) and on schedule. Each
 * hospital runs on its own, under its lease: a slow or failing one never holds up the others.
 */
export class SyncService {
  readonly holder = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly running = new Map<string, Promise<SyncRunResult>>();
  private readonly resources: client.Counter<'hospital' | 'outcome'>;
  private readonly failures: client.Counter<'hospital'>;
  private readonly retries: client.Counter<'hospital'>;

  private constructor(
    private readonly deps: SyncServiceDeps,
    readonly collections: SyncCollections,
    private readonly options: SyncServiceOptions,
  ) {
    const registers = [deps.metrics.registry];
    this.resources = new client.Counter({
      name: 'huren_sync_resources_total',
      help: 'Resources pulled from hospital servers, by hospital (endpoint id) and outcome',
      labelNames: ['hospital', 'outcome'] as const,
      registers,
    });
    this.failures = new client.Counter({
      name: 'huren_sync_failures_total',
      help: 'Sync runs that failed, by hospital (endpoint id)',
      labelNames: ['hospital'] as const,
      registers,
    });
    this.retries = new client.Counter({
      name: 'huren_sync_retries_total',
      help: 'Requests to hospital servers retried (429, 5xx, timeout, malformed answer), by hospital',
      labelNames: ['hospital'] as const,
      registers,
    });
    // Status gauges read the shared status documents at scrape time: every broker process reports the same values.
    const statusGauge = (name: string, help: string, value: (s: SyncStatus, now: number) => number | undefined) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['hospital'] as const,
        registers,
        collect: async function (this: client.Gauge<'hospital'>) {
          this.reset();
          const now = Date.now();
          for (const s of await collections.status.find({}).toArray()) {
            const v = value(s, now);
            if (v !== undefined) this.set({ hospital: s._id }, v);
          }
        },
      });
    statusGauge('huren_sync_last_success_timestamp_seconds', 'When the last sync of a hospital succeeded', (s) =>
      s.lastSuccessAt ? new Date(s.lastSuccessAt).getTime() / 1000 : undefined,
    );
    statusGauge('huren_sync_lag_seconds', 'Seconds since the last successful sync of a hospital', (s, now) =>
      s.lastSuccessAt ? (now - new Date(s.lastSuccessAt).getTime()) / 1000 : undefined,
    );
    statusGauge(
      'huren_sync_consecutive_failures',
      'Failed sync runs of a hospital since its last success',
      (s) => s.consecutiveFailures,
    );
  }

  static async create(deps: SyncServiceDeps, options: SyncServiceOptions = {}): Promise<SyncService> {
    return new SyncService(deps, await syncCollections(deps.db), options);
  }

  // ---- registry ----

  async putEndpoint(endpoint: SyncEndpoint): Promise<{ created: boolean }> {
    const previous = await this.collections.endpoints.findOne({ _id: endpoint._id });
    // A changed definition keeps the secret unless a new one is given.
    if (previous?.notifySecretSha256 && !endpoint.notifySecretSha256) {
      endpoint.notifySecretSha256 = previous.notifySecretSha256;
    }
    await this.collections.endpoints.replaceOne({ _id: endpoint._id }, endpoint, { upsert: true });
    return { created: !previous };
  }

  async endpoint(id: string): Promise<SyncEndpoint | null> {
    return this.collections.endpoints.findOne({ _id: id });
  }

  async endpoints(): Promise<SyncEndpoint[]> {
    return this.collections.endpoints.find({}).sort({ _id: 1 }).toArray();
  }

  async deleteEndpoint(id: string): Promise<boolean> {
    return (await this.collections.endpoints.deleteOne({ _id: id })).deletedCount > 0;
  }

  /** Per-hospital status for the admin API: last success, lag, errors, checkpoint, last run. */
  async status(now = new Date()) {
    const statuses = new Map((await this.collections.status.find({}).toArray()).map((s) => [s._id, s]));
    return (await this.endpoints()).map((e) => {
      const s = statuses.get(e._id);
      const { _id, ...rest } = s ?? { _id: e._id, consecutiveFailures: 0 };
      return {
        ...publicView(e),
        status: {
          ...rest,
          state: !s?.lastRunAt ? 'never-run' : s.consecutiveFailures > 0 ? 'failing' : 'ok',
          running: this.running.has(_id),
          lagSeconds: s?.lastSuccessAt
            ? Math.round((now.getTime() - new Date(s.lastSuccessAt).getTime()) / 1000)
            : null,
        },
      };
    });
  }

  // ---- running ----

  /** The hospital's server, read with this service's retry policy. */
  sourceFor(endpoint: SyncEndpoint): HospitalSource {
    return new HospitalSource(endpoint, this.options.retry ?? DEFAULT_RETRY, () =>
      this.retries.inc({ hospital: endpoint._id }),
    );
  }

  /** Ingests resources a hospital sent or named (subscription notifications), as its own, counted like a pull. */
  async ingest(endpoint: SyncEndpoint, items: IngestItem[]): Promise<IngestResult[]> {
    const results = await ingestPage(this.deps, items, {
      owner: endpoint.institution,
      source: endpoint.baseUrl,
      agent: `subscription:${endpoint._id}`,
    });
    for (const r of results) this.resources.inc({ hospital: endpoint._id, outcome: r.outcome });
    return results;
  }

  /** Remembers the last notification of a hospital (handshakes and heartbeats included) in its status. */
  async noteNotification(endpoint: SyncEndpoint, type: string): Promise<void> {
    await this.collections.status.updateOne(
      { _id: endpoint._id },
      { $set: { lastNotificationAt: new Date(), lastNotificationType: type } },
      { upsert: true },
    );
  }

  /** Pulls the given hospitals (all enabled ones by default) side by side; each one's failure is its own. */
  async syncAll(ids?: string[], onProgress?: (id: string, p: PullProgress) => void): Promise<SyncRunResult[]> {
    const all = await this.endpoints();
    const chosen = ids ? all.filter((e) => ids.includes(e._id)) : all.filter((e) => e.enabled);
    return Promise.all(chosen.map((e) => this.syncEndpoint(e, onProgress && ((p) => onProgress(e._id, p)))));
  }

  /** One pull of one hospital; joins the pull already running in this process, if any. */
  syncEndpoint(endpoint: SyncEndpoint, onProgress?: (p: PullProgress) => void): Promise<SyncRunResult> {
    const running = this.running.get(endpoint._id);
    if (running) return running;
    const run = this.runPull(endpoint, onProgress).finally(() => this.running.delete(endpoint._id));
    this.running.set(endpoint._id, run);
    return run;
  }

  private async runPull(endpoint: SyncEndpoint, onProgress?: (p: PullProgress) => void): Promise<SyncRunResult> {
    const id = endpoint._id;
    const { leases, status } = this.collections;
    const leaseMs = this.options.leaseMs ?? 120_000;
    const lease = await acquireLease(leases, id, this.holder, leaseMs);
    if ('busyUntil' in lease) {
      return { endpoint: id, outcome: 'busy', reports: 0, counts: emptyCounts(), busyUntil: lease.busyUntil };
    }
    const started = Date.now();
    const rejects: NonNullable<SyncStatus['lastRejects']> = [];
    let reports = 0;
    const counts = emptyCounts();
    const byType: SyncRunCounts['byType'] = {};
    const runCounts = (): SyncRunCounts => ({ reportsFetched: reports, resources: resourceCounts(counts), byType });
    try {
      await status.updateOne({ _id: id }, { $set: { lastRunAt: new Date() } }, { upsert: true });
      const current = await status.findOne({ _id: id });
      const source = this.sourceFor(endpoint);
      const result = await pull(this.deps, endpoint, source, current?.checkpoint, {
        onPage: async (checkpoint, results, pageReports) => {
          reports += pageReports;
          this.count(id, results, counts, rejects, byType);
          // Only now, with the page durably ingested, does the checkpoint move.
          if (checkpoint) await status.updateOne({ _id: id }, { $set: { checkpoint } });
          await renewLease(leases, lease, leaseMs);
        },
        onProgress,
      });
      await status.updateOne(
        { _id: id },
        {
          $set: {
            lastSuccessAt: new Date(),
            consecutiveFailures: 0,
            lastRun: runCounts(),
            lastRejects: rejects,
          },
          $unset: { lastError: '' },
        },
      );
      this.deps.log.info('Hospital sync finished', {
        endpoint: id,
        reports: result.reports,
        ...counts,
        ms: Date.now() - started,
      });
      return { endpoint: id, outcome: 'success', reports, counts };
    } catch (err) {
      const message = errorMessage(err);
      this.failures.inc({ hospital: id });
      await status.updateOne(
        { _id: id },
        {
          $set: {
            lastErrorAt: new Date(),
            lastError: message,
            lastRun: runCounts(),
            lastRejects: rejects,
          },
          $inc: { consecutiveFailures: 1 },
        },
      );
      this.deps.log.warn('Hospital sync failed', { endpoint: id, error: message, reports, ms: Date.now() - started });
      return { endpoint: id, outcome: 'failed', reports, counts, error: message };
    } finally {
      await releaseLease(leases, lease).catch(() => undefined);
    }
  }

  private count(
    id: string,
    results: IngestResult[],
    counts: SyncRunResult['counts'],
    rejects: NonNullable<SyncStatus['lastRejects']>,
    byType: SyncRunCounts['byType'],
  ) {
    for (const r of results) {
      counts[r.outcome]++;
      const type = r.ref?.split('/')[0] || 'unknown';
      const of = (byType[type] ??= { created: 0, updated: 0, unchanged: 0, older: 0, refused: 0 });
      of[r.outcome === 'rejected' ? 'refused' : r.outcome]++;
      this.resources.inc({ hospital: id, outcome: r.outcome });
      if (r.outcome === 'rejected' && rejects.length < MAX_REJECTS_KEPT) {
        rejects.push({ ref: r.ref, where: r.where, diagnostics: r.reason?.issue[0]?.diagnostics });
      }
    }
  }

  // ---- schedule ----

  /** Starts pulling every hospital whose schedule is due; returns the function that stops it. */
  startSchedule(): () => void {
    const tick = () => {
      this.dueEndpoints()
        .then((due) => due.forEach((e) => void this.syncEndpoint(e)))
        .catch((err: unknown) => this.deps.log.error('Sync schedule failed', { error: errorMessage(err) }));
    };
    const timer = setInterval(tick, this.options.tickMs ?? 30_000);
    timer.unref();
    tick();
    return () => clearInterval(timer);
  }

  private async dueEndpoints(now = Date.now()): Promise<SyncEndpoint[]> {
    const statuses = new Map((await this.collections.status.find({}).toArray()).map((s) => [s._id, s]));
    return (await this.endpoints()).filter((e) => {
      if (!e.enabled || e.scheduleMinutes <= 0 || this.running.has(e._id)) return false;
      const last = statuses.get(e._id)?.lastRunAt;
      return !last || new Date(last).getTime() + e.scheduleMinutes * 60_000 <= now;
    });
  }
}

const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The ingest counts as the status names them: `refused` for what the ingest calls rejected. */
function resourceCounts(c: IngestCounts): ResourceCounts {
  return { created: c.created, updated: c.updated, unchanged: c.unchanged, older: c.older, refused: c.rejected };
}
