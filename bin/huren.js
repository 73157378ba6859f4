#!/usr/bin/env node
// `huren`: the broker's command-line tools (src/cli.ts). From a clone it runs the TypeScript sources through tsx (a
// development dependency, installed by `npm ci`); in the production image, which holds no sources, the compiled
// dist/cli.js.
import fs from 'node:fs';
import { URL } from 'node:url';

const root = new URL('../', import.meta.url);
const source = new URL('src/cli.ts', root);
if (fs.existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('dist/cli.js', root).href);
}
