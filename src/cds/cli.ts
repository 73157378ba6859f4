/**
 * CLI commands for CDS Hooks EHRs (wired in src/cli.ts):
 *   cds-token [--service huren-reuse-order-select] [--feedback] [--url http://localhost:8080]
 *     Prints a JWT signed with the demo EHR's key (demo mode), `aud` the service URL: for trying the services with
 *     curl. Each JWT is good for one call (its jti is remembered).
 *   cds-client --iss URL --institution ID (--jwks FILE | --jwks-uri URL) [--name "…"] [--language zh-CN|en]
 *       [--fhir-server URL …] [--origin https://ehr-web.example.org …]
 *     Registers (or replaces) an EHR allowed to call the services, in the database at MONGODB_URI.
 */
import fs from 'node:fs';
import type { JSONWebKeySet } from 'jose';
import mongoose from 'mongoose';
import { loadConfig } from '../config.js';
import { cdsClients, readDemoCdsClient, signCdsJwt, type CdsClientDoc } from './clients.js';
import { CDS_SERVICES } from './hook.js';

export class CdsCliError extends Error {}

export interface CdsTokenOptions {
  service?: string;
  feedback?: boolean;
  url?: string;
}

export interface CdsClientOptions {
  iss?: string;
  institution?: string;
  jwks?: string;
  jwksUri?: string;
  name?: string;
  language?: string;
  fhirServer?: string[];
  origin?: string[];
}

export async function cdsToken(values: CdsTokenOptions): Promise<void> {
  const config = loadConfig();
  const demo = readDemoCdsClient(config.dataDir);
  if (!demo)
    throw new CdsCliError(`No demo EHR key in ${config.dataDir}/demo-cds-clients: start the broker once in demo mode`);
  const service = values.service ?? CDS_SERVICES[0]!.id;
  if (!CDS_SERVICES.some((s) => s.id === service)) {
    throw new CdsCliError(`Unknown service '${service}'; services: ${CDS_SERVICES.map((s) => s.id).join(', ')}`);
  }
  const origin = (values.url ?? config.baseUrl?.replace(/\/fhir$/, '') ?? `http://localhost:${config.port}`).replace(
    /\/$/,
    '',
  );
  const aud = `${origin}/cds-services/${service}${values.feedback ? '/feedback' : ''}`;
  console.error(`# iss ${demo.iss} (EHR of ${demo.institution}), aud ${aud}; one call, valid 5 minutes`);
  process.stdout.write(`${await signCdsJwt(demo.iss, demo.privateJwk, aud)}\n`);
}

export async function cdsClient(values: CdsClientOptions): Promise<void> {
  const config = loadConfig();
  if (!config.mongodbUri) throw new CdsCliError('Set MONGODB_URI to the database of the broker');
  if (!values.iss || !values.institution) throw new CdsCliError('--iss and --institution are required');
  if (!values.jwks === !values.jwksUri) throw new CdsCliError('Give exactly one of --jwks FILE or --jwks-uri URL');
  const doc: Omit<CdsClientDoc, '_id'> = {
    name: values.name ?? values.iss,
    institution: values.institution.replace(/^Organization\//, ''),
    ...(values.jwks ? { jwks: JSON.parse(fs.readFileSync(values.jwks, 'utf8')) as JSONWebKeySet } : {}),
    ...(values.jwksUri ? { jwksUri: values.jwksUri } : {}),
    ...(values.language ? { language: values.language } : {}),
    ...(values.fhirServer ? { fhirServers: values.fhirServer } : {}),
    ...(values.origin ? { origins: values.origin } : {}),
    active: true,
  };
  const conn = await mongoose
    .createConnection(config.mongodbUri, { dbName: process.env.HUREN_DB_NAME ?? 'huren' })
    .asPromise();
  await cdsClients(conn.db!).replaceOne({ _id: values.iss }, doc, { upsert: true });
  await conn.close();
  process.stdout.write(`EHR ${values.iss} registered for Organization/${doc.institution}\n`);
}
