/**
 * `huren seed --patients N [--seed S]`: seeds N synthetic patients with their results and decisions history into
 * the broker's database (MONGODB_URI, else the embedded database of HUREN_DATA_DIR, not in use by a running
 * broker), and refreshes the showcase patient. Idempotent: the same seed and size again changes nothing.
 */
import { UsageError } from '../cli/errors.js';
import { openServices } from '../cli/services.js';
import { DEFAULT_DEMO_SEED } from './generator.js';
import { refreshShowcase, seedDemo, seedDepsOf } from './seed.js';

function count(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`${name} must be an integer from 0 to ${max}`);
  return n;
}

export async function seedCommand(values: { patients: string; seed?: string }): Promise<number> {
  const patients = count(values.patients, '--patients', 0, 1_000_000);
  const seed = count(values.seed, '--seed', DEFAULT_DEMO_SEED, 2 ** 31 - 1);
  const { deps: app, close } = await openServices();
  try {
    const deps = seedDepsOf(app);
    const summary = await seedDemo(deps, { patients, seed });
    const showcase = await refreshShowcase(deps);
    const rate = summary.ms > 0 ? ((summary.created + summary.updated + summary.unchanged) / summary.ms) * 1000 : 0;
    process.stdout.write(
      `Seeded ${summary.patients} demo patients (seed ${summary.seed}): ${summary.created} resources created, ` +
        `${summary.updated} updated, ${summary.unchanged} unchanged; ${summary.checks} checks and ` +
        `${summary.ledgerEntries} ledger entries (existing ones kept); ${rate.toFixed(1)} resources/s. ` +
        `Showcase: ${showcase.created + showcase.updated} written, ${showcase.unchanged} unchanged.\n`,
    );
    return 0;
  } finally {
    await close();
  }
}
