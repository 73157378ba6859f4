/**
 * The HL7 reference validator (HAPI FHIR's FhirInstanceValidator), built from conformance/validator once per machine
 * and run offline over a folder of JSON files in one JVM. The Maven artefacts are downloaded once into
 * ~/.cache/huren/m2; the compiled program and its class path are cached under a key of the program's sources, so a
 * change to the pom or the Java file rebuilds it and nothing else does.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const SOURCE_DIR = path.join(ROOT, 'conformance/validator');
const SOURCES = ['pom.xml', 'src/main/java/huren/conformance/Validate.java'];
const PROFILES_DIR = path.join(ROOT, 'profiles');

export interface ReferenceIssue {
  severity: 'fatal' | 'error' | 'warning' | 'information';
  location: string;
  message: string;
  messageId: string | null;
}

export interface ReferenceVerdict {
  /** Path of the file relative to the folder validated. */
  file: string;
  issues: ReferenceIssue[];
}

function cacheRoot(): string {
  return (
    process.env.HUREN_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huren')
  );
}

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Builds the validator if this machine has not yet; returns the Java class path to run it with. */
export async function ensureReferenceValidator(onProgress?: (message: string) => void): Promise<string> {
  const hash = createHash('sha256');
  for (const file of SOURCES) hash.update(file).update(fs.readFileSync(path.join(SOURCE_DIR, file)));
  const target = path.join(cacheRoot(), `hapi-validator-${hash.digest('hex').slice(0, 16)}`);
  const classpathFile = path.join(target, 'classpath.txt');
  if (fs.existsSync(classpathFile)) return fs.readFileSync(classpathFile, 'utf8').trim();

  for (const tool of ['java', 'javac', 'mvn']) {
    if (!hasCommand(tool)) {
      throw new Error(
        `The conformance harness needs ${tool} (a JDK 17+ and Maven: apt-get install -y default-jdk-headless maven)`,
      );
    }
  }
  const started = Date.now();
  onProgress?.(`Building the HL7 reference validator (HAPI FHIR, Maven Central) into ${target}…`);
  fs.mkdirSync(cacheRoot(), { recursive: true });
  const work = fs.mkdtempSync(path.join(cacheRoot(), 'hapi-validator-build-'));
  try {
    const dependencies = path.join(work, 'dependencies.txt');
    await run(
      'mvn',
      [
        '-B',
        '-q',
        '-f',
        path.join(SOURCE_DIR, 'pom.xml'),
        `-Dmaven.repo.local=${path.join(cacheRoot(), 'm2')}`,
        'dependency:build-classpath',
        `-Dmdep.outputFile=${dependencies}`,
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    const classes = path.join(target, 'classes');
    const classpath = `${classes}${path.delimiter}${fs.readFileSync(dependencies, 'utf8').trim()}`;
    await run('javac', [
      '-d',
      path.join(work, 'classes'),
      '-cp',
      classpath,
      path.join(SOURCE_DIR, 'src/main/java/huren/conformance/Validate.java'),
    ]);
    fs.writeFileSync(path.join(work, 'classpath.txt'), classpath);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(work, target);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  onProgress?.(`Reference validator built in ${Math.round((Date.now() - started) / 1000)} s`);
  return fs.readFileSync(classpathFile, 'utf8').trim();
}

/** Validates every *.json under `dir` (one JVM for all of them) with Huren's profiles/ loaded. */
export async function runReferenceValidator(dir: string, classpath: string): Promise<ReferenceVerdict[]> {
  const { stdout } = await run('java', ['-Xss4m', '-cp', classpath, 'huren.conformance.Validate', PROFILES_DIR, dir], {
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as ReferenceVerdict);
}
