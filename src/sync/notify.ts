import type { Bundle, DiagnosticReport, OperationOutcome, Parameters, Resource } from 'fhir/r4';
import { error, issue, outcome, unauthorized } from '../fhir/outcomes.js';
import type { IngestItem } from '../import/ingest.js';
import { secretMatches, type SyncEndpoint } from './endpoints.js';
import type { SyncService } from './service.js';

/**
 * Subscription intake: `POST /subscriptions/notify/{endpoint}`, the rest-hook channel endpoint a hospital's FHIR
 * server notifies. Authenticated by the endpoint's secret, configured on the hospital's Subscription as the channel
 * header `Authorization: Bearer <secret>`. Accepted forms:
 * - R4 Subscriptions Backport IG notification: a `history` Bundle whose first entry is the SubscriptionStatus
 *   Parameters (`type` handshake | heartbeat | event-notification | query-status | query-event). Handshakes and
 *   heartbeats are acknowledged and recorded in the hospital's status; events are ingested: `full-resource` entries as
 *   sent, `id-only` entries (fullUrl without resource) fetched from the hospital first.
 * - Classic R4 rest-hook: an empty body (payload omitted) starts an incremental pull of the hospital; a body that is
 *   a resource (payload `application/fhir+json`) is ingested.
 * A report's results missing from a notification are fetched, so a report never arrives without its values.
 */

const NOTIFICATION_TYPES = ['handshake', 'heartbeat', 'event-notification', 'query-status', 'query-event'];

export async function receiveNotification(
  sync: SyncService,
  id: string,
  authorization: string | undefined,
  body: unknown,
): Promise<{ status: number; body: OperationOutcome }> {
  const endpoint = await sync.endpoint(id);
  const secret = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  // Unknown endpoint and wrong secret answer alike: a caller learns nothing about which endpoints exist.
  if (!endpoint || !secret || !secretMatches(endpoint, secret)) {
    throw unauthorized('Notifications need Authorization: Bearer <the secret registered for this endpoint>');
  }
  if (isEmpty(body)) {
    await sync.noteNotification(endpoint, 'empty');
    void sync.syncEndpoint(endpoint); // its outcome lands in the status
    return { status: 200, body: outcome(issue('information', 'informational', 'Notification received; pulling')) };
  }
  const resource = body as Resource;
  if (resource.resourceType === 'Bundle') return receiveBundle(sync, endpoint, resource as Bundle);
  if (typeof resource.resourceType === 'string') {
    await sync.noteNotification(endpoint, 'full-resource');
    return ingestAndReport(sync, endpoint, [{ resource, where: 'body' }]);
  }
  throw error(400, 'structure', 'Expected a notification Bundle, a resource, or an empty body', 'resourceType');
}

async function receiveBundle(
  sync: SyncService,
  endpoint: SyncEndpoint,
  bundle: Bundle,
): Promise<{ status: number; body: OperationOutcome }> {
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const status = entries[0]?.resource as Parameters | undefined;
  const type =
    status?.resourceType === 'Parameters' ? status.parameter?.find((p) => p.name === 'type')?.valueCode : undefined;
  if (bundle.type !== 'history' || !type || !NOTIFICATION_TYPES.includes(type)) {
    throw error(
      400,
      'structure',
      'A notification Bundle is of type history and starts with the SubscriptionStatus Parameters (its type: handshake, heartbeat, event-notification …)',
      type ? 'Bundle.type' : 'Bundle.entry[0].resource',
    );
  }
  await sync.noteNotification(endpoint, type);
  if (type !== 'event-notification' && type !== 'query-event') {
    return { status: 200, body: outcome(issue('information', 'informational', `${type} acknowledged`)) };
  }
  const source = sync.sourceFor(endpoint);
  const items: IngestItem[] = [];
  for (const [i, e] of entries.slice(1).entries()) {
    const where = `Bundle.entry[${i + 1}]`;
    if (e.resource) {
      items.push({ resource: e.resource, where });
    } else if (e.fullUrl || e.request?.url) {
      // id-only: the hospital names the resource, we read it from its server (and only there: the endpoint's
      // credentials never go to another address a notification names).
      const url = e.fullUrl ?? e.request!.url;
      if (/^https?:/i.test(url) && !url.startsWith(`${endpoint.baseUrl}/`)) {
        throw error(400, 'invalid', `${url} is not on the hospital's server ${endpoint.baseUrl}`, `${where}.fullUrl`);
      }
      const fetched = await source.resource(url);
      if (fetched) items.push({ resource: fetched, where });
    }
  }
  items.unshift(...(await missingResults(source, items)));
  return ingestAndReport(sync, endpoint, items);
}

/** Results of the notified reports that the notification did not carry, read from the hospital. */
async function missingResults(
  source: ReturnType<SyncService['sourceFor']>,
  items: IngestItem[],
): Promise<IngestItem[]> {
  const resources = items.map((i) => i.resource as Resource);
  const present = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
  const wanted = resources
    .filter((r): r is DiagnosticReport => r.resourceType === 'DiagnosticReport')
    .flatMap((r) => r.result ?? [])
    .map((ref) => ref.reference)
    .filter(
      (ref): ref is string =>
        typeof ref === 'string' && /^Observation\/[A-Za-z0-9\-.]{1,64}$/.test(ref) && !present.has(ref),
    );
  const out: IngestItem[] = [];
  for (const ref of new Set(wanted)) {
    const resource = await source.resource(ref);
    if (resource) out.push({ resource, where: ref });
  }
  return out;
}

async function ingestAndReport(
  sync: SyncService,
  endpoint: SyncEndpoint,
  items: IngestItem[],
): Promise<{ status: number; body: OperationOutcome }> {
  const results = await sync.ingest(endpoint, items);
  const changed = results.filter((r) => r.outcome === 'created' || r.outcome === 'updated').length;
  const rejected = results.filter((r) => r.outcome === 'rejected');
  const issues = [
    issue('information', 'informational', `${results.length} resource(s) received, ${changed} stored or changed`),
    ...rejected.map((r) =>
      issue('warning', 'processing', `Refused: ${r.reason?.issue[0]?.diagnostics ?? 'invalid'}`, r.where),
    ),
  ];
  return { status: 200, body: outcome(...issues) };
}

function isEmpty(body: unknown): boolean {
  return body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0);
}
