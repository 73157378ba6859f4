/**
 * Builds (once per machine, cached in ~/.cache/huren) the HL7 reference validator that `npm run conformance` and the
 * conformance test of `npm test` run: HAPI FHIR from Maven Central wrapped in conformance/validator. The tests build
 * it on demand too; this script lets CI do it as a separate, visible step.
 */
import { ensureReferenceValidator } from '../test/conformance/reference-validator.js';

await ensureReferenceValidator((message) => console.log(message));
console.log('Reference validator ready');
