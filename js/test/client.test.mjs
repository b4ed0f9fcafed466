// sente.js in Node 20 against our server running the reference test app (sente.testapp), started by
// tests/browser/test_node_client.py, which passes its base URL in SENTE_URL and the transcripts' folder in
// SENTE_VECTORS. What sente.js writes (WebSocket URL and frames, Ajax GET queries, POST forms and headers)
// is compared with the c2s records of Sente's own capture after normalising what is random per run.
// Run alone: SENTE_URL=http://127.0.0.1:8090 SENTE_VECTORS=../../shared/vectors/wire node --test test/

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parseEDNString } from "edn-data";
import WebSocket from "ws";
import { connect, ednPacker, kw, SenteError } from "../src/sente.js";

const BASE = process.env.SENTE_URL;
const VECTORS = process.env.SENTE_VECTORS;
const skip = !BASE || !VECTORS ? "SENTE_URL / SENTE_VECTORS not set (run through tests/browser/test_node_client.py)" : false;
const host = BASE ? new URL(BASE).host : "";
const clients = [];
after(() => clients.forEach((c) => c.disconnect()));

/** A session as a page gets it: the token, and the cookie a browser would keep. */
async function session(uid) {
  const res = await fetch(`${BASE}/csrf-token?uid=${uid}`);
  return { token: await res.text(), cookie: res.headers.get("set-cookie").split(";")[0] };
}

/** A client whose WebSocket URL and frames, and Ajax requests, are recorded in `wire`. */
async function client(uid, options = {}) {
  const { token, cookie } = await session(uid);
  const wire = [];
  const c = connect("/chsk", {
    host, protocol: "http:", csrfToken: token, params: { uid }, headers: { Cookie: cookie },
    wsConstructor: (url) => {
      wire.push({ kind: "ws_upgrade_request", url });
      const ws = new WebSocket(url, { headers: { Cookie: cookie } });
      const send = ws.send.bind(ws);
      ws.send = (data) => { wire.push({ kind: "ws_frame", raw: data }); send(data); };
      return ws;
    },
    fetch: (url, init) => {
      wire.push({ kind: "http_request", method: init.method, url, body: init.body ?? "", headers: init.headers });
      return fetch(url, init);
    },
    ...options,
  });
  clients.push(c);
  c.wire = wire;
  return c;
}

const opened = (c, ms = 5000) => until(() => c.state.open, ms, "open");

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`not ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const next = (c, name, ms = 5000) => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`no ${name} within ${ms} ms`)), ms);
  const off = c.on(name, (v) => { clearTimeout(t); off(); resolve(v); });
});

// ------------------------------------------------------------------ transcripts

function records(name) {
  return readFileSync(join(VECTORS, `${name}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    .filter((r) => r.dir === "c2s" && (r.path ?? "/chsk") === "/chsk" && r.kind !== "ws_close");
}

/** EDN text as plain data for comparison: map/set order kept, ", " and other spacing irrelevant. */
function canonical(text, cbNormal = true) {
  const raw = parseEDNString(text, { mapAs: "doubleArray", setAs: "object", listAs: "object", keywordAs: "object", charAs: "object", symbolAs: "object" });
  const json = JSON.stringify(raw, (_, v) => (typeof v === "bigint" ? `${v}N` : v));
  return cbNormal ? json.replace(/"[0-9a-f]{6}"\]$/, '"CB"]') : json;
}

const normalQuery = (q) => q.replace(/client-id=[0-9a-f-]{36}/, "client-id=CID").replace(/udt=\d+/, "udt=UDT")
  .replace(/csrf-token=[^&]+/, "csrf-token=TOK");

/** A recorded client frame as the JS event and options to send it with sente.js. */
function asSend(raw) {
  const [event, cb] = ednPacker.unpack(raw);
  const js = [event[0].text, ...event.slice(1)];
  return { event: js, opts: cb === null ? undefined : { timeoutMs: 3000 } };
}

