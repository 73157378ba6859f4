/**
 * Builds (once per machine, cached) the embedded FerretDB launcher in db/ferretdb that development and the tests
 * use when no MONGODB_URI or local mongod is available. `npm start` and `npm test` also build it on demand; this
 * script lets CI do it as a separate, visible step.
 */
import { ensureFerretDb } from '../src/store/database.js';

const binary = await ensureFerretDb((message) => console.log(message));
console.log(`FerretDB launcher ready: ${binary}`);
