/**
 * `npm run federation`: a province–city–district federation on one machine (docs/federation.md). Three brokers in
 * one process on one embedded database, each with its own database name — 山东省 (province, port 8091), 青岛市 (city,
 * 8092) and 黄岛区 (district, 8093) — linked parent/child through the federation registry with their own SMART Backend
 * Services keys, sharing the demo patient key secret as the province's brokers share theirs. At the district broker
 * demo hospitals A and B are hospitals of Huangdao; at the province broker hospital B is a hospital of Jinan (another
 * city), so a result pushed to the district broker can be checked from another city of the province. Ctrl-C stops
 * all three.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { createApp, type AppDeps } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { tokenCommand } from '../src/demo/instructions.js';
import { createHttpServer } from '../src/http-limits.js';
import { createLogger } from '../src/log.js';
import { createServices } from '../src/services.js';
import { startDatabase } from '../src/store/database.js';

/** As the user gave it (printed in the token commands), and resolved. */
const dataDirArg = process.env.HUREN_DATA_DIR ?? 'data/federation';
const dataDir = path.resolve(dataDirArg);
const firstPort = Number(process.env.HUREN_FEDERATION_PORT ?? 8091);

const LEVELS = [
  { name: 'shandong', region: '370000', label: '山东省 province' },
  { name: 'qingdao', region: '370200', label: '青岛市 city' },
  { name: 'huangdao', region: '370211', label: '黄岛区 district' },
] as const;
type Level = (typeof LEVELS)[number] & { port: number; base: string; deps: AppDeps; server: Server; jwk: JWK };

async function keyOf(name: string): Promise<JWK> {
  const file = path.join(dataDir, 'federation-keys', `${name}.json`);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as JWK;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = await generateKeyPair('ES384', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: `broker-${name}-1`, alg: 'ES384' };
  fs.writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}

const publicOf = ({ d: _d, ...jwk }: JWK): JWK => jwk;

