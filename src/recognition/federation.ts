/**
 * What a reuse check asks of the broker's federation (issue 22), as the recognition core sees it: the facts of a
 * patient held by other brokers of the province, each with its performing institution. The federation module
 * implements it; the check depends only on this shape (no import of the federation's HTTP code).
 */
import type { Bundle } from 'fhir/r4';
import type { AccessContext } from '../auth/tokens.js';
import type { RecognitionFact } from './facts.js';
import type { Institution } from './institutions.js';
import type { Bilingual } from './vocabulary.js';

export interface FederatedQuery {
  /** Province-derived pseudonymous keys of the patient (never an identifier). */
  patientKeys: string[];
  /** Catalogue item codes asked about (a panel's members included). */
  items: string[];
  /** The window: effective times in [from, until]. */
  from: Date;
  until: Date;
  /** Where the requesting institution is (division code) and its level: the holder applies the HR scope to it. */
  requester: { district: string; level: string };
}

export interface BrokerReach {
  /** The neighbour's id in this broker's federation registry. */
  broker: string;
  relation: 'parent' | 'child' | 'peer';
  region: string;
  answered: boolean;
  /** The neighbour of the asking broker it was reached through (absent: a neighbour of the asking broker itself). */
  via?: string;
  /** Why it did not answer (timeout, connection refused, HTTP status): no patient data. */
  reason?: string;
  ms: number;
}

export interface FederatedAnswer {
  /** Facts of other brokers: `source` and `performer` are absolute references to the broker that holds them. */
  facts: RecognitionFact[];
  /** The performing institutions of those facts, keyed (`id`) by their absolute Organization reference. */
  institutions: Institution[];
  /** Each neighbour asked, whether it answered in time. */
  reach: BrokerReach[];
}

export interface FederationPort {
  /** True when at least one neighbour is configured and enabled. */
  isConfigured(): Promise<boolean>;
  /** Asks the neighbours within the deadline; never throws for an unreachable one (its reach says so). */
  ask(query: FederatedQuery): Promise<FederatedAnswer>;
  /**
   * A result another broker holds (absolute reference), for a doctor of this broker at `district`: a Bundle with the
   * report and its Observations, audited on both sides. Throws (404) when no broker serves it to this requester.
   */
  readResult(access: AccessContext, reference: string, district: string): Promise<Bundle>;
}

/** What the federation contributed to a check: who was asked, who answered in time. */
export interface FederationSummary {
  /** complete: every broker asked answered; partial: some did; local-only: none did (the answer is this broker's). */
  status: 'complete' | 'partial' | 'local-only';
  reach: BrokerReach[];
  /** The other brokers' institutions the outcomes name, by absolute Organization reference. */
  institutions: Map<string, Institution>;
  deadlineMs: number;
}

/** The sentence for the doctor when the federation did not all answer (undefined when it did). */
export function federationNote(f: FederationSummary): Bilingual | undefined {
  if (f.status === 'complete') return undefined;
  const missing = f.reach.filter((r) => !r.answered);
  const names = missing.map((r) => `${r.broker} (${r.region}${r.reason ? `: ${r.reason}` : ''})`).join(', ');
  return f.status === 'local-only'
    ? {
        zh: `互认平台 ${names} 未在 ${f.deadlineMs} 毫秒内应答：本结果仅含本平台的检查检验结果。`,
        en: `The federated brokers ${names} did not answer within ${f.deadlineMs} ms: this answer covers this broker's results only.`,
      }
    : {
        zh: `互认平台 ${names} 未在 ${f.deadlineMs} 毫秒内应答：本结果不含其辖区的检查检验结果。`,
        en: `The federated brokers ${names} did not answer within ${f.deadlineMs} ms: results held there are not included.`,
      };
}
