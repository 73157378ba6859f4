/**
 * Static assets of the pages (/app, /dashboard): browser scripts written in TypeScript under src/ui/client,
 * stylesheets and HTML pages, and the charting library from node_modules. A build (`npm run build`) compiles the
 * scripts and copies the pages into dist/ui (scripts/build-ui.ts), and the compiled broker serves those files; run
 * from the sources (`npm start`), the scripts are compiled once per process with esbuild on first request.
 * Everything is served from this origin, so the pages run under a strict Content-Security-Policy (no inline
 * scripts, no third-party hosts).
 */
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Response, type Router } from 'express';
import { clientBuildOptions, PAGE_SCRIPTS, PAGES, STYLESHEETS } from './client-build.js';

/** src/ui (run from the sources) or dist/ui (a build, which holds public/ with the compiled scripts). */
const UI_DIR = path.dirname(fileURLToPath(import.meta.url));
const PAGES_DIR = path.join(UI_DIR, 'pages');
const BUILT_DIR = path.join(UI_DIR, 'public');
const CLIENT_DIR = path.join(UI_DIR, 'client');
const isBuilt = fs.existsSync(BUILT_DIR);
const require = createRequire(import.meta.url);

const isPageScript = (name: string) => (PAGE_SCRIPTS as readonly string[]).includes(name);
const isStylesheet = (name: string) => (STYLESHEETS as readonly string[]).includes(name);

export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'self'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

const compiled = new Map<string, Promise<string>>();

/**
 * The browser bundle of a page script: the built file, or compiled from src/ui/client/<name>.ts once per process
 * (a failed compilation is retried on the next request).
 */
export function clientScript(name: string): Promise<string> {
  if (isBuilt) return readFile(path.join(BUILT_DIR, `${name}.js`), 'utf8');
  let js = compiled.get(name);
  if (!js) {
    const production = process.env.NODE_ENV === 'production';
    // esbuild is a development dependency: imported only when the broker runs from its sources.
    js = import('esbuild')
      .then(({ build }) =>
        build({ ...clientBuildOptions(path.join(CLIENT_DIR, `${name}.ts`), production), write: false }),
      )
      .then((r) => r.outputFiles[0]!.text);
    js.catch(() => compiled.delete(name));
    compiled.set(name, js);
  }
  return js;
}

function stylesheet(name: string): Promise<string> {
  return readFile(path.join(isBuilt ? BUILT_DIR : CLIENT_DIR, `${name}.css`), 'utf8');
}

/**
 * What keeps the pages from being served, for /readyz: a missing page, script, stylesheet or charting library
 * (e.g. an image built without `npm run build`'s pages). Empty when all can be served.
 */
export async function uiProblems(): Promise<string[]> {
  const checks: [string, () => Promise<unknown>][] = [
    ...PAGES.map((p): [string, () => Promise<unknown>] => [
      `page ${p}`,
      () => readFile(path.join(PAGES_DIR, `${p}.html`)),
    ]),
    ...PAGE_SCRIPTS.map((s): [string, () => Promise<unknown>] => [`script /ui/${s}.js`, () => clientScript(s)]),
    ...STYLESHEETS.map((s): [string, () => Promise<unknown>] => [`stylesheet /ui/${s}.css`, () => stylesheet(s)]),
    ['charting library', async () => require.resolve('echarts/dist/echarts.min.js')],
  ];
  const results = await Promise.allSettled(checks.map(([, check]) => check()));
  return checks.filter((_, i) => results[i]!.status === 'rejected').map(([what]) => what);
}

/** Sends an HTML page with the pages' security headers. */
export async function sendPage(res: Response, page: string): Promise<void> {
  const html = await readFile(path.join(PAGES_DIR, `${page}.html`), 'utf8');
  res.setHeader('Content-Security-Policy', PAGE_CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.type('html').send(html);
}

/** /ui: compiled client scripts, stylesheets, the charting library. */
export function uiAssetsRouter(): Router {
  const router = express.Router();
  router.get('/vendor/echarts.min.js', (_req, res, next) => {
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.sendFile(require.resolve('echarts/dist/echarts.min.js'), (e) => e && next(e));
  });
  router.get('/:file', async (req, res, next) => {
    const m = /^(.+)\.(js|css)$/.exec(String(req.params.file));
    const name = m?.[1] ?? '';
    if (!m || !(m[2] === 'js' ? isPageScript(name) : isStylesheet(name))) return next();
    try {
      if (m[2] === 'css') res.type('css').send(await stylesheet(name));
      else res.type('application/javascript').send(await clientScript(name));
    } catch (e) {
      next(e);
    }
  });
  return router;
}
