// Browser of the dashboard's e2e tests: Playwright (playwright-core, pinned in package-lock.json, loaded from the
// directory BROWSER_ENV names, which make browser-env fills) driving Debian's chromium headless, with a fresh
// profile. It never downloads a browser.
//
// A command server, so the Rust test (e2e/tests/dashboard.rs) keeps the scenario and the assertions: one JSON
// command per line on stdin, one JSON answer per line on stdout ({"ok": true, "value": ...} or {"ok": false,
// "error": "..."}). Commands: goto {url}, waitFor {selector, state?, timeout?}, waitForFunction {expr, arg?,
// timeout?}, fill {selector, value}, click {selector}, text {selector}, count {selector}, eval {expr, arg?},
// screenshot {path, fullPage? (default true)}, reload, close.

const { createRequire } = require("node:module");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const env = process.env.BROWSER_ENV;
if (!env) {
  console.error("BROWSER_ENV is not set: it names the directory make browser-env installed playwright-core into");
  process.exit(2);
}
const { chromium } = createRequire(path.join(env, "package.json"))("playwright-core");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-browser-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1400, height: 900 },
    // The page allows no eval (its CSP); Playwright's waitForFunction evaluates its predicate with eval.
    bypassCSP: true,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("dialog", (d) => d.accept());
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));

  const run = {
    goto: (c) => page.goto(c.url).then(() => null),
    waitFor: (c) => page.waitForSelector(c.selector, { state: c.state || "visible", timeout: c.timeout || 30000 }).then(() => null),
    waitForFunction: (c) =>
      page.waitForFunction(c.expr, c.arg, { timeout: c.timeout || 30000, polling: "raf" }).then((h) => h.jsonValue()),
    fill: (c) => page.fill(c.selector, c.value),
    click: (c) => page.click(c.selector),
    text: (c) => page.innerText(c.selector),
    count: (c) => page.locator(c.selector).count(),
    eval: (c) => page.evaluate(c.expr, c.arg),
    screenshot: (c) => page.screenshot({ path: c.path, fullPage: c.fullPage ?? true }).then(() => null),
    reload: () => page.reload().then(() => null),
    log: () => Promise.resolve(log.splice(0)),
  };

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    if (c.op === "close") break;
    let answer;
    try {
      const f = run[c.op];
      if (!f) throw new Error(`unknown command ${c.op}`);
      let value = await f(c);
      if (typeof value === "function") value = null;
      answer = { ok: true, value: value ?? null };
    } catch (e) {
      answer = { ok: false, error: String(e && e.message ? e.message : e), log: log.slice(-20) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
