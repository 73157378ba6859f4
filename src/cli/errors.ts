/**
 * Exit codes of `huren` (README: Command line): 0 done; 1 failed (the broker, the database or a file said no);
 * 2 a usage mistake (unknown command or option, a missing or malformed argument), answered with the usage;
 * 3 done, but some resources were refused (see the rejects file or the per-hospital lines).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3 } as const;

/** A command-line mistake: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure the user can act on: printed as is (no stack), exit code 1. */
export class CliError extends Error {
  override name = 'CliError';
}
