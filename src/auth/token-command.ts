/**
 * `huren token`: a bearer token for a seeded demo client of a running broker, obtained the way a hospital system
 * does (SMART Backend Services: a client assertion signed with the client's private key, posted to the token
 * endpoint found through /.well-known/smart-configuration). Kept small: it loads neither the server nor a database.
 */
import { loadConfig } from '../config.js';
import { requestToken } from './assertion.js';
import { readDemoClients } from './demo-clients.js';

export class TokenCommandError extends Error {
  override name = 'TokenCommandError';
}

export interface TokenOptions {
  role: string;
  org?: string;
  scope?: string;
  url?: string;
}

export async function tokenCommand(options: TokenOptions): Promise<void> {
  const config = loadConfig();
  const all = readDemoClients(config.dataDir);
  const org = options.org?.replace(/^Organization\//, '');
  const client = all.find((c) => c.role === options.role && (!org || c.organization === `Organization/${org}`));
  if (!client) {
    throw new TokenCommandError(
      all.length
        ? `No demo client with role '${options.role}'${org ? ` for ${org}` : ''}. Demo clients: ` +
            all.map((c) => `${c.role} ${c.organization}`).join('; ')
        : `No demo clients in ${config.dataDir}/demo-clients: start the broker once in demo mode (npm start), ` +
            'or set HUREN_DATA_DIR to the data directory of the running broker',
    );
  }
  const base = (options.url ?? config.baseUrl?.replace(/\/fhir$/, '') ?? `http://localhost:${config.port}`)
    .replace(/\/fhir\/?$/, '')
    .replace(/\/$/, '');
  const discovery = await fetch(`${base}/.well-known/smart-configuration`).catch(() => undefined);
  if (!discovery?.ok) {
    throw new TokenCommandError(
      `No broker answers at ${base}; start it with npm start, or pass --url with the address it printed`,
    );
  }
  const { token_endpoint: tokenUrl } = (await discovery.json()) as { token_endpoint: string };
  const { status, body } = await requestToken(
    tokenUrl,
    client.clientId,
    client.privateJwk,
    options.scope ?? client.scopes,
  );
  if (status !== 200 || !body.access_token) {
    throw new TokenCommandError(`Token refused: ${body.error ?? status} ${body.error_description ?? ''}`.trim());
  }
  process.stderr.write(`# ${client.clientId} (${client.role}, ${client.organization}); valid for 5 minutes\n`);
  process.stdout.write(`${body.access_token}\n`);
}
