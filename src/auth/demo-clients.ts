import fs from 'node:fs';
import path from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Collection } from 'mongodb';
import type { ClientDoc, Role } from './tokens.js';

/**
 * Demo clients, one per role (and one `his` client per demo hospital), so a newcomer can call the API at once with
 * `npm run token`. Their private keys are generated at first start into `<dataDir>/demo-clients/` — never committed —
 * and only their public keys are registered. Production mode seeds none and removes any left over.
 */
export interface DemoClientFile {
  clientId: string;
  role: Role;
  organization: string;
  scopes: string;
  privateJwk: JWK;
}

export const DEMO_CLIENTS: { clientId: string; name: string; role: Role; organization: string; scopes: string }[] = [
  {
    clientId: 'demo-his-hospital-a',
    name: 'Demo HIS/LIS of Hospital A',
    role: 'his',
    organization: 'Organization/demo-hospital-a',
    scopes:
      'system/DiagnosticReport.cruds system/Observation.cruds system/Patient.cruds system/ServiceRequest.cruds system/Organization.rs',
  },
  {
    clientId: 'demo-his-hospital-b',
    name: 'Demo HIS/LIS of Hospital B',
    role: 'his',
    organization: 'Organization/demo-hospital-b',
    scopes:
      'system/DiagnosticReport.cruds system/Observation.cruds system/Patient.cruds system/ServiceRequest.cruds system/Organization.rs',
  },
  {
    clientId: 'demo-clinician-hospital-b',
    name: 'Demo EHR of Hospital B (clinician)',
    role: 'clinician',
    organization: 'Organization/demo-hospital-b',
    scopes: 'system/*.rs',
  },
  {
    clientId: 'demo-bureau',
    name: 'Demo health bureau',
    role: 'bureau',
    organization: 'Organization/demo-health-bureau',
    scopes: 'system/Measure.rs system/MeasureReport.rs',
  },
  {
    clientId: 'demo-supervisor',
    name: 'Demo expert reviewer of the health commission (supervision of declines)',
    role: 'supervisor',
    organization: 'Organization/demo-health-bureau',
    scopes: 'system/Measure.rs system/MeasureReport.rs',
  },
  {
    clientId: 'demo-admin',
    name: 'Demo administrator',
    role: 'admin',
    organization: 'Organization/huren-operator',
    scopes: 'system/*.cruds',
  },
];

export async function seedDemoClients(clients: Collection<ClientDoc>, dataDir: string): Promise<DemoClientFile[]> {
  const dir = path.join(dataDir, 'demo-clients');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: DemoClientFile[] = [];
  for (const c of DEMO_CLIENTS) {
    const file = path.join(dir, `${c.clientId}.json`);
    let saved: DemoClientFile | undefined;
    if (fs.existsSync(file)) saved = JSON.parse(fs.readFileSync(file, 'utf8')) as DemoClientFile;
    if (!saved) {
      const { privateKey } = await generateKeyPair('ES384', { extractable: true });
      saved = { ...c, privateJwk: { ...(await exportJWK(privateKey)), kid: `${c.clientId}-1`, alg: 'ES384' } };
      // Written once with owner-only permissions; a second process starting at the same time keeps the first file.
      try {
        fs.writeFileSync(file, JSON.stringify(saved, null, 2), { flag: 'wx', mode: 0o600 });
      } catch {
        saved = JSON.parse(fs.readFileSync(file, 'utf8')) as DemoClientFile;
      }
    }
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = saved.privateJwk;
    await clients.replaceOne(
      { _id: c.clientId },
      {
        name: c.name,
        organization: c.organization,
        role: c.role,
        scopes: c.scopes,
        jwks: { keys: [publicJwk] },
        active: true,
        demo: true,
      },
      { upsert: true },
    );
    files.push(saved);
  }
  return files;
}

export async function removeDemoClients(clients: Collection<ClientDoc>): Promise<void> {
  await clients.deleteMany({ demo: true });
}

export function readDemoClients(dataDir: string): DemoClientFile[] {
  const dir = path.join(dataDir, 'demo-clients');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as DemoClientFile);
}
