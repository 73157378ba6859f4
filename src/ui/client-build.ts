/**
 * How the pages' browser scripts are built (esbuild: bundled, so a page script may import shared client modules),
 * shared by the build (`npm run build` → dist/ui/public, scripts/build-ui.ts) and the development server, which
 * compiles them on first request when no build is present. Only a type is imported here: the production image runs
 * without esbuild.
 */
import type { BuildOptions } from 'esbuild';

/** The page scripts: /ui/<name>.js is src/ui/client/<name>.ts. */
export const PAGE_SCRIPTS = ['app', 'dashboard', 'supervision'] as const;

/** Stylesheets served as is: /ui/<name>.css is src/ui/client/<name>.css. */
export const STYLESHEETS = ['pages'] as const;

/** The HTML pages: src/ui/pages/<name>.html. */
export const PAGES = ['app', 'dashboard', 'supervision'] as const;

export function clientBuildOptions(entry: string, production: boolean): BuildOptions {
  return {
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    minify: production,
    sourcemap: production ? false : 'inline',
    logLevel: 'silent',
  };
}
