/**
 * What a reuse check asks of the broker's federation (issue 22), as the recognition core sees it: the facts of a
 * patient held by other brokers of the province, each with its performing institution. The federation module
 * implements it; the check depends only on this shape (no import of the federation's HTTP code).
 */
import type { RecognitionFact } from './facts.js';
import type { Institution } from './institutions.js';

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
}
