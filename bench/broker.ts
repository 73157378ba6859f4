/** Starts bench/server.ts as a child process and obtains its tokens the way a hospital system does. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requestToken } from '../src/auth/assertion.js';
import { readDemoClients } from '../src/auth/demo-clients.js';

export interface Broker {
  origin: string;
  pid: number;
  /**
   * An access token of a demo client, at most 3 minutes old (tokens live 5 minutes: ask before each measurement, and
   * per request in one that lasts longer than 2 minutes).
   */
  token(clientId: string): Promise<string>;
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const TOKEN_MAX_AGE_MS = 3 * 60_000;

export async function startBroker(env: Record<string, string>, dataDir: string): Promise<Broker> {
  // BENCH_BROKER_PROFILE=<dir>: the broker writes a V8 CPU profile there when it stops (open it in Chrome DevTools).
  const profile = process.env.BENCH_BROKER_PROFILE;
  const flags = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [];
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', path.join(here, 'server.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`bench broker exited (${code}) before listening`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  const clients = new Map(readDemoClients(dataDir).map((c) => [c.clientId, c]));
  const tokens = new Map<string, { at: number; token: Promise<string> }>();
  const fresh = async (clientId: string) => {
    const client = clients.get(clientId);
    if (!client) throw new Error(`no demo client ${clientId} (demo clients are seeded in demo mode)`);
    const res = await requestToken(`${origin}/auth/token`, clientId, client.privateJwk, client.scopes);
    if (!res.body.access_token) throw new Error(`token for ${clientId}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.access_token;
  };
  return {
    origin,
    pid: child.pid!,
    token: (clientId) => {
      const cached = tokens.get(clientId);
      if (cached && Date.now() - cached.at < TOKEN_MAX_AGE_MS) return cached.token;
      const token = fresh(clientId);
      tokens.set(clientId, { at: Date.now(), token });
      token.catch(() => tokens.delete(clientId));
      return token;
    },
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
