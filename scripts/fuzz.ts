/**
 * `npm run fuzz [-- --runs N --seed S]`: the fuzzing suite (test/fuzz) with a budget of N requests per family of
 * requests (default 300) and the seed S (default: a new one each run, printed so that a failure can be replayed).
 * The test run (`npm test`) runs the same suite with 25 runs per family and the fixed seed 23.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { runs: { type: 'string' }, seed: { type: 'string' } },
});
const runs = values.runs ?? '300';
const seed = values.seed ?? String(Date.now() % 2 ** 31);
for (const [name, value] of [
  ['--runs', runs],
  ['--seed', seed],
] as const) {
  if (!/^\d+$/.test(value)) {
    console.error(`${name} must be a whole number, got '${value}'`);
    process.exit(2);
  }
}
console.log(
  `Fuzzing with seed ${seed}, ${runs} requests per family (replay: npm run fuzz -- --runs ${runs} --seed ${seed})`,
);
const result = spawnSync('npx', ['vitest', 'run', 'test/fuzz'], {
  stdio: 'inherit',
  env: { ...process.env, HUREN_FUZZ_RUNS: runs, HUREN_FUZZ_SEED: seed },
});
process.exit(result.status ?? 1);
