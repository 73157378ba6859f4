import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4';

/** The only error type of the FHIR layer: thrown anywhere, turned into a response by one error handler. */
export class OperationOutcomeError extends Error {
  readonly outcome: OperationOutcome;
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(status: number, outcome: OperationOutcome, headers: Record<string, string> = {}) {
    super(outcome.issue.map((i) => i.diagnostics ?? i.code).join('; '));
    this.name = 'OperationOutcomeError';
    this.status = status;
    this.outcome = outcome;
    this.headers = headers;
  }
}

export type IssueCode = OperationOutcomeIssue['code'];

export function issue(
  severity: OperationOutcomeIssue['severity'],
  code: IssueCode,
  diagnostics: string,
  expression?: string | string[],
): OperationOutcomeIssue {
  const i: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression !== undefined) i.expression = Array.isArray(expression) ? expression : [expression];
  return i;
}

export function outcome(...issues: OperationOutcomeIssue[]): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: issues };
}

export function error(
  status: number,
  code: IssueCode,
  diagnostics: string,
  expression?: string | string[],
  headers?: Record<string, string>,
): OperationOutcomeError {
  return new OperationOutcomeError(status, outcome(issue('error', code, diagnostics, expression)), headers);
}

export const badRequest = (diagnostics: string, expression?: string | string[]) =>
  error(400, 'invalid', diagnostics, expression);
export const invalidResource = (issues: OperationOutcomeIssue[]) => new OperationOutcomeError(422, outcome(...issues));
export const notSupported = (diagnostics: string, expression?: string | string[]) =>
  error(400, 'not-supported', diagnostics, expression);
export const notFound = (diagnostics: string) => error(404, 'not-found', diagnostics);
export const gone = (diagnostics: string) => error(410, 'deleted', diagnostics);
export const conflict = (diagnostics: string, expression?: string | string[]) =>
  error(409, 'conflict', diagnostics, expression);
export const preconditionFailed = (diagnostics: string, expression?: string | string[]) =>
  error(412, 'conflict', diagnostics, expression);
export const methodNotAllowed = (diagnostics: string, allow: string) =>
  error(405, 'not-supported', diagnostics, undefined, { Allow: allow });
export const unsupportedMediaType = (diagnostics: string) => error(415, 'not-supported', diagnostics);
export const tooLarge = (diagnostics: string, expression?: string | string[]) =>
  error(413, 'too-costly', diagnostics, expression);
export const unauthorized = (diagnostics: string) => error(401, 'login', diagnostics);
export const forbidden = (diagnostics: string, expression?: string | string[]) =>
  error(403, 'forbidden', diagnostics, expression);

export const allOk = (diagnostics = 'All OK'): OperationOutcome =>
  outcome(issue('information', 'informational', diagnostics));

/** Whether a list of issues contains something that must stop the request (error or fatal). */
export function hasErrors(issues: OperationOutcomeIssue[]): boolean {
  return issues.some((i) => i.severity === 'error' || i.severity === 'fatal');
}
