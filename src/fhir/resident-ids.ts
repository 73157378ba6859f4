import type { OperationOutcomeIssue } from 'fhir/r4';
import { checkResidentId, IDENTIFIER_SYSTEMS, normalizeResidentIdText } from '../recognition/identity.js';
import { issue } from './outcomes.js';

/**
 * Resident ID numbers (居民身份证, system urn:oid:2.16.156.10011.1.1) in a resource being written, wherever an
 * Identifier carries one (Patient.identifier, DiagnosticReport.subject.identifier, a contained Patient …):
 * - a number that is not a valid ID number (wrong check character, impossible birth date, wrong length) is refused,
 *   the issue naming the identifier's value, because a mistyped number would never match the patient's other results
 *   and `$reuse-check` would refuse it later anyway;
 * - the number is stored as it is matched: full-width digits and Ｘ turned into ASCII, lower-case x into X, spaces
 *   trimmed. A 15-digit first-generation number keeps its 15 digits; it is matched through its 18-digit form.
 *
 * Changes `resource` in place; returns the problems found (empty when every number is valid).
 */
export function checkResidentIdentifiers(resource: object, rootExpression: string): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  const visit = (value: unknown, at: string): void => {
    if (Array.isArray(value)) {
      value.forEach((v, i) => visit(v, `${at}[${i}]`));
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const obj = value as Record<string, unknown>;
    if (
      typeof obj.system === 'string' &&
      obj.system.trim() === IDENTIFIER_SYSTEMS.residentIdCard &&
      typeof obj.value === 'string'
    ) {
      const check = checkResidentId(obj.value);
      if (!check.valid) {
        issues.push(
          issue('error', 'value', `Invalid resident ID number at ${at}.value: ${check.message}`, `${at}.value`),
        );
      } else {
        obj.value = normalizeResidentIdText(obj.value);
      }
    }
    for (const [key, child] of Object.entries(obj)) {
      if (child !== null && typeof child === 'object') visit(child, `${at}.${key}`);
    }
  };
  visit(resource, rootExpression);
  return issues;
}
