// Shared by the browser tests: launching Debian's Chromium through playwright-core, opening
// the demo page, reading its state, screenshots on failure.
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireDep } from './harness.mjs';

const chromiumBin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
export const artifacts = process.env.E2E_ARTIFACTS ?? path.join(os.tmpdir(), 'signal-e2e-artifacts');

/** Flags for Debian's Chromium on a machine without the outside network (see netns.sh). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // host candidates with plain IPs, not mDNS names (nothing answers mDNS here)
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/** Launches Chromium through playwright-core (Playwright gives it a fresh user-data-dir). */
export async function launchChromium() {
  if (!existsSync(chromiumBin)) {
    throw new Error(`${chromiumBin} not found: install Debian's chromium (scripts/deps.sh test)`);
  }
  const { chromium } = requireDep('playwright-core');
  return chromium.launch({ executablePath: chromiumBin, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
}

/**
 * Opens the demo in a new context; collects the page's console for failure reports.
 * `relay`: the page calls with iceTransportPolicy 'relay' (TURN only).
 */
export async function openDemo(browser, demoBase, { server, room, name, relay = false }) {
  const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on('console', (m) => page.consoleLines.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => page.consoleLines.push(`[${name}] pageerror: ${e.message}`));
  const q = new URLSearchParams({ server, room, autojoin: '1', ...(relay ? { relay: '1' } : {}) });
  await page.goto(`${demoBase}/clients/demo/?${q}`);
  page.label = name;
  return { context, page };
}

export const demoState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.demo)));

/** Screenshots every page into the artifacts directory; prints where. */
export async function saveScreenshots(pages, tag) {
  mkdirSync(artifacts, { recursive: true });
  for (const page of pages) {
    const file = path.join(artifacts, `${tag}-${page.label}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 10000 });
      console.log(`# screenshot: ${file}`);
    } catch (err) {
      console.log(`# screenshot of ${page.label} failed: ${err.message}`);
    }
  }
}
