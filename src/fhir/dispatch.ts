import { processBundle } from './bundle.js';
import { capabilityStatement } from './capability.js';
import {
  conditionalUpdate,
  create,
  history,
  read,
  remove,
  search,
  update,
  validateOperation,
  vread,
  type FhirDeps,
} from './interactions.js';
import { badRequest, forbidden, methodNotAllowed, notFound } from './outcomes.js';
import { assertAllowed } from '../auth/policy.js';
import { scopeStore } from '../auth/scoped-store.js';
import { abortableStore } from './abortable-store.js';
import type { Permission } from '../auth/scopes.js';
import { reuseCheck } from './reuse-check.js';
import { reuseDecision } from './reuse-decision.js';
import { evaluateMeasure } from '../reports/measure.js';
import { isKnownType } from './types.js';
import type { FhirRequest, FhirResponse } from './request.js';

/**
 * Routes a FHIR request to its interaction (FHIR R4 §3.1.0 RESTful API). Independent of Express, so bundle entries
 * are dispatched through the very same code as top-level requests.
 */
export function createDispatcher(base: FhirDeps): (req: FhirRequest) => Promise<FhirResponse> {
  const dispatch = async (req: FhirRequest): Promise<FhirResponse> => {
    // Per request: the caller travels with the dependencies, so every interaction (and bundle entry) sees it; so does
    // the client's going away, which stops the store from starting more work for it and the database from going on
    // with a search under way.
    const store = abortableStore(scopeStore(base.store.forRequest(req.signal), req.access), req.signal);
    const deps: FhirDeps = { ...base, access: req.access, store };
    const allow = (type: string, permission: Permission) => {
      if (!isKnownType(type)) {
        throw notFound(`Resource type '${type}' is not supported here; see /fhir/metadata for the supported types`);
      }
      assertAllowed(req.access, type, permission);
    };
    const [a, b, c, d, ...rest] = req.segments;
    const m = req.method;
    if (rest.length) throw notFound(`No FHIR interaction at /${req.segments.join('/')}`);

    if (a === undefined) {
      if (m === 'POST') return processBundle(req, deps, dispatch);
      throw methodNotAllowed('At the FHIR base, POST a transaction or batch Bundle', 'POST');
    }
    if (a === 'metadata' && b === undefined) {
      if (m !== 'GET') throw methodNotAllowed('metadata is read with GET', 'GET');
      return { status: 200, body: capabilityStatement(deps, req.baseUrl) };
    }
    if (a === '_history' && b === undefined) {
      if (m !== 'GET') throw methodNotAllowed('_history is read with GET', 'GET');
      if (req.access && req.access.role !== 'admin') throw forbidden('System history is for administrators');
      return history(req, deps);
    }
    if (a === '$reuse-check' && b === undefined) {
      if (m !== 'GET' && m !== 'POST') throw methodNotAllowed('$reuse-check is invoked with POST or GET', 'GET, POST');
      return reuseCheck(req, deps);
    }
    if (a === '$reuse-decision' && b === undefined) {
      if (m !== 'POST') throw methodNotAllowed('$reuse-decision is invoked with POST', 'POST');
      return reuseDecision(req, deps);
    }
    if (a.startsWith('$')) throw notFound(`Operation ${a} is not defined at the system level`);

    const type = a;
    if (b === undefined) {
      if (m === 'GET') {
        allow(type, 's');
        return search(req, deps, type, req.query);
      }
      if (m === 'POST') {
        allow(type, 'c');
        return create(req, deps, type);
      }
      if (m === 'PUT') {
        allow(type, 'u');
        return conditionalUpdate(req, deps, type);
      }
      throw methodNotAllowed(`${m} is not supported on /${type}`, 'GET, POST, PUT');
    }
    if (b === '_search' && c === undefined) {
      if (m !== 'POST') throw methodNotAllowed('_search is used with POST', 'POST');
      const form = (req.body ?? {}) as Record<string, string | string[]>;
      allow(type, 's');
      return search(req, deps, type, mergeQueries(req.query, form));
    }
    if (b === '_history' && c === undefined) {
      if (m !== 'GET') throw methodNotAllowed('_history is read with GET', 'GET');
      if (req.access?.role === 'his') throw forbidden('Type history is not available to hospital systems');
      allow(type, 'r');
      return history(req, deps, type);
    }
    if (b === '$validate' && c === undefined) {
      if (m !== 'POST') throw methodNotAllowed('$validate is invoked with POST', 'POST');
      return validateOperation(req, deps, type);
    }
    if (b.startsWith('$')) throw notFound(`Operation ${b} is not defined for ${type}`);

    const id = b;
    if (c === undefined) {
      if (m === 'GET') {
        allow(type, 'r');
        return read(req, deps, type, id);
      }
      if (m === 'PUT') {
        allow(type, 'u');
        return update(req, deps, type, id);
      }
      if (m === 'DELETE') {
        allow(type, 'd');
        return remove(req, deps, type, id);
      }
      throw methodNotAllowed(`${m} is not supported on /${type}/${id}`, 'GET, PUT, DELETE');
    }
    if (type === 'Measure' && c === '$evaluate-measure' && d === undefined) {
      if (m !== 'GET') throw methodNotAllowed('$evaluate-measure is invoked with GET', 'GET');
      return evaluateMeasure(req, deps, id);
    }
    if (c === '$validate' && d === undefined) {
      if (m !== 'POST') throw methodNotAllowed('$validate is invoked with POST', 'POST');
      return validateOperation(req, deps, type, id);
    }
    if (c === '_history') {
      if (m !== 'GET') throw methodNotAllowed('_history is read with GET', 'GET');
      allow(type, 'r');
      return d === undefined ? history(req, deps, type, id) : vread(req, deps, type, id, d);
    }
    throw badRequest(`No FHIR interaction at /${req.segments.join('/')}`);
  };
  return dispatch;
}

function mergeQueries(
  a: Record<string, string | string[]>,
  b: Record<string, string | string[]>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : [...[prev].flat(), ...[v].flat()];
  }
  return out;
}
