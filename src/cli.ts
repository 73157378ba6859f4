/**
 * `huren <command>`: command-line tools.
 *   token --role his|clinician|bureau|admin [--org ID] [--scope "…"] [--url http://localhost:8080]
 *     Prints a bearer token for a seeded demo client of a running broker, obtained the way a hospital system does
 *     (SMART Backend Services: a signed client assertion posted to the token endpoint). Demo mode only.
 *   client --id ID --org Organization/ID --role his|clinician|bureau|admin --scopes "…" (--jwks FILE | --jwks-uri URL)
 *     [--acts-for Organization/ID,…]
 *     Registers (or replaces) a system client in the database at MONGODB_URI: how production clients are added.
 *   import FILE|DIR [--rejects FILE] [--owner Organization/ID] [--page-size N]
 *     Imports NDJSON / Bundle JSON files (a FHIR Bulk Data export); refused resources go to the rejects file.
 *   sync [--hospital ID]…
 *     Pulls new and changed results from the registered hospital FHIR servers once (all enabled ones by default).
 *   cds-token [--service ID] [--feedback] [--url …], cds-client --iss URL --institution ID (--jwks FILE | --jwks-uri URL)
 *     CDS Hooks: a demo EHR JWT for one call; registering an EHR (src/cds/cli.ts).
 *   seed --patients N [--seed S]
 *     Seeds N synthetic demo patients with results and a year of decisions (idempotent; src/demo/command.ts).
 *   migrate-sqlite [--batch-size N]
 *     Copies a data directory of the earlier SQLite default into the new database (src/migrate-command.ts).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { JSONWebKeySet } from 'jose';
import mongoose from 'mongoose';
import { requestToken } from './auth/assertion.js';
import { readDemoClients } from './auth/demo-clients.js';
import { parseScope } from './auth/scopes.js';
import { ROLES, type ClientDoc, type Role } from './auth/tokens.js';
import { loadConfig } from './config.js';
import { seedCommand } from './demo/command.js';
import { cdsClient, CdsCliError, cdsToken } from './cds/cli.js';
import { importCommand, UsageError } from './import/command.js';
import { syncCommand } from './sync/command.js';
import { migrateSqliteCommand } from './migrate-command.js';

async function token(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      role: { type: 'string' },
      org: { type: 'string' },
      scope: { type: 'string' },
      url: { type: 'string' },
    },
  });
  const config = loadConfig();
  const role = values.role ?? 'admin';
  const clients = readDemoClients(config.dataDir).filter(
    (c) =>
      c.role === role &&
      (!values.org || c.organization === `Organization/${values.org.replace(/^Organization\//, '')}`),
  );
  if (clients.length === 0) {
    const known = readDemoClients(config.dataDir).map((c) => `${c.role} ${c.organization}`);
    fail(
      known.length
        ? `No demo client with role '${role}'${values.org ? ` for ${values.org}` : ''}. Demo clients: ${known.join('; ')}`
        : `No demo clients in ${config.dataDir}/demo-clients: start the broker once in demo mode (npm start)`,
    );
  }
  const client = clients[0];
  const base = (values.url ?? config.baseUrl?.replace(/\/fhir$/, '') ?? `http://localhost:${config.port}`).replace(
    /\/$/,
    '',
  );
  const discovery = await fetch(`${base}/.well-known/smart-configuration`).catch(() => undefined);
  if (!discovery?.ok) fail(`No broker answers at ${base}; start it with npm start, or pass --url`);
  const { token_endpoint: tokenUrl } = (await discovery.json()) as { token_endpoint: string };
  const { status, body } = await requestToken(
    tokenUrl,
    client.clientId,
    client.privateJwk,
    values.scope ?? client.scopes,
  );
  if (status !== 200 || !body.access_token)
    fail(`Token refused: ${body.error ?? status} ${body.error_description ?? ''}`);
  console.error(`# ${client.clientId} (${client.role}, ${client.organization}); valid for 5 minutes`);
  console.log(body.access_token);
}

async function client(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      org: { type: 'string' },
      role: { type: 'string' },
      scopes: { type: 'string' },
      jwks: { type: 'string' },
      'jwks-uri': { type: 'string' },
      name: { type: 'string' },
      'acts-for': { type: 'string' },
    },
  });
  const config = loadConfig();
  if (!config.mongodbUri) fail('Set MONGODB_URI to the database of the broker');
  if (!values.id || !values.org || !values.role || !values.scopes)
    fail('--id, --org, --role and --scopes are required');
  if (!ROLES.includes(values.role as Role)) fail(`--role must be one of ${ROLES.join(', ')}`);
  if (!/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(values.org)) fail('--org must be Organization/<id>');
  const actsFor = (values['acts-for'] ?? '').split(',').filter(Boolean);
  if (actsFor.some((o) => !/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(o))) {
    fail('--acts-for must be a comma-separated list of Organization/<id>');
  }
  const bad = values.scopes.split(/\s+/).filter((s) => !parseScope(s));
  if (bad.length) fail(`Not SMART system scopes: ${bad.join(' ')}`);
  if (!values.jwks === !values['jwks-uri']) fail('Give exactly one of --jwks FILE (public keys) or --jwks-uri URL');
  const jwks = values.jwks ? (JSON.parse(fs.readFileSync(values.jwks, 'utf8')) as JSONWebKeySet) : undefined;
  if (jwks && (!Array.isArray(jwks.keys) || jwks.keys.some((k) => 'd' in k))) {
    fail('--jwks must be a JWK Set of PUBLIC keys ({"keys":[…]} without private parts)');
  }
  const conn = await mongoose
    .createConnection(config.mongodbUri, { dbName: process.env.HUREN_DB_NAME ?? 'huren' })
    .asPromise();
  const doc: Omit<ClientDoc, '_id'> = {
    name: values.name ?? values.id,
    organization: values.org,
    role: values.role as Role,
    scopes: values.scopes,
    ...(actsFor.length ? { actsFor } : {}),
    active: true,
    ...(jwks ? { jwks } : { jwksUri: values['jwks-uri'] }),
  };
  await conn.db!.collection<ClientDoc>('clients').replaceOne({ _id: values.id }, doc, { upsert: true });
  await conn.close();
  console.log(`Client ${values.id} registered (${values.role}, ${values.org})`);
}

/** Runs a connector command (import, sync) and exits with its code; a usage mistake is printed without a stack. */
async function connector(command: (args: string[]) => Promise<number>, args: string[]): Promise<void> {
  try {
    process.exit(await command(args));
  } catch (err) {
    if (err instanceof UsageError) fail(err.message);
    throw err;
  }
}

/** A CDS Hooks command (src/cds/cli.ts); a usage mistake is printed without a stack. */
async function cds(command: (args: string[]) => Promise<void>, args: string[]): Promise<void> {
  try {
    await command(args);
  } catch (err) {
    if (err instanceof CdsCliError) fail(err.message);
    throw err;
  }
}

function fail(message: string): never {
  console.error(`huren: ${message}`);
  process.exit(1);
}

const [command, ...rest] = process.argv.slice(2);
const commands: Record<string, (args: string[]) => Promise<void>> = {
  token,
  client,
  import: (args) => connector(importCommand, args),
  sync: (args) => connector(syncCommand, args),
  'cds-token': (args) => cds(cdsToken, args),
  'cds-client': (args) => cds(cdsClient, args),
  seed: (args) => connector(seedCommand, args),
  'migrate-sqlite': (args) => connector(migrateSqliteCommand, args),
};
const run = command ? commands[command] : undefined;
if (!run) fail(`usage: huren ${Object.keys(commands).join('|')} [options]  (unknown command '${command ?? ''}')`);
else await run(rest);