async function main(): Promise<void> {
  const log = createLogger({ level: process.env.HUREN_LOG_LEVEL ?? 'warn', json: !process.stdout.isTTY });
  const base = loadConfig({ ...process.env, HUREN_DATA_DIR: dataDir });
  const db = await startDatabase({ uri: base.mongodbUri, dataDir, onProgress: (m) => log.warn(m) });
  const levels: Level[] = [];
  for (const [i, level] of LEVELS.entries()) {
    const port = firstPort + i;
    const fhir = `http://localhost:${port}/fhir`;
    const config = loadConfig({
      ...process.env,
      HUREN_DATA_DIR: dataDir,
      HUREN_BASE_URL: fhir,
      HUREN_DEMO_PATIENTS: '0',
      PORT: String(port),
    });
    const deps = await createServices(config, log.child({ broker: level.name }), db.uri, `huren_${level.name}`);
    const server = createHttpServer(createApp(deps), config);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, () => resolve()));
    levels.push({ ...level, port, base: fhir, deps, server, jwk: await keyOf(level.name) });
  }
  const [province, city, district] = levels as [Level, Level, Level];
  const link = async (at: Level, to: Level, relation: 'parent' | 'child') =>
    at.deps.federation.registry.put({
      _id: to.name,
      relation,
      name: to.label,
      baseUrl: to.base,
      region: to.region,
      outbound: {
        tokenUrl: to.base.replace(/\/fhir$/, '/auth/token'),
        clientId: `broker-${at.name}`,
        privateJwk: at.jwk,
        scope: 'system/DiagnosticReport.rs system/Observation.rs',
      },
      inbound: { clientId: `broker-${to.name}`, jwks: { keys: [publicOf(to.jwk)] } },
      timeoutMs: 400,
      enabled: true,
      // Each level applies its parent's catalogue, with its own additions (docs/federation.md, rules per level).
      ...(relation === 'parent' ? { inheritRules: true } : {}),
    });
  await link(district, city, 'parent');
  await link(city, district, 'child');
  await link(city, province, 'parent');
  await link(province, city, 'child');
  await relocate(district.deps, { 'demo-hospital-a': HUANGDAO, 'demo-hospital-b': HUANGDAO });
  await relocate(province.deps, { 'demo-hospital-b': JINAN_LIXIA });
  const stops = [city, district].map((l) => l.deps.federation.rules.startSchedule(60_000));

  const token = (l: Level, role: string) => tokenCommand(l.base.replace(/\/fhir$/, ''), dataDirArg, `--role ${role}`);
  process.stdout.write(
    [
      '',
      'Huren federation: three brokers on one embedded database',
      ...levels.map((l) => `  ${l.label.padEnd(16)} ${l.base}   (database huren_${l.name}, region ${l.region})`),
      '',
      'Push a 本省HR CBC of Hospital A to the district broker:',
      `  TOKEN=$(${token(district, 'his')})`,
      `  curl -s -X PUT ${district.base}/Patient/fed-demo -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' \\`,
      `    -d '{"resourceType":"Patient","id":"fed-demo","identifier":[{"system":"urn:oid:2.16.156.10011.1.1","value":"370211198001011239"}],"managingOrganization":{"reference":"Organization/demo-hospital-a"}}'`,
      `  curl -s -X PUT ${district.base}/DiagnosticReport/fed-demo-cbc -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' \\`,
      `    -d '{"resourceType":"DiagnosticReport","id":"fed-demo-cbc","status":"final","extension":[{"url":"https://huren.example.org/fhir/StructureDefinition/hr-mark","valueCoding":{"system":"https://huren.example.org/fhir/CodeSystem/hr-scope","code":"provincial"}}],"code":{"coding":[{"system":"http://loinc.org","code":"57021-8"}]},"subject":{"reference":"Patient/fed-demo"},"effectiveDateTime":"'$(TZ=Asia/Shanghai date +%Y-%m-%dT%H:%M:%S+08:00)'","performer":[{"reference":"Organization/demo-hospital-a"}]}'`,
      'Ask at the province broker as a doctor of Hospital B, a hospital of Jinan:',
      `  TOKEN=$(${token(province, 'clinician')})`,
      `  curl -s "${province.base}/\\$reuse-check?patient=urn:oid:2.16.156.10011.1.1|370211198001011239&code=http://loinc.org|57021-8&requester=Organization/demo-hospital-b" -H "Authorization: Bearer $TOKEN" -H 'Accept-Language: en'`,
      '',
      'The bureau dashboard of the whole province (sign in with the token this prints):',
      `  ${token(province, 'bureau')}`,
      `  ${province.base.replace(/\/fhir$/, '')}/dashboard?scope=federation`,
      '',
      'Ctrl-C stops the three brokers.',
      '',
    ].join('\n'),
  );

  const shutdown = async () => {
    for (const stop of stops) stop();
    for (const l of levels) {
      l.server.closeAllConnections();
      await new Promise<void>((resolve) => l.server.close(() => resolve()));
      await l.deps.connection.close();
    }
    await db.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
}

/**
 * Where the demo hospitals are at each broker: at the district broker hospitals A and B are hospitals of Huangdao
 * (a district broker speaks for its own district only); at the province broker hospital B is a hospital of Jinan
 * (历下区), outside Qingdao. The city broker keeps the seed's Qingdao districts.
 */
async function relocate(deps: AppDeps, moves: Record<string, { code: string; name: { zh: string; en: string } }>) {
  const current = deps.rules.store.current;
  const file = JSON.parse(current.doc.parts.institutions) as { institutions: { id: string; district: object }[] };
  for (const institution of file.institutions) {
    const to = moves[institution.id];
    if (to) institution.district = to;
  }
  await deps.rules.edit('institutions', file, current.version, 'npm run federation');
}

const HUANGDAO = { code: '370211', name: { zh: '黄岛区', en: 'Huangdao District' } };
const JINAN_LIXIA = { code: '370102', name: { zh: '历下区', en: 'Lixia District (Jinan)' } };

main().catch((err: unknown) => {
  process.stderr.write(`huren federation: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
