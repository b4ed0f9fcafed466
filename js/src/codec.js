// Packers for sente.js: Sente's edn (default) and transit-json wire formats, and the mapping between
// plain JS values and Clojure data. The codecs themselves are libraries (edn-data, transit-js); this file
// only maps values, so that JS code reads naturally and ClojureScript code on the other end does too.
//
// JS -> wire                          wire -> JS
//   "ns/name" event id (1st of event)   :ns/name event id -> "ns/name" (msg.id, msg.event[0])
//   {msg: "hi"}  -> {:msg "hi"}         {:msg "hi"} -> {msg: "hi"}; {:a/b 1} -> {"a/b": 1}
//   Map          -> map, keys as given  map with a key that is not a keyword/string -> Map
//   kw("foo")    -> :foo                :foo value -> Keyword (kw("foo") === it; String(it) ":foo")
//   Set, Date, bigint, null/undefined   #{} -> Set, #inst -> Date, N -> bigint, nil -> null
//   arrays       -> vectors             vectors and lists -> arrays; #uuid -> string; symbols, chars -> string
// Object keys that could not be read back as keywords (empty, spaces, leading ':' or '#') stay strings,
// as in the Python server's str_keys mapping (sente/keys.py).

import { parseEDNString, toEDNString } from "edn-data";
import transit from "transit-js";

/** A Clojure keyword: interned, so `kw("a/b") === kw("a/b")`; `.ns`, `.name`, `.text` ("a/b"). */
export class Keyword {
  constructor(text) {
    this.text = text;
    const slash = text.indexOf("/");
    this.ns = slash > 0 ? text.slice(0, slash) : null;
    this.name = slash > 0 ? text.slice(slash + 1) : text;
    Object.freeze(this);
  }
  toString() {
    return ":" + this.text;
  }
  toJSON() {
    return this.toString();
  }
}

const keywords = new Map();

/** The keyword `:text` (`kw("chat/said")`, `kw(":ajax")` also works). */
export function kw(text) {
  if (text instanceof Keyword) return text;
  if (text.startsWith(":")) text = text.slice(1);
  let k = keywords.get(text);
  if (k === undefined) {
    k = new Keyword(text);
    keywords.set(text, k);
  }
  return k;
}

const CHAR = "[\\p{L}\\p{N}_*+!?<>=.\\-'&%$|]";
const NAME = `${CHAR}(?:${CHAR}|[:#])*`;
const KEYWORD_SHAPED = new RegExp(`^${NAME}(?:/${NAME})?$`, "u");

/** Whether an object key goes out as a keyword (`"msg"` -> `:msg`) rather than a string. */
export function isKeywordShaped(key) {
  return KEYWORD_SHAPED.test(key) && !key.endsWith(":");
}

