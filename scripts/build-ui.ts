/**
 * The pages' part of `npm run build`: compiles the browser scripts of src/ui/client and copies the stylesheets and
 * HTML pages into dist/ui, where the compiled broker (dist/ui/assets.js) serves them from. The production image
 * therefore needs neither esbuild nor the sources. Usage: `tsx scripts/build-ui.ts [OUT_DIR]` (default dist).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { clientBuildOptions, PAGE_SCRIPTS, PAGES, STYLESHEETS } from '../src/ui/client-build.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const source = path.join(root, 'src', 'ui');
const publicDir = path.join(out, 'ui', 'public');
const pagesDir = path.join(out, 'ui', 'pages');
fs.rmSync(publicDir, { recursive: true, force: true });
fs.mkdirSync(publicDir, { recursive: true });
fs.mkdirSync(pagesDir, { recursive: true });

for (const name of PAGE_SCRIPTS) {
  await build({
    ...clientBuildOptions(path.join(source, 'client', `${name}.ts`), true),
    outfile: path.join(publicDir, `${name}.js`),
    logLevel: 'warning',
  });
}
for (const name of STYLESHEETS) {
  fs.copyFileSync(path.join(source, 'client', `${name}.css`), path.join(publicDir, `${name}.css`));
}
for (const name of PAGES) {
  fs.copyFileSync(path.join(source, 'pages', `${name}.html`), path.join(pagesDir, `${name}.html`));
}
process.stdout.write(`Pages built into ${path.relative(process.cwd(), path.join(out, 'ui')) || '.'}\n`);