// Frames whose values have no JS equivalent in sente.js' mapping (documented in js/README.md): ratios,
// BigDecimal, chars, ##Inf/##NaN, symbols, lists, #uuid (a string in JS), namespaced-map syntax.
const NO_JS_EQUIVALENT = [/3\/4/, /:ns\/kw sym/, /#uuid/, /#:a\{/];

describe("transcripts: what sente.js sends is what Sente's client sends", { skip }, () => {
  test("ws-handshake and ws-echo-reply: upgrade URL, then each echo frame", async () => {
    const c = await client("alice", { type: "ws" });
    await opened(c);
    const recorded = records("ws-echo-reply");
    const upgrade = recorded.find((r) => r.kind === "ws_upgrade_request");
    const ours = new URL(c.wire[0].url);
    assert.equal(normalQuery(`${ours.pathname}${ours.search}`), normalQuery(upgrade.request_line.split(" ")[1]));
    assert.equal(normalQuery(upgrade.request_line.split(" ")[1]), normalQuery(records("ws-handshake").find((r) => r.kind === "ws_upgrade_request").request_line.split(" ")[1]));
    let compared = 0;
    const skipped = [];
    for (const r of recorded.filter((x) => x.kind === "ws_frame")) {
      if (NO_JS_EQUIVALENT.some((re) => re.test(r.raw))) {
        skipped.push(r.raw);
        continue;
      }
      const { event, opts } = asSend(r.raw);
      const before = c.wire.length;
      const result = c.send(event, opts);
      if (opts) await result;
      const frame = c.wire.slice(before).find((w) => w.kind === "ws_frame").raw;
      assert.equal(canonical(frame), canonical(r.raw), `frame for ${r.raw}`);
      // byte for byte too, where the capture did not print maps with ", " or escape non-ASCII as \\uXXXX
      if (!/[{]|\\u/.test(r.raw)) assert.equal(frame.replace(/"[0-9a-f]{6}"\]$/, '"CB"]'), r.raw.replace(/"[0-9a-f]{6}"\]$/, '"CB"]'));
      compared += 1;
    }
    assert.ok(compared >= 10, `compared ${compared}`);
    assert.equal(skipped.length, NO_JS_EQUIVALENT.length);
  });

  test("ws-client-ping: the keep-alive ping frame, the bare ping and the pong", async () => {
    const c = await client("alice", { type: "ws", wsKaliveMs: 200 });
    await opened(c);
    await until(() => c.wire.some((w) => w.raw?.startsWith("[[:chsk/ws-ping]")), 2000, "pinged");
    const ping = c.wire.find((w) => w.raw?.startsWith("[[:chsk/ws-ping]")).raw;
    const [recordedPing, bare, pong] = records("ws-client-ping").filter((r) => r.kind === "ws_frame").map((r) => r.raw);
    assert.match(ping, /^\[\[:chsk\/ws-ping\] "[0-9a-f]{6}"\]$/);
    assert.equal(canonical(ping), canonical(recordedPing));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(c.state.open, "the pong came back: no ws-ping-timeout");
    assert.notEqual(c.state.lastClose?.reason, "ws-ping-timeout");
    c.send(["chsk/ws-ping"]);
    c.send(["chsk/ws-pong"]);
    const last = c.wire.slice(-2).map((w) => w.raw);
    assert.deepEqual(last, [bare, pong]);
  });

  test("ajax-handshake: handshake?=1 while not open, then plain long-polls; Sente's headers", async () => {
    const c = await client("alice", { type: "ajax" });
    await opened(c);
    await until(() => c.wire.filter((w) => w.method === "GET").length >= 2, 3000, "polling");
    const recorded = records("ajax-handshake").filter((r) => r.method === "GET");
    const gets = c.wire.filter((w) => w.method === "GET");
    for (const [ours, theirs] of [[gets[0], recorded[0]], [gets[1], recorded[2]]]) {
      const u = new URL(ours.url);
      assert.equal(normalQuery(u.pathname + u.search), normalQuery(theirs.request_line.split(" ")[1]));
      const h = Object.fromEntries(theirs.headers);
      assert.equal(ours.headers["X-Requested-With"], h["X-Requested-With"]);
      assert.equal(ours.headers["X-CSRF-Token"].length, h["X-CSRF-Token"].length);
    }
  });

  test("ajax-echo-reply: POST form fields, headers and replies", async () => {
    const c = await client("alice", { type: "ajax" });
    await opened(c);
    const posts = records("ajax-echo-reply").filter((r) => r.method === "POST");
    for (const r of posts) {
      const form = Object.fromEntries(r.form);
      const { event, opts } = asSend(form.ppstr);
      if (form.ppstr.endsWith('"abc123"]')) continue; // a string cb marker: Sente's client always sends :ajax
      const before = c.wire.length;
      const result = c.send(event, opts);
      if (opts) await result;
      const ours = c.wire.slice(before).find((w) => w.method === "POST");
      const fields = [...new URLSearchParams(ours.body)];
      assert.deepEqual(fields.map(([k]) => k), r.form.map(([k]) => k));
      assert.equal(canonical(fields[2][1], false), canonical(form.ppstr, false));
      assert.match(fields[0][1], /^\d{13}$/);
      assert.equal(fields[1][1], c.clientId);
      const h = Object.fromEntries(r.headers);
      assert.equal(ours.headers["Content-Type"], h["Content-Type"]);
      assert.equal(ours.headers["X-Requested-With"], h["X-Requested-With"]);
    }
    assert.deepEqual(await c.send(["test/echo", { a: 1, s: "ü ☃" }], { timeoutMs: 3000 }), { a: 1, s: "ü ☃" });
    assert.equal(await c.send(["test/echo", null], { timeoutMs: 3000 }), null);
  });
});

