/** Starts bench/server.ts as a child process and obtains its tokens the way a hospital system does. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requestToken } from '../src/auth/assertion.js';
import { readDemoClients } from '../src/auth/demo-clients.js';

export interface Broker {
  origin: string;
  pid: number;
  /** A fresh access token of a demo client (tokens live at most 5 minutes: ask before each measurement). */
  token(clientId: string): Promise<string>;
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

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
  return {
    origin,
    pid: child.pid!,
    token: async (clientId) => {
      const client = clients.get(clientId);
      if (!client) throw new Error(`no demo client ${clientId} (demo clients are seeded in demo mode)`);
      const res = await requestToken(`${origin}/auth/token`, clientId, client.privateJwk, client.scopes);
      if (!res.body.access_token) throw new Error(`token for ${clientId}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.access_token;
    },
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
