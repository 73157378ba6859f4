/**
 * A real browser for page tests: Debian's chromium driven by playwright-core (which never downloads a browser of its
 * own). Screenshots go to test-results/screenshots and are attached to the test's output.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { TestContext } from 'vitest';

export const CHROMIUM_PATH = process.env.HUREN_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.resolve('test-results', 'screenshots');

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: FLAGS, headless: true });
}

/** Full-page screenshot saved under test-results/screenshots/<name>.png and attached to the running test. */
export async function screenshot(page: Page, name: string, context?: Pick<TestContext, 'annotate'>): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (context) await context.annotate(`screenshot ${name}`, { path: file, contentType: 'image/png' });
  return file;
}

/** Collects the page's console errors and failed requests, so a test can assert the page ran cleanly. */
export function watchErrors(page: Page, expectedFailures: ReadonlySet<number> = new Set()): string[] {
  const errors: string[] = [];
  page.on('console', (msg) => {
    // A failed response is reported below with its URL.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource'))
      errors.push(`console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !expectedFailures.has(res.status()))
      errors.push(`response ${res.status()}: ${res.url()}`);
  });
  page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
  page.on('requestfailed', (req) => errors.push(`request: ${req.url()} ${req.failure()?.errorText ?? ''}`));
  return errors;
}
