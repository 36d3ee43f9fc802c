// Drives Debian's Chromium with playwright-core for the Python browser tests.
//
// One request a line on its pipes (tests/nodeserve.mjs). Pages are numbered.
// Console messages and page errors are kept per page so a failing test can show them.
import { chromium } from "playwright-core";

import { serve } from "../nodeserve.mjs";

const executablePath = process.env.TESSERA_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    // getDisplayMedia picks the screen without a picker (screen-share tests).
    "--auto-select-desktop-capture-source=Entire screen",
    // This machine has no internet: without these Chromium keeps dialling Google.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
});

const pages = new Map();
let nextPage = 1;

function pageOf(request) {
  const entry = pages.get(request.page);
  if (!entry) throw new Error(`no page ${request.page}`);
  return entry;
}

// Runs `source` (a function's text) in the page with `arg`; promises are awaited.
function evaluateIn(page, source, arg) {
  return page.evaluate(
    ([text, value]) => (0, eval)(`(${text})`)(value),
    [source, arg ?? null],
  );
}

const operations = {
  async newPage({ width = 1280, height = 800 }) {
    const context = await browser.newContext({
      viewport: { width, height },
      // The clipboard: the conference page's "copy invite link" is read back by tests.
      permissions: ["camera", "microphone", "clipboard-read", "clipboard-write"],
    });
    const page = await context.newPage();
    const id = nextPage++;
    const log = [];
    page.on("console", (message) => log.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => log.push(`pageerror: ${error.message}`));
    pages.set(id, { context, page, log });
    return id;
  },
  async goto(request) {
    const response = await pageOf(request).page.goto(request.url);
    return response ? response.status() : null;
  },
  async evaluate(request) {
    return await evaluateIn(pageOf(request).page, request.source, request.arg);
  },
  async waitFor(request) {
    const { page } = pageOf(request);
    await page.waitForFunction(
      ([text, value]) => (0, eval)(`(${text})`)(value),
      [request.source, request.arg ?? null],
      { timeout: request.timeoutMs, polling: 100 },
    );
    return true;
  },
  async addInitScript(request) {
    // Runs before the page's own scripts on every later navigation of this page.
    await pageOf(request).page.addInitScript(request.source);
    return true;
  },
  async addScript(request) {
    await pageOf(request).page.addScriptTag({ url: request.url });
    return true;
  },
  async click(request) {
    await pageOf(request).page.click(request.selector, { timeout: request.timeoutMs });
    return true;
  },
  async fill(request) {
    await pageOf(request).page.fill(request.selector, request.value, { timeout: request.timeoutMs });
    return true;
  },
  async screenshot(request) {
    await pageOf(request).page.screenshot({ path: request.path, fullPage: !!request.fullPage });
    return request.path;
  },
  async log(request) {
    return pageOf(request).log;
  },
  async closePage(request) {
    const entry = pageOf(request);
    pages.delete(request.page);
    await entry.context.close();
    return true;
  },
};

serve(operations, browser.version(), async () => {
  await browser.close();
  process.exit(0);
});