// ------------------------------------------------------------------ behaviour against our server

for (const type of ["ws", "ajax"]) {
  describe(`behaviour over ${type}`, { skip }, () => {
    test("handshake, state events, uid", async () => {
      const c = await client("bob", { type, autoStart: false });
      const first = next(c, "firstOpen");
      const uid = next(c, "uid");
      const hs = next(c, "handshake");
      c.start();
      assert.equal((await first).type, type);
      assert.equal(await uid, "bob");
      assert.deepEqual(await hs, { uid: "bob", handshakeData: null, first: true });
      assert.equal(c.state.everOpened, true);
    });

    test("request/reply, keyword values, pushes by id", async () => {
      const c = await client("carol", { type });
      await opened(c);
      assert.deepEqual(await c.send(["test/echo", { msg: "hi", "a/b": [1, 2] }], { timeoutMs: 3000 }), { msg: "hi", "a/b": [1, 2] });
      assert.equal(await c.send(["test/echo", kw("x")], { timeoutMs: 3000 }), kw("x"));
      const pushed = next(c, "test/pushed");
      const any = next(c, "*");
      assert.equal(c.send(["test/push-me", { n: 1 }]), true);
      assert.deepEqual((await pushed).data, { n: 1 });
      assert.deepEqual((await any).event, ["test/pushed", { n: 1 }]);
    });

    test("timeout and closed reject with SenteError", async () => {
      const c = await client("dave", { type });
      await opened(c);
      await assert.rejects(c.send(["test/reply-later", [500, 1]], { timeoutMs: 50 }), (e) => e instanceof SenteError && e.reason === "timeout");
      c.disconnect();
      assert.equal(c.state.lastClose.reason, "requested-disconnect");
      await assert.rejects(c.send(["test/echo", 1], { timeoutMs: 50 }), (e) => e.reason === "closed");
      assert.equal(c.send(["test/echo", 1]), false);
    });

    test("a broken connection reconnects at once and works again", async () => {
      const c = await client("erin", { type });
      await opened(c);
      const reopened = next(c, "open", 5000);
      c.breakConnection();
      await reopened;
      // the WebSocket closes cleanly (3000 CLOSE_ABNORMAL, both sides agree); an aborted poll does not
      assert.equal(c.state.lastClose.reason, type === "ws" ? "clean" : "unexpected");
      assert.equal(await c.send(["test/echo", 7], { timeoutMs: 3000 }), 7);
    });
  });
}

describe("auto and transit", { skip }, () => {
  test("auto falls back to Ajax when the WebSocket cannot be made", async () => {
    const c = await client("fay", { wsConstructor: () => { throw new Error("blocked"); } });
    await opened(c);
    assert.equal(c.state.type, "ajax");
    assert.equal(await c.send(["test/echo", "via ajax"], { timeoutMs: 3000 }), "via ajax");
  });

  test("auto uses the WebSocket when it works", async () => {
    const c = await client("gus");
    await opened(c);
    assert.equal(c.state.type, "ws");
  });
});
