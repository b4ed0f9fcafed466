// sente.js' value mapping and packers without a server: round trips of the documented JS <-> Clojure data
// mapping (codec.js), and the transit frames Sente's client sent in the capture (SENTE_VECTORS), re-packed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ednPacker, isKeywordShaped, kw, transitPacker } from "../src/sente.js";

const VECTORS = process.env.SENTE_VECTORS;

test("the mapping: object keys -> keywords, keyword ids -> strings, keyword values stay keywords", () => {
  const value = [kw("test/echo"), { msg: "hi", "a/b": kw("x"), "two words": 1, n: [1, null, true], s: new Set([1]) }];
  assert.equal(ednPacker.pack([value, null]), '[[:test/echo {:msg "hi" :a/b :x "two words" 1 :n [1 nil true] :s #{1}}] nil]');
  for (const p of [ednPacker, transitPacker]) assert.deepEqual(p.unpack(p.pack([value, null])), [value, null]);
  assert.equal(kw("a/b"), kw(":a/b"));
  assert.equal(String(kw("a/b")), ":a/b");
  assert.deepEqual([kw("a/b").ns, kw("a/b").name], ["a", "b"]);
  assert.ok(isKeywordShaped("user-id") && !isKeywordShaped("") && !isKeywordShaped("a b") && !isKeywordShaped(":x"));
  const mixed = ednPacker.unpack("{1 2, :a 3}");
  assert.ok(mixed instanceof Map && mixed.get(1) === 2 && mixed.get(kw("a")) === 3);
  assert.deepEqual(ednPacker.unpack('[#uuid "6ba7b810-9dad-11d1-80b4-00c04fd430c8" (1 2) 12345678901234567890N]'),
    ["6ba7b810-9dad-11d1-80b4-00c04fd430c8", [1, 2], 12345678901234567890n]);
  const d = new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 678));
  assert.equal(ednPacker.pack(d), '#inst "2020-01-02T03:04:05.678-00:00"');
  assert.deepEqual(ednPacker.unpack(ednPacker.pack(d)), d);
});

test("transit frames of the capture re-pack byte for byte", { skip: !VECTORS && "SENTE_VECTORS not set" }, () => {
  const frames = [];
  for (const name of ["transit-ws", "transit-ajax"]) {
    for (const line of readFileSync(join(VECTORS, `${name}.jsonl`), "utf8").trim().split("\n")) {
      const r = JSON.parse(line);
      if (r.dir !== "c2s") continue;
      if (r.kind === "ws_frame") frames.push(r.raw);
      if (r.method === "POST") frames.push(Object.fromEntries(r.form).ppstr);
    }
  }
  // JS has no lists, symbols, BigDecimal or ~t instants; the rest must come out as transit-clj/cljs wrote it
  const comparable = frames.filter((f) => !/~#list|~mnot|^\[\["~:test\/echo", 1\]$/.test(f));
  assert.equal(comparable.length, 6);
  for (const f of comparable) assert.equal(transitPacker.pack(transitPacker.unpack(f)), f);
});
