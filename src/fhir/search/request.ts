/**
 * A parsed and validated search: what parseSearchRequest produces and the filter, sort and paging builders consume.
 */
import type { OperationOutcomeIssue } from 'fhir/r4';

/** FHIR R4 §3.1.1.4 prefixes for ordered values. */
export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

/**
 * A token to match: `system` undefined = any system, '' = no system (`|code`); `code` undefined = any code of the
 * system (`system|`).
 */
export interface TokenValue {
  system?: string;
  code?: string;
}

/** A date search value as an inclusive range of instants; for `ap` the range is already widened. */
export interface DateValue {
  prefix: Prefix;
  lo: Date;
  hi: Date;
}

/**
 * A number: `value` as given, [lo, hi) its implicit precision range (R4 §3.1.1.4.1: `5.4` means [5.35, 5.45)); for `ap`
 * lo/hi are the approximate range (±10%), inclusive.
 */
export interface NumberValue {
  prefix: Prefix;
  value: number;
  lo: number;
  hi: number;
}

export interface QuantityValue extends NumberValue {
  /** As in TokenValue: undefined = any; `5.4||mg` has no system and matches a code or unit `mg`. */
  system?: string;
  code?: string;
}

interface FilterBase {
  /** The query parameter as sent (`code:not`, `subject:Patient.identifier`), for messages. */
  name: string;
  /** SearchParameter code on the searched type. */
  param: string;
}

/** Values in one filter are ORed (comma-separated); filters of one request are ANDed (repeated parameters). */
export type SearchFilter =
  | (FilterBase & { kind: 'missing'; missing: boolean })
  | (FilterBase & { kind: 'token'; modifier?: 'not' | 'of-type'; values: TokenValue[] })
  | (FilterBase & { kind: 'reference'; values: string[] })
  | (FilterBase & { kind: 'chain'; targets: ChainTarget[] })
  | (FilterBase & { kind: 'date'; values: DateValue[] })
  | (FilterBase & { kind: 'number'; values: NumberValue[] })
  | (FilterBase & { kind: 'quantity'; values: QuantityValue[] })
  | (FilterBase & { kind: 'string'; modifier: 'starts-with' | 'exact' | 'contains'; values: string[] })
  | (FilterBase & { kind: 'uri'; modifier: 'exact' | 'below' | 'above'; values: string[] });

/** One candidate target type of a chained parameter and the search to run on it (one chain level). */
export interface ChainTarget {
  resourceType: string;
  request: SearchRequest;
}

export interface SortKey {
  param: string;
  dir: 1 | -1;
  /** Stored field sorted on (`so.<code>`, or `_id`/`lastUpdated`) and the kind of value it holds. */
  field: string;
  kind: 'date' | 'number' | 'string';
}

/**
 * `_include` / `_revinclude`, ready to execute: for _include, read the references at `field` of the matched
 * `sourceType` resources and fetch those of `targetTypes`; for _revinclude, find `sourceType` resources whose `field`
 * holds a reference to a matched resource (`targetTypes` = the matched type).
 */
export interface IncludeSpec {
  sourceType: string;
  param: string;
  field: string;
  targetTypes: string[];
  iterate: boolean;
}

export interface SearchRequest {
  resourceType: string;
  filters: SearchFilter[];
  /** Explicit `_sort` keys; buildSort appends `_id` as the tie-breaker. */
  sort: SortKey[];
  count: number;
  /** The `_cursor` keyset cursor (already checked against this search); the next page starts after it. */
  cursor?: string;
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  total: 'none' | 'accurate';
  summary?: 'count' | 'false';
  elements?: string[];
  /** Parameters ignored under `Prefer: handling=lenient`, as warnings for the response Bundle. */
  ignored: OperationOutcomeIssue[];
  /**
   * The parameters actually used (without `_cursor`, `_format`, `_pretty` and whatever was ignored), for the self and
   * next links: R4 §3.1.1.1 "the server SHALL return the parameters that were actually used … encoded in the self
   * link", and a next link must work without `Prefer: handling=lenient`.
   */
  used: Record<string, string[]>;
  /** Digest of what selects and orders the matches; binds cursors to their search. */
  fingerprint: string;
}
