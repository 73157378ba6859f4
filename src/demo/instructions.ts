/** What demo mode prints on start: how to get a token and ask the showcase's `$reuse-check`, ready to paste. */
import path from 'node:path';
import { IDENTIFIER_SYSTEMS } from '../recognition/identity.js';
import { SYSTEMS } from '../recognition/vocabulary.js';
import { SHOWCASE } from './generator.js';

/** The GET form of the showcase check (query string), asked by hospital B. */
export function showcaseQuery(): string {
  const params = [
    `patient=${IDENTIFIER_SYSTEMS.residentIdCard}|${SHOWCASE.idNumber}`,
    ...SHOWCASE.codes.map((c) => `code=${SYSTEMS.loinc}|${c.code}`),
    `requester=Organization/${SHOWCASE.requester}`,
  ];
  return params.join('&');
}

/**
 * The token command as the user pastes it in a new shell: the broker's address (its port may not be 8080) and, when
 * it is not the default ./data, the data directory holding the demo clients' keys.
 */
export function tokenCommand(origin: string, dataDir: string, args: string): string {
  const env = path.resolve(dataDir) === path.resolve('data') ? '' : `HUREN_DATA_DIR=${shellQuote(dataDir)} `;
  return `${env}npm run -s token -- ${args} --url ${origin}`;
}

const shellQuote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export function demoInstructions(fhirBase: string, dataDir = 'data'): string {
  const origin = fhirBase.replace(/\/fhir$/, '');
  const expected = SHOWCASE.codes.map((c) => `${c.display} → ${c.expected}`).join(', ');
  return [
    '',
    `Demo: showcase patient, resident ID ${SHOWCASE.idNumber} (fictitious), results at Organization/${SHOWCASE.performer}.`,
    `Ask what hospital B may reuse (${expected}):`,
    '',
    `  TOKEN=$(${tokenCommand(origin, dataDir, `--role his --org ${SHOWCASE.requester}`)})`,
    `  curl -s -H "Authorization: Bearer $TOKEN" '${fhirBase}/$reuse-check?${showcaseQuery()}'`,
    '',
    'Pages (one click signs in, demo mode only):',
    `  ${origin}/app        the doctor's prior-results view (opens the showcase patient as a doctor of hospital B)`,
    `  ${origin}/dashboard  the health bureau's savings dashboard`,
    '',
  ].join('\n');
}
