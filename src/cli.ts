/**
 * `huren <command>`: the broker's command-line tools (commander). Every command has `--help` with examples; a usage
 * mistake is answered with the usage and exit code 2, never a stack trace. Each command's module is imported only
 * when it runs, so `huren token` and `huren --help` load neither the server nor a database. Exit codes:
 * src/cli/errors.ts (and README: Command line).
 */
import { Command, CommanderError, Option } from 'commander';
import { EXIT, UsageError } from './cli/errors.js';

/** Errors whose message says all the user needs: printed without a stack, exit code 1. */
const KNOWN_ERRORS = new Set([
  'CliError',
  'ConfigError',
  'DatabaseUnavailableError',
  'PostgresUnavailableError',
  'TokenCommandError',
  'ClientCommandError',
  'CdsCliError',
  'SeedDataError',
]);

const ROLE_CHOICES = ['his', 'clinician', 'bureau', 'supervisor', 'admin'];

const EXIT_CODES_HELP = `
Exit codes:
  0  done
  1  failed: the broker, the database or a file said no (the message says why)
  2  usage mistake: unknown command or option, missing or malformed argument (the usage is printed)
  3  done, but some resources were refused (import: the rejects file; sync: the per-hospital lines)`;

const examples = (...lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;

/** Runs a command's action; its result (an exit code) ends the process, its known errors are printed plainly. */
function run(cmd: Command, action: () => Promise<number | void>): Promise<void> {
  return action().then(
    (code) => process.exit(code ?? EXIT.ok),
    (err: unknown) => {
      const e = err as Error;
      if (e instanceof UsageError) {
        process.stderr.write(`huren ${cmd.name()}: ${e.message}\n\n${cmd.helpInformation()}`);
        process.exit(EXIT.usage);
      }
      if (KNOWN_ERRORS.has(e?.name)) process.stderr.write(`huren ${cmd.name()}: ${e.message}\n`);
      else
        process.stderr.write(
          `huren ${cmd.name()}: ${process.env.HUREN_LOG_LEVEL === 'debug' ? e?.stack : (e?.message ?? e)}\n`,
        );
      process.exit(EXIT.failed);
    },
  );
}

const program = new Command('huren')
  .description(
    'Huren (互认): command-line tools of the FHIR broker for cross-hospital mutual recognition of exam and lab ' +
      'results.\nCommands that use the database read the same environment as `npm start` (MONGODB_URI, ' +
      'HUREN_DATA_DIR, HUREN_DB_NAME, …).',
  )
  .showHelpAfterError()
  .exitOverride()
  .configureHelp({ showGlobalOptions: false })
  .addHelpText(
    'after',
    `${examples('huren token --role his', 'huren import export/ --owner demo-hospital-a', 'huren token --help')}\n${EXIT_CODES_HELP}`,
  );

program
  .command('token')
  .summary('print a bearer token of a demo client (demo mode)')
  .description(
    'Print a bearer token (5 minutes) for a demo client of a running broker in demo mode, obtained as a hospital ' +
      'system does: a signed client assertion posted to the token endpoint.',
  )
  .addOption(new Option('--role <role>', 'the demo client’s role').choices(ROLE_CHOICES).default('admin'))
  .option('--org <id>', 'the institution of the demo client, e.g. demo-hospital-b')
  .option('--scope <scopes>', 'ask for fewer scopes than the client has, e.g. "system/Observation.rs"')
  .option('--url <origin>', 'where the broker runs (default: HUREN_BASE_URL, else http://localhost:$PORT)')
  .addHelpText(
    'after',
    examples(
      'TOKEN=$(huren token --role his)',
      'TOKEN=$(npm run -s token -- --role his --org demo-hospital-b --url http://localhost:18731)',
      'huren token --role bureau --scope "system/MeasureReport.rs"',
    ),
  )
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./auth/token-command.js')).tokenCommand(options));
  });