function isPlainObject(x) {
  if (x === null || typeof x !== "object") return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** An event `["ns/name", data]` with its id as a keyword (Sente refuses anything else). */
export function toEvent(event) {
  if (!Array.isArray(event) || event.length < 1 || event.length > 2) {
    throw new TypeError(`an event is ["ns/name"] or ["ns/name", data], got ${JSON.stringify(event)}`);
  }
  const id = kw(String(event[0]));
  if (id.ns === null) throw new TypeError(`event ids have a namespace ("ns/name"), got ${JSON.stringify(event[0])}`);
  return event.length === 1 ? [id] : [id, event[1]];
}

/** An incoming event with its id as a string; anything else becomes ["chsk/bad-event", x] as in Sente. */
export function fromEvent(x) {
  if (Array.isArray(x) && (x.length === 1 || x.length === 2) && x[0] instanceof Keyword && x[0].ns !== null) {
    return x.length === 1 ? [x[0].text] : [x[0].text, x[1]];
  }
  return ["chsk/bad-event", x];
}

// ------------------------------------------------------------------ edn (edn-data)

function ednOut(x) {
  if (x === undefined || x === null) return null;
  if (x instanceof Keyword) return { key: x.text };
  if (Array.isArray(x)) return x.map(ednOut);
  if (x instanceof Set) return { set: [...x].map(ednOut) };
  if (x instanceof Map) return { map: [...x].map(([k, v]) => [ednOut(k), ednOut(v)]) };
  if (x instanceof Date) return { tag: "inst", val: x.toISOString().replace(/Z$/, "-00:00") }; // as cljs prints it
  if (typeof x !== "object") {
    if (typeof x === "number" && !Number.isFinite(x)) {
      return { sym: Number.isNaN(x) ? "##NaN" : x > 0 ? "##Inf" : "##-Inf" };
    }
    return x;
  }
  return {
    map: Object.entries(x).map(([k, v]) => [isKeywordShaped(k) ? { key: k } : k, ednOut(v)]),
  };
}

function ednIn(x) {
  if (x === null || typeof x !== "object" || x instanceof Date) return x;
  if (Array.isArray(x)) return x.map(ednIn);
  if (x instanceof Map) return mapIn([...x].map(([k, v]) => [ednIn(k), ednIn(v)]));
  if (x.key !== undefined) return kw(x.key);
  if (x.set !== undefined) return new Set(x.set.map(ednIn));
  if (x.list !== undefined) return x.list.map(ednIn);
  if (x.char !== undefined) return x.char;
  if (x.sym !== undefined) return x.sym;
  if (x.tag === "uuid") return x.val;
  if (x.tag !== undefined) return { tag: x.tag, val: ednIn(x.val) };
  return x;
}

/** Map entries as JS: an object when every key is a keyword or string (keywords by their text), else a Map. */
export function mapIn(entries) {
  if (entries.every(([k]) => k instanceof Keyword || typeof k === "string")) {
    const obj = {};
    for (const [k, v] of entries) obj[k instanceof Keyword ? k.text : k] = v;
    return obj;
  }
  return new Map(entries);
}

const EDN_READ = { mapAs: "map", setAs: "object", listAs: "object", keywordAs: "object", symbolAs: "object", charAs: "object" };

export const ednPacker = {
  name: "edn",
  binary: false,
  pack: (value) => toEDNString(ednOut(value)),
  unpack: (text) => (text === "" ? null : ednIn(parseEDNString(text, EDN_READ))),
};

// ------------------------------------------------------------------ transit-json (transit-js)

function transitOut(x) {
  if (x === undefined || x === null) return null;
  if (x instanceof Keyword) return transit.keyword(x.text);
  if (Array.isArray(x)) return x.map(transitOut);
  if (x instanceof Set) return transit.set([...x].map(transitOut));
  if (x instanceof Map) return transit.map([...x].flatMap(([k, v]) => [transitOut(k), transitOut(v)]));
  if (typeof x === "bigint") return transit.bigInt(String(x));
  if (x instanceof Date || typeof x !== "object") return x;
  return transit.map(Object.entries(x).flatMap(([k, v]) => [isKeywordShaped(k) ? transit.keyword(k) : k, transitOut(v)]));
}

function transitIn(x) {
  if (x === null || typeof x !== "object" || x instanceof Date) return x;
  if (Array.isArray(x)) return x.map(transitIn);
  if (transit.isKeyword(x)) return kw(x._name);
  if (transit.isSymbol(x)) return x._name;
  if (transit.isUUID(x)) return x.toString();
  if (transit.isSet(x)) {
    const s = new Set();
    x.forEach((v) => s.add(transitIn(v)));
    return s;
  }
  if (transit.isMap(x)) {
    const entries = [];
    x.forEach((v, k) => entries.push([transitIn(k), transitIn(v)]));
    return mapIn(entries);
  }
  if (transit.isList(x)) return x.rep.map(transitIn);
  if (transit.isBigInt(x)) return BigInt(x.rep);
  if (transit.isInteger(x)) return BigInt(x.toString());
  if (transit.isTaggedValue(x)) return { tag: x.tag, val: transitIn(x.rep) };
  return x;
}

export const transitPacker = {
  name: "transit",
  binary: false,
  pack: (value) => transit.writer("json").write(transitOut(value)),
  unpack: (text) => (text === "" ? null : transitIn(transit.reader("json").read(text))),
};

export const PACKERS = { edn: ednPacker, transit: transitPacker };

