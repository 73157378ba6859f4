/**
 * `huren reindex`: re-projects every stored DiagnosticReport and Observation into the recognition fact index and
 * rebuilds the patient index, under the patient key secrets in force. The step of a key rotation after which the
 * previous epoch's secret can be dropped (docs/federation.md); also a repair of the index.
 */
import { openServices } from './cli/services.js';
import { rebuildFacts } from './services.js';
import { step } from './progress.js';

export async function reindexCommand(): Promise<number> {
  const { deps, close } = await openServices();
  try {
    const result = await rebuildFacts(deps, (p) => step(`Re-projected ${p.done} of ${p.total} results…`));
    process.stdout.write(`Re-projected ${result.done} results into ${result.facts} facts.\n`);
    return 0;
  } finally {
    await close();
  }
}
