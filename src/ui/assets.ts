/**
 * Static assets of the pages (/app, /dashboard): browser scripts written in TypeScript under src/ui/client, compiled
 * once per process with esbuild (bundled, so a page script may import shared client modules), stylesheets and HTML
 * pages under src/ui, and the charting library from node_modules. Everything is served from this origin, so the
 * pages run under a strict Content-Security-Policy (no inline scripts, no third-party hosts).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import express, { type Response, type Router } from 'express';

/** src/ui whether this module runs from src/ui (tsx) or dist/ui (a build): pages and client scripts stay sources. */
const UI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'ui');
const CLIENT_DIR = path.join(UI_DIR, 'client');
const PAGES_DIR = path.join(UI_DIR, 'pages');
const require = createRequire(import.meta.url);

/** Browser scripts a page may load: /ui/<name>.js is src/ui/client/<name>.ts. */
const SCRIPT_NAME = /^[a-z][a-z0-9-]{0,40}$/;

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

/** The browser bundle of src/ui/client/<name>.ts (compiled once; a failed build is retried on the next request). */
export function clientScript(name: string): Promise<string> {
  let js = compiled.get(name);
  if (!js) {
    js = build({
      entryPoints: [path.join(CLIENT_DIR, `${name}.ts`)],
      bundle: true,
      format: 'esm',
      target: 'es2020',
      write: false,
      minify: process.env.NODE_ENV === 'production',
      sourcemap: process.env.NODE_ENV === 'production' ? false : 'inline',
      logLevel: 'silent',
    }).then((r) => r.outputFiles[0]!.text);
    js.catch(() => compiled.delete(name));
    compiled.set(name, js);
  }
  return js;
}

/** Sends an HTML page of src/ui/pages with the pages' security headers. */
export async function sendPage(res: Response, page: string): Promise<void> {
  const html = await readFile(path.join(PAGES_DIR, `${page}.html`), 'utf8');
  res.setHeader('Content-Security-Policy', PAGE_CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.type('html').send(html);
}

/** /ui: compiled client scripts, stylesheets, the charting library. */
export function uiAssetsRouter(): Router {
  const router = express.Router();
  const echarts = require.resolve('echarts/dist/echarts.min.js');
  router.get('/vendor/echarts.min.js', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.sendFile(echarts);
  });
  router.get('/:file', async (req, res, next) => {
    const file = String(req.params.file);
    const m = /^(.+)\.(js|css)$/.exec(file);
    if (!m || !SCRIPT_NAME.test(m[1]!)) return next();
    try {
      if (m[2] === 'css') {
        res.type('css').send(await readFile(path.join(CLIENT_DIR, `${m[1]}.css`), 'utf8'));
      } else {
        res.type('application/javascript').send(await clientScript(m[1]!));
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const missing = code === 'ENOENT' || /Could not resolve|No such file/i.test(String((e as Error).message));
      if (missing) return next();
      next(e);
    }
  });
  return router;
}
