/**
 * Loads the recognition rules from the seed folder and checks them against each other: qualifications name
 * catalogue categories, local codes name registered institutions and catalogue items, contexts name decline
 * reasons. Start-up fails with every problem listed rather than answering checks with broken rules.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  buildCodeIndex,
  parseCatalogue,
  parseLocalCodes,
  type Catalogue,
  type CodeIndex,
  type LocalCodeMap,
} from './catalogue.js';
import { parseDeclineReasons, type DeclineReasons } from './decline-reasons.js';
import { SeedDataError } from './errors.js';
import {
  indexInstitutions,
  parseAcceptanceMatrix,
  parseInstitutions,
  type AcceptanceMatrix,
  type InstitutionDirectory,
  type InstitutionsFile,
} from './institutions.js';

export const SEED_FILES = {
  catalogue: 'catalogue.json',
  localCodes: 'local-codes.json',
  declineReasons: 'decline-reasons.json',
  institutions: 'institutions.json',
  acceptanceMatrix: 'acceptance-matrix.json',
} as const;

export interface RecognitionData {
  catalogue: Catalogue;
  localCodes: LocalCodeMap[];
  declineReasons: DeclineReasons;
  institutions: InstitutionsFile;
  matrix: AcceptanceMatrix;
}

/** What the engine and the projection need, indexed once. */
export interface RecognitionRules extends RecognitionData {
  index: CodeIndex;
  directory: InstitutionDirectory;
}

/** Validates the five documents together (already parsed JSON). Throws SeedDataError naming the file at fault. */
export function parseRecognitionData(json: Record<keyof typeof SEED_FILES, unknown>): RecognitionData {
  const catalogue = parseCatalogue(json.catalogue, SEED_FILES.catalogue);
  const declineReasons = parseDeclineReasons(json.declineReasons, SEED_FILES.declineReasons);
  const institutions = parseInstitutions(
    json.institutions,
    SEED_FILES.institutions,
    new Set(catalogue.categories.map((c) => c.code)),
  );
  const localCodes = parseLocalCodes(
    json.localCodes,
    catalogue,
    SEED_FILES.localCodes,
    new Set(institutions.institutions.map((i) => i.id)),
  ).maps;
  const matrix = parseAcceptanceMatrix(json.acceptanceMatrix, SEED_FILES.acceptanceMatrix);
  const reasons = new Set(declineReasons.reasons.map((r) => r.code));
  const problems = catalogue.contexts
    .filter((c) => c.declineReason && !reasons.has(c.declineReason))
    .map((c) => `context '${c.code}': decline reason '${c.declineReason}' is not in ${SEED_FILES.declineReasons}`);
  if (problems.length > 0) throw new SeedDataError(SEED_FILES.catalogue, problems);
  return { catalogue, localCodes, declineReasons, institutions, matrix };
}

export function indexRecognitionData(data: RecognitionData): RecognitionRules {
  return {
    ...data,
    index: buildCodeIndex(data.catalogue, data.localCodes),
    directory: indexInstitutions(data.institutions),
  };
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SeedDataError(file, [`cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`]);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new SeedDataError(file, [`is not JSON: ${(e as Error).message}`]);
  }
}

/** Reads, validates and indexes the recognition rules of a seed folder (default: ./seed). */
export function loadRecognitionRules(dir = 'seed'): RecognitionRules {
  const json = Object.fromEntries(
    Object.entries(SEED_FILES).map(([key, name]) => [key, readJson(path.join(dir, name))]),
  ) as Record<keyof typeof SEED_FILES, unknown>;
  try {
    return indexRecognitionData(parseRecognitionData(json));
  } catch (e) {
    // Name the file with its folder, so the message says exactly what to open.
    if (e instanceof SeedDataError) throw new SeedDataError(path.join(dir, e.file), e.problems);
    throw e;
  }
}
