/**
 * `huren client`: registers (or replaces) a system client in the broker's database (MONGODB_URI): how production
 * hospital systems are added, with their public keys (a JWK Set file or a JWKS URL).
 */
import fs from 'node:fs';
import type { JSONWebKeySet } from 'jose';
import mongoose from 'mongoose';
import { loadConfig } from '../config.js';
import { parseScope } from './scopes.js';
import { ROLES, type ClientDoc, type Role } from './tokens.js';

export class ClientCommandError extends Error {
  override name = 'ClientCommandError';
}

export interface ClientOptions {
  id: string;
  org: string;
  role: Role;
  scopes: string;
  jwks?: string;
  jwksUri?: string;
  name?: string;
  /** Other institutions it may write for: `Organization/a,Organization/b`. */
  actsFor?: string;
}

export async function clientCommand(values: ClientOptions): Promise<void> {
  const fail = (message: string): never => {
    throw new ClientCommandError(message);
  };
  const config = loadConfig();
  if (!config.mongodbUri) fail('Set MONGODB_URI to the database of the broker');
  if (!ROLES.includes(values.role)) fail(`--role must be one of ${ROLES.join(', ')}`);
  if (!/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(values.org)) fail('--org must be Organization/<id>');
  const actsFor = (values.actsFor ?? '').split(',').filter(Boolean);
  if (actsFor.some((o) => !/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(o))) {
    fail('--acts-for must be a comma-separated list of Organization/<id>');
  }
  const bad = values.scopes.split(/\s+/).filter((s) => !parseScope(s));
  if (bad.length) fail(`Not SMART system scopes: ${bad.join(' ')}`);
  if (!values.jwks === !values.jwksUri) fail('Give exactly one of --jwks FILE (public keys) or --jwks-uri URL');
  let jwks: JSONWebKeySet | undefined;
  if (values.jwks) {
    try {
      jwks = JSON.parse(fs.readFileSync(values.jwks, 'utf8')) as JSONWebKeySet;
    } catch (e) {
      fail(`--jwks ${values.jwks}: ${(e as Error).message}`);
    }
    if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.some((k) => 'd' in k)) {
      fail('--jwks must be a JWK Set of PUBLIC keys ({"keys":[…]} without private parts)');
    }
  }
  const conn = await mongoose
    .createConnection(config.mongodbUri!, { dbName: process.env.HUREN_DB_NAME ?? 'huren' })
    .asPromise();
  const doc: Omit<ClientDoc, '_id'> = {
    name: values.name ?? values.id,
    organization: values.org,
    role: values.role,
    scopes: values.scopes,
    ...(actsFor.length ? { actsFor } : {}),
    active: true,
    ...(jwks ? { jwks } : { jwksUri: values.jwksUri }),
  };
  await conn.db!.collection<ClientDoc>('clients').replaceOne({ _id: values.id }, doc, { upsert: true });
  await conn.close();
  process.stdout.write(`Client ${values.id} registered (${values.role}, ${values.org})\n`);
}
