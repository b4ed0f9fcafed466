// Drives Debian's chromium (headless, via playwright-core) through the demo page of a running csente server,
// for tests/browser (pytest starts the server and this script, and reads its stdout).
//
//   node browser-driver.mjs SCENARIO BASE_URL [SCREENSHOT.png]
//
// Scenarios: "chat" (two users in two browser contexts: both connect, see each other in the user list,
// exchange broadcast messages, get a reply), "big" (one user says a 1500-byte message and sees it come back),
// "restart" (connect; print {"wait":"restart"} and read one line
// from stdin once the server is back; then the page must reconnect and chat again). The page's transport is
// whatever "auto" picks, so pointing "chat" at a server without WebSocket tests the Ajax fallback.
// Output: JSON lines; the last is {"result": {...}} or {"error": "..."}. Every wait is bounded.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [scenario, base, screenshot] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const WAIT = { timeout: 15000 };

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function open(browser, user, errors) {
  const context = await browser.newContext({ viewport: { width: 940, height: 470 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${user}: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${user} console: ${m.text()}`); });
  await page.goto(`${base}/?user=${encodeURIComponent(user)}`);
  await page.waitForFunction(() => window.demo?.chsk.state.open === true, null, WAIT);
  return page;
}

const state = (page) => page.evaluate(() => ({ ...window.demo.chsk.state, opens: window.demo.opens }));

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#chat button");
}

const saw = (page, text) =>
  page.waitForFunction((t) => window.demo.said.some((m) => m.text === t), text, WAIT);

async function chat(browser) {
  const errors = [];
  const alice = await open(browser, "alice", errors);
  const bob = await open(browser, "bob", errors);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => ["alice", "bob"].every((u) => window.demo.users?.includes(u)), null, WAIT);
  }
  await say(alice, "hello from alice");
  await say(bob, "hi alice, bob here");
  for (const page of [alice, bob]) {
    await saw(page, "hello from alice");
    await saw(page, "hi alice, bob here");
  }
  await alice.click("#ask");
  await alice.waitForFunction(() => window.demo.replies.length > 0, null, WAIT);
  const reply = await alice.evaluate(() => window.demo.replies[0]);
  await alice.waitForFunction(() => document.getElementById("reply").textContent.startsWith("hello alice"), null, WAIT);
  const said = await bob.evaluate(() => window.demo.said.map((m) => [m.from, m.text]));
  if (screenshot) {
    await say(bob, "two tabs, one broadcast");
    await saw(alice, "two tabs, one broadcast");
    await alice.waitForTimeout(300); // the msgs/s counter ticks every 250 ms
    await alice.screenshot({ path: screenshot });
  }
  return { alice: await state(alice), bob: await state(bob), reply, said, users: await bob.evaluate(() => window.demo.users), errors };
}

async function big(browser) {
  // 500 snowmen: 1500 bytes of UTF-8, above the gzip wrapper's 1024-byte threshold both ways
  const errors = [];
  const page = await open(browser, "dave", errors);
  const text = "\u2603".repeat(500);
  await say(page, text);
  await saw(page, text);
  return { state: await state(page), errors };
}

async function restart(browser) {
  const errors = [];
  const page = await open(browser, "carol", errors);
  const before = await state(page);
  out({ wait: "restart" });
  const line = await lines.next();
  if (line.done) throw new Error("stdin closed before the server came back");
  await page.waitForFunction(() => window.demo.opens >= 2 && window.demo.chsk.state.open, null, { timeout: 30000 });
  await say(page, "back after the restart");
  await saw(page, "back after the restart");
  return { before, after: await state(page), errors };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
const watchdog = setTimeout(() => {
  out({ error: "driver timed out after 90 s" });
  process.exit(3);
}, 90000);
try {
  const run = { chat, restart, big }[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  out({ result: await run(browser) });
} catch (e) {
  out({ error: String(e?.stack ?? e) });
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser.close();
  process.exit();
}