program
  .command('client')
  .summary('register a hospital system client (production)')
  .description('Register (or replace) a hospital system client in the database at MONGODB_URI, with its public keys.')
  .requiredOption('--id <clientId>', 'the client_id the system signs its assertions with')
  .requiredOption('--org <Organization/id>', 'the institution the system acts for')
  .addOption(new Option('--role <role>', 'what the system may do').choices(ROLE_CHOICES).makeOptionMandatory())
  .requiredOption('--scopes <scopes>', 'SMART system scopes, space-separated')
  .option('--jwks <file>', 'a JWK Set file of its PUBLIC keys')
  .option('--jwks-uri <url>', 'or the URL where it publishes them')
  .option('--name <name>', 'a readable name (default: the id)')
  .option('--acts-for <Organization/id,…>', 'other institutions it may write results for (e.g. a regional lab)')
  .addHelpText(
    'after',
    examples(
      'MONGODB_URI=mongodb://… huren client --id lis-1 --org Organization/hosp-1 --role his \\\n' +
        '      --scopes "system/Observation.cu system/DiagnosticReport.cu" --jwks public-keys.json',
      'MONGODB_URI=mongodb://… huren client --id ehr-2 --org Organization/hosp-2 --role clinician \\\n' +
        '      --scopes "system/*.rs" --jwks-uri https://ehr.hosp-2.example/jwks.json',
    ),
  )
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./auth/client-command.js')).clientCommand(options));
  });

program
  .command('import')
  .summary('import NDJSON / Bundle files into the database')
  .description(
    'Import NDJSON or Bundle JSON files (e.g. a FHIR Bulk Data export) into the database: validated, deduplicated, ' +
      'the newest version kept; refused resources go to the rejects file with their line and OperationOutcome. ' +
      'Safe to re-run after an interruption (kill -9 included): the same resources, once. On the embedded database ' +
      'the broker must be stopped first (the command says so); on MongoDB it may run beside the broker.',
  )
  .argument('<path>', 'a file, or a directory of *.ndjson / *.json files')
  .option('--rejects <file>', 'where refused resources are written', 'huren-import-rejects.ndjson')
  .option('--owner <Organization/id>', 'the institution the resources belong to (tenancy)')
  .option('--page-size <n>', 'resources per ingest-log entry, 1-1000')
  .option('--encoding <name>', "the files' character encoding: utf-8, or gb18030 for GB18030/GBK exports", 'utf-8')
  .addHelpText(
    'after',
    examples(
      'huren import export/ --owner demo-hospital-a',
      'huren import lis-export.ndjson --encoding gb18030',
      'huren import Observation.ndjson --rejects refused.ndjson',
      'MONGODB_URI=mongodb://… huren import /data/bulk-export',
    ),
  )
  .action(async function (this: Command, file: string, options) {
    await run(this, async () => (await import('./import/command.js')).importCommand(file, options));
  });

program
  .command('sync')
  .summary('pull results once from the registered hospital servers')
  .description(
    'Pull new and changed results once from the registered hospital FHIR servers (all enabled ones, or those ' +
      'named). A hospital being pulled by another process is waited for.',
  )
  .option('--hospital <id...>', 'only these sync endpoints (repeatable)')
  .addHelpText('after', examples('huren sync', 'huren sync --hospital hosp-a --hospital hosp-b'))
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./sync/command.js')).syncCommand(options));
  });

program
  .command('seed')
  .summary('seed synthetic demo patients (idempotent)')
  .description(
    'Seed N synthetic demo patients with results and a year of decisions (idempotent: the same seed and size ' +
      'again changes nothing), and refresh the showcase patient.',
  )
  .requiredOption('--patients <n>', 'how many synthetic patients')
  .option('--seed <s>', 'the generator’s seed (the same seed gives the same patients)')
  .addHelpText('after', examples('huren seed --patients 1000', 'huren seed --patients 100 --seed 7'))
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./demo/command.js')).seedCommand(options));
  });

program
  .command('cds-token')
  .summary('print a demo EHR JWT for a CDS Hooks call')
  .description('Print a JWT of the demo EHR for one call of a CDS Hooks service (demo mode).')
  .option('--service <id>', 'the CDS service (default: the order-select one)')
  .option('--feedback', 'for the service’s /feedback endpoint')
  .option('--url <origin>', 'where the broker runs (default: HUREN_BASE_URL, else http://localhost:$PORT)')
  .addHelpText('after', examples('JWT=$(huren cds-token --service huren-reuse-order-sign)'))
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./cds/cli.js')).cdsToken(options));
  });

