import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface ServerProcess {
  child: ChildProcessWithoutNullStreams;
  /** The FHIR base URL the server logged when it was listening. */
  base: string;
  exited: Promise<number | null>;
  /** Everything it printed so far. */
  output(): string;
}

/**
 * The real broker process as `npm start` runs it (`src/main.ts`) with `env` on top of this process's environment (a
 * key set to undefined is removed); resolves once it logs that it is listening, rejects if it exits first. `how`: other
 * arguments (e.g. `dist/main.js`), a working directory, and `inherit: false` for an environment of `env` alone.
 */
export async function startServer(
  env: Record<string, string | undefined>,
  how: { args?: string[]; cwd?: string; inherit?: boolean } = {},
): Promise<ServerProcess> {
  const merged: Record<string, string | undefined> = {
    ...(how.inherit === false ? { PATH: process.env.PATH } : process.env),
    HUREN_LOG_LEVEL: 'info',
    PORT: '0',
    ...env,
  };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const args = how.args ?? ['--import', 'tsx', 'src/main.ts'];
  const child = spawn(process.execPath, args, { env: merged, ...(how.cwd ? { cwd: how.cwd } : {}) });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const started = new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /"fhir":"(http:\/\/localhost:\d+\/fhir)"/.exec(out);
      if (m) {
        clearInterval(timer);
        resolve(m[1]!);
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`server exited with ${code}: ${out.slice(-3000)}`));
    });
  });
  const server = { child, exited, output: () => out };
  return { ...server, base: await started };
}
