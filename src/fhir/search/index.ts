/**
 * FHIR R4 search for every resource type, driven by the official SearchParameter definitions:
 *   createSearchRegistry → extractSearchValues (write time: `sp`/`so` of the stored document)
 *   parseSearchRequest → buildMongoFilter + buildSort (+ cursorFilter for the next page, encodeCursor for link.next)
 */
export {
  createSearchRegistry,
  DEFAULT_SEARCH_RESOURCE_TYPES,
  getSearchParam,
  isSearchableType,
  supportedSearchParams,
  type SearchParamDef,
  type SearchParamType,
  type SearchRegistry,
  type SearchRegistryOptions,
} from './registry.js';
export {
  extractSearchValues,
  scanBucket,
  searchToken,
  SCAN_PARAM,
  SORT_MISSING,
  type SearchValues,
} from './extract.js';
export { parseSearchRequest, type ParseSearchOptions, type SearchQuery } from './parse.js';
export { buildMongoFilter, type ResolveChain } from './filter.js';
export {
  buildSort,
  cursorFilter,
  decodeScanCursor,
  encodeCursor,
  encodeScanCursor,
  type ScanPosition,
} from './paging.js';
export type {
  ChainTarget,
  DateValue,
  IncludeSpec,
  NumberValue,
  Prefix,
  QuantityValue,
  SearchFilter,
  SearchRequest,
  SortKey,
  TokenValue,
} from './request.js';
