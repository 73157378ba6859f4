import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/** A seed or configuration file of the recognition rules that cannot be used; lists every problem found. */
export class SeedDataError extends Error {
  readonly file: string;
  readonly problems: readonly string[];

  constructor(file: string, problems: readonly string[]) {
    super(`${file} is not usable:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SeedDataError';
    this.file = file;
    this.problems = problems;
  }
}

/**
 * A request the recognition engine cannot answer (unknown requester, unknown context, an identifier that is not
 * valid). `expression` names the input at fault, so the FHIR layer can turn it into an OperationOutcome.
 */
export class RecognitionInputError extends Error {
  readonly code: string;
  readonly expression: string | undefined;

  constructor(code: string, message: string, expression?: string) {
    super(message);
    this.name = 'RecognitionInputError';
    this.code = code;
    this.expression = expression;
  }
}

const ajv = new Ajv({ allErrors: true, strict: true });

function describe(e: ErrorObject): string {
  const where = e.instancePath === '' ? '(root)' : e.instancePath;
  if (e.keyword === 'additionalProperties') {
    return `${where}: unknown property '${String((e.params as { additionalProperty: string }).additionalProperty)}'`;
  }
  if (e.keyword === 'enum') {
    return `${where}: ${e.message ?? 'invalid'} (${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')})`;
  }
  return `${where}: ${e.message ?? e.keyword}`;
}

/**
 * Compiles a JSON Schema once and returns a checker listing each structural problem with its JSON pointer
 * (`/items/3/validityDays: must be integer`). Semantic checks (references between items, dates) come after.
 */
export function schemaChecker(schema: object): (data: unknown) => string[] {
  let validate: ValidateFunction | undefined;
  return (data) => {
    validate ??= ajv.compile(schema);
    return validate(data) ? [] : (validate.errors ?? []).map(describe);
  };
}
