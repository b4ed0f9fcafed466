// sente.js' msgpack packer and gzip wrapper without a server, against Sente's golden data
// (../shared/vectors/msgpack and gzip; SENTE_VECTORS names ../shared/vectors/wire, its sibling): whole
// envelopes byte for byte, Sente's bytes read back, the browser-side number rules, gzip both ways.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { decode, encode, getPacker, kw } from "../src/sente.js";

const VECTORS = process.env.SENTE_VECTORS;
const load = (name) => JSON.parse(readFileSync(join(VECTORS, "..", name, "values.json"), "utf8"));
const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => new Uint8Array(Buffer.from(h, "hex"));

// the tagged JSON description of ../shared/vectors/edn/README.md, as sente.js maps it
function js(d) {
  if (d === null || typeof d !== "object") return d;
  if ("int" in d) return Number(d.int);
  if ("double" in d) return Number(d.double);
  if ("kw" in d) return kw(d.ns ? `${d.ns}/${d.kw}` : d.kw);
  if ("vec" in d) return d.vec.map(js);
  if ("map" in d) {
    const entries = d.map.map(([k, v]) => [js(k), js(v)]);
    return entries.every(([k]) => typeof k === "string" || k?.constructor?.name === "Keyword")
      ? Object.fromEntries(entries.map(([k, v]) => [typeof k === "string" ? k : k.text, v]))
      : new Map(entries);
  }
  if ("uuid" in d) return d.uuid;
  if ("inst" in d) return new Date(d.inst);
  throw new Error(`no JS value for ${JSON.stringify(d)}`);
}

test("Sente's envelopes: the same bytes out, the same values back", { skip: !VECTORS && "SENTE_VECTORS not set" }, () => {
  const envelopes = load("msgpack").cases.filter((c) => c.kind === "envelope");
  assert.ok(envelopes.length >= 15);
  for (const c of envelopes) {
    const value = js(c.json);
    assert.deepEqual(decode(bytes(c.msgpack_hex)), value, c.id);
    // maps keyed by keywords come back as objects with text keys: written again, those keys are keywords.
    // A uuid is a string in JS (as with edn), so it is written as one: not the JVM's ext 9
    if (!c.msgpack_hex.includes("c72409")) assert.equal(hex(encode(value)), c.msgpack_hex, c.id);
  }
});

test("browser number rules and ext types", () => {
  assert.equal(hex(encode([2.0, -0, 1.5, Infinity, 0.1, 2 ** 70])), "960200ca3fc00000ca7f800000cb3fb999999999999aca62800000");
  assert.throws(() => encode(2 ** 60), RangeError);
  assert.equal(hex(encode(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)))), "c70cff286975800000000065937d25");
  assert.equal(hex(encode(new Set([1]))), "d5049101");
  assert.equal(hex(encode([{ a: 1 }, { a: 2 }])), "9281d400610181d4080002");
  assert.deepEqual(decode(bytes("d5030102")), 0.5); // ratios are numbers in JS
  assert.deepEqual(decode(bytes("cfffffffffffffffff")), 18446744073709551615n);
  assert.deepEqual(decode(bytes("9281a16101d40800")), [{ a: 1 }, "a"]);
  assert.throws(() => decode(bytes("c67fffffff")), RangeError); // a length is checked before anything is read
  assert.throws(() => encode(new WeakMap()), TypeError);
});

test("gzip: below the threshold as is, above gzipped; Sente's decode cases", { skip: !VECTORS && "SENTE_VECTORS not set" }, async () => {
  const gz = load("gzip");
  for (const c of gz.cases.filter((x) => x.exact_bytes && x.json && x.inner_packer === "msgpack")) {
    assert.equal(hex(await getPacker("msgpack+gzip").pack(js(c.json))), c.output_hex, c.id);
  }
  // DecompressionStream refuses what follows a gzip member (more members, padding): the JVM reads those
  for (const c of gz.decode_cases.filter((x) => x.ok && !/concatenated|trailing/.test(x.what))) {
    assert.deepEqual(await getPacker(`${c.inner_packer}+gzip`).unpack(bytes(c.hex)), js(c.json), c.id);
  }
  const packer = getPacker("edn+gzip");
  const big = [[kw("big/ev"), "y".repeat(3000)], null];
  const packed = await packer.pack(big);
  assert.equal(packed[0], 1);
  assert.ok(packed.length < 200);
  assert.deepEqual(await packer.unpack(packed), big);
});
