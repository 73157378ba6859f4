import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { resultsOf } from '../fixtures/connectors.js';
import { TEST_DATA_DIR } from '../support/app.js';

/** `huren` as a user runs it: the package's bin, in a child process, output and exit code as they see them. */
const COMMANDS = [
  'token',
  'client',
  'import',
  'sync',
  'seed',
  'cds-token',
  'cds-client',
  'patient-key',
  'reindex',
  'migrate-sqlite',
];
const STACK_LINE = /^\s+at .+\(.+:\d+:\d+\)$/m;

function huren(args: string[], env: Record<string, string | undefined> = {}) {
  const merged: Record<string, string | undefined> = { ...process.env, HUREN_DATA_DIR: TEST_DATA_DIR, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const r = spawnSync(process.execPath, ['bin/huren.js', ...args], { encoding: 'utf8', env: merged });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('huren command line', () => {
  let tmp: string;
  let mongo: MongoClient;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-cli-'));
    mongo = await MongoClient.connect(inject('mongoUri'));
  });
  afterAll(async () => {
    await mongo?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('huren --help lists every command, examples and the exit codes', () => {
    const r = huren(['--help']);
    expect(r.status).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toMatch(/Exit codes:\n {2}0 {2}done\n {2}1 .*\n {2}2 {2}usage mistake/);
  });

  test.each(COMMANDS)('huren %s --help explains the command with its options and examples', (command) => {
    const r = huren([command, '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Usage: huren ${command} `);
    expect(r.stdout).toContain('Options:');
    expect(r.stdout).toMatch(/Examples:\n {2}\$ /);
  });

  test('an unknown option, command or a missing argument is answered with the usage and exit code 2, no stack', () => {
    for (const [args, message, usage] of [
      [['token', '--bogus'], "unknown option '--bogus'", 'Usage: huren token'],
      [['import', '--help-me', 'x'], "unknown option '--help-me'", 'Usage: huren import'],
      [['import'], "missing required argument 'path'", 'Usage: huren import'],
      [['seed'], "required option '--patients <n>' not specified", 'Usage: huren seed'],
      [
        ['token', '--role', 'nurse'],
        'Allowed choices are his, clinician, bureau, supervisor, admin',
        'Usage: huren token',
      ],
      [['frob'], "unknown command 'frob'", 'Usage: huren [options] [command]'],
    ] as const) {
      const r = huren([...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toContain(usage);
      expect(r.stderr).not.toMatch(STACK_LINE);
    }
    const bad = huren(['import', tmp, '--page-size', '0']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--page-size must be an integer from 1 to 1000');
    expect(bad.stderr).toContain('Usage: huren import');
    const encoding = huren(['import', tmp, '--encoding', 'gb-2312x']);
    expect(encoding.status).toBe(2);
    expect(encoding.stderr).toContain('--encoding gb-2312x is not a known character encoding');
  });

  test('token without a running broker says where it looked and how to point it elsewhere (exit 1)', () => {
    const r = huren(['token', '--role', 'his', '--url', 'http://127.0.0.1:9']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('No broker answers at http://127.0.0.1:9');
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  test('import is refused while another process owns the embedded database, naming its pid; nothing is started', () => {
    // A data directory whose embedded PostgreSQL is held by a live process (this test's), as by a running broker.
    const dataDir = path.join(tmp, 'owned');
    fs.mkdirSync(path.join(dataDir, 'postgresql'), { recursive: true });
    fs.writeFileSync(path.join(dataDir, 'postgresql', 'huren.pid'), `${process.pid}\n`);
    const file = path.join(tmp, 'one.ndjson');
    fs.writeFileSync(file, `${JSON.stringify(resultsOf('cli-owned', 1)[0])}\n`);
    for (const command of [['import', file], ['sync'], ['seed', '--patients', '1']]) {
      const r = huren(command, { MONGODB_URI: undefined, HUREN_DATA_DIR: dataDir });
      expect(r.status, command.join(' ')).toBe(1);
      expect(r.stderr).toContain(`in use by another Huren process (pid ${process.pid}`);
      expect(r.stderr).toContain('Nothing was started or changed');
      expect(r.stderr).not.toMatch(STACK_LINE);
    }
    // No second cluster was created on those files.
    expect(fs.readdirSync(path.join(dataDir, 'postgresql'))).toEqual(['huren.pid']);
  });

  test('import prints a step line at once, plain progress lines off a terminal (none repeated), then a summary', () => {
    const dbName = `t_cli_${randomBytes(4).toString('hex')}`;
    const file = path.join(tmp, 'results.ndjson');
    fs.writeFileSync(
      file,
      resultsOf('cli-progress', 20)
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    const r = huren(['import', file, '--owner', 'demo-hospital-a', '--rejects', path.join(tmp, 'rejects.ndjson')], {
      MONGODB_URI: inject('mongoUri'),
      HUREN_DB_NAME: dbName,
    });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe('Connecting to MongoDB at MONGODB_URI…');
    expect(lines).toContain('Loading the validator and the recognition rules…');
    const progress = lines.filter((l) => l.startsWith('import: '));
    expect(progress.length).toBeGreaterThan(0);
    expect(new Set(progress).size).toBe(progress.length);
    expect(progress.at(-1)).toMatch(/\(100%\).*41 created/);
    expect(r.stderr).not.toContain('\r');
    expect(r.stdout).toMatch(/^Imported 1 file\(s\) in [\d.]+ s: 41 created, 0 updated, 0 unchanged/);
    void mongo.db(dbName).dropDatabase();
  });

  test('an import killed with SIGKILL mid-way and run again leaves the same resources, once', async () => {
    const file = path.join(tmp, 'crash.ndjson');
    fs.writeFileSync(
      file,
      resultsOf('cli-crash', 60)
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    const run = (dbName: string) => {
      const child = spawn(
        process.execPath,
        ['bin/huren.js', 'import', file, '--page-size', '5', '--rejects', path.join(tmp, `${dbName}.ndjson`)],
        {
          env: {
            ...process.env,
            MONGODB_URI: inject('mongoUri'),
            HUREN_DB_NAME: dbName,
            HUREN_DATA_DIR: TEST_DATA_DIR,
          },
        },
      );
      let output = '';
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      return { child, exited, output: () => output };
    };
    const types = { type: { $in: ['Observation', 'DiagnosticReport', 'Patient'] } };
    /** Every written resource must be named by an AuditEvent of the import (an access never unrecorded). */
    const unaudited = async (dbName: string) => {
      const db = mongo.db(dbName);
      const audited = new Set<string>();
      for (const d of await db.collection('resources').find({ type: 'AuditEvent' }).toArray()) {
        for (const e of (d.resource as { entity?: { what?: { reference?: string } }[] }).entity ?? []) {
          if (e.what?.reference) audited.add(e.what.reference);
        }
      }
      const written = await db.collection('resources').find(types).toArray();
      return written.map((d) => String(d._id)).filter((ref) => !audited.has(ref));
    };
    const index = async (dbName: string) => {
      const db = mongo.db(dbName);
      const docs = await db.collection('resources').find(types).sort({ _id: 1 }).toArray();
      return {
        resources: docs.map((d) => ({
          id: d._id,
          content: (({ meta: _m, ...rest }) => rest)(d.resource as { meta: unknown }),
        })),
        versions: await db.collection('history').countDocuments(types),
      };
    };
    const reference = `t_cli_ref_${randomBytes(4).toString('hex')}`;
    const crashed = `t_cli_kill_${randomBytes(4).toString('hex')}`;
    const whole = run(reference);
    expect(await whole.exited, whole.output()).toBe(0);

    const first = run(crashed);
    const resources = mongo.db(crashed).collection('resources');
    for (let i = 0; i < 3000 && (await resources.countDocuments({ type: 'Observation' })) < 10; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    first.child.kill('SIGKILL');
    await first.exited;
    const partial = await resources.countDocuments({ type: 'Observation' });
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(60); // the kill really landed in the middle

    const second = run(crashed);
    expect(await second.exited, second.output()).toBe(0);
    const expected = await index(reference);
    expect(expected.resources).toHaveLength(121);
    const got = await index(crashed);
    expect(got.versions).toBe(expected.versions);
    expect(got.resources.map((r) => r.id)).toEqual(expected.resources.map((r) => r.id));
    expect(got).toEqual(expected);
    expect(await unaudited(crashed)).toEqual([]);
    await mongo.db(reference).dropDatabase();
    await mongo.db(crashed).dropDatabase();
  }, 120_000);
});
