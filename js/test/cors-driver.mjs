// Drives Debian's chromium (headless, via playwright-core) for tests/browser/test_cors.py: opens PAGE_URL (a page
// served on another port than the Sente server) and, from that page, talks to CHSK_BASE with fetch and credentials:
// the CSRF token route, an Ajax handshake GET and an event POST (both with X-CSRF-Token, so the browser sends a
// CORS preflight first). The browser, not the test, decides whether each cross-origin response may be read.
//
//   node cors-driver.mjs PAGE_URL CHSK_BASE
//
// Output: one JSON line, {"result": {...}} (each step's text, or "blocked: <error>") or {"error": "..."}.

import { chromium } from "playwright-core";

const [pageUrl, base] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function talk(base) {
  const result = {};
  const step = async (name, f) => {
    try {
      const r = await f();
      result[name] = `${r.status} ${await r.text()}`;
    } catch (e) {
      result[name] = `blocked: ${e}`;
    }
    return result[name];
  };
  const token = (await step("token", () => fetch(`${base}/csrf-token`, { credentials: "include" }))).slice(4);
  const headers = { "X-CSRF-Token": token };
  await step("handshake", () =>
    fetch(`${base}/chsk?uid=alice&client-id=page-1&handshake%3F=1`, { credentials: "include", headers }));
  const body = "udt=1&client-id=page-1&ppstr=" + encodeURIComponent("[[:test/echo {:from :page}] :ajax]");
  await step("post", () => fetch(`${base}/chsk?uid=alice`, {
    method: "POST", credentials: "include", body,
    headers: { ...headers, "Content-Type": "application/x-www-form-urlencoded" },
  }));
  return result;
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
const watchdog = setTimeout(() => {
  out({ error: "driver timed out after 60 s" });
  process.exit(3);
}, 60000);
try {
  const page = await browser.newPage();
  await page.goto(pageUrl);
  out({ result: { origin: await page.evaluate(() => location.origin), ...(await page.evaluate(talk, base)) } });
} catch (e) {
  out({ error: String(e?.stack ?? e) });
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser.close();
  process.exit();
}