program
  .command('cds-client')
  .summary('register an EHR for the CDS Hooks services')
  .description('Register (or replace) an EHR allowed to call the CDS Hooks services, in the database at MONGODB_URI.')
  .requiredOption('--iss <url>', 'the EHR’s issuer')
  .requiredOption('--institution <id>', 'the institution the EHR belongs to')
  .option('--jwks <file>', 'a JWK Set file of its public keys')
  .option('--jwks-uri <url>', 'or the URL where it publishes them')
  .option('--name <name>', 'a readable name')
  .addOption(new Option('--language <lang>', 'language of its cards').choices(['zh-CN', 'en']))
  .option('--fhir-server <url...>', 'FHIR bases besides its iss origin it may name as fhirServer (repeatable)')
  .option('--origin <url...>', 'browser origins besides its iss origin allowed by CORS (repeatable)')
  .addHelpText(
    'after',
    examples(
      'MONGODB_URI=mongodb://… huren cds-client --iss https://ehr.hosp-b.example --institution hosp-b --jwks ehr.json',
    ),
  )
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./cds/cli.js')).cdsClient(options));
  });

program
  .command('patient-key')
  .summary("derive a province's patient key of one epoch (the key custodian's tool)")
  .description(
    'Print the patient key secret of one epoch for every broker of a province, derived from the province root ' +
      'secret in HUREN_PROVINCE_ROOT_SECRET (docs/federation.md). Give it to the brokers as ' +
      'HUREN_PATIENT_KEY_SECRET; during a rotation the previous epoch key goes to HUREN_PATIENT_KEY_PREVIOUS_SECRETS.',
  )
  .requiredOption('--province <code>', 'the province division code, e.g. 370000')
  .requiredOption('--epoch <name>', 'the epoch, e.g. 2027-01')
  .addHelpText('after', examples('HUREN_PROVINCE_ROOT_SECRET=… huren patient-key --province 370000 --epoch 2027-01'))
  .action(async function (this: Command, options: { province: string; epoch: string }) {
    await run(this, async () => {
      const root = process.env.HUREN_PROVINCE_ROOT_SECRET ?? '';
      if (!root) throw new UsageError('HUREN_PROVINCE_ROOT_SECRET must hold the province root secret');
      const { deriveEpochKey } = await import('./recognition/identity.js');
      try {
        process.stdout.write(`${deriveEpochKey(root, options.province, options.epoch)}\n`);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    });
  });

program
  .command('reindex')
  .summary('re-project the recognition fact index under the current patient keys')
  .description(
    'Re-project every stored result into the recognition fact index, and rebuild the patient index, under the patient ' +
      'key secrets in force (broker stopped when on the embedded database). After a key rotation, once every broker ' +
      'of the province has run it, HUREN_PATIENT_KEY_PREVIOUS_SECRETS can be emptied (docs/federation.md).',
  )
  .addHelpText('after', examples('huren reindex', 'MONGODB_URI=mongodb://… huren reindex'))
  .action(async function (this: Command) {
    await run(this, async () => (await import('./reindex-command.js')).reindexCommand());
  });

program
  .command('migrate-sqlite')
  .summary('convert a data directory of the earlier SQLite default')
  .description(
    'Copy a data directory of the earlier SQLite default into the embedded PostgreSQL (broker stopped). ' +
      'Interrupted, it resumes where it stopped.',
  )
  .option('--batch-size <n>', 'documents per batch')
  .addHelpText('after', examples('huren migrate-sqlite', 'HUREN_DATA_DIR=/srv/huren huren migrate-sqlite'))
  .action(async function (this: Command, options) {
    await run(this, async () => (await import('./migrate-command.js')).migrateSqliteCommand(options));
  });

try {
  await program.parseAsync();
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  // Help and version end with 0 (commander's own code); anything else commander refuses is a usage mistake.
  process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
}
