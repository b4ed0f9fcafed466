// Sente's msgpack packer (1.21+) and gzip wrapper for sente.js, as Sente's own cljs side writes and reads them
// (../shared/vectors/msgpack/README.md, "What the browser side writes differently"): standard MessagePack plus
// Sente's ext types (0 keyword, 1 symbol, 2 char, 3 ratio, 4 set, 5/6/7 Int32Array/Float32Array/Float64Array,
// -1 timestamp in its 12-byte form, 9 uuid) and the per-message map-key cache (ext 8: a keyword or string map
// key already written is written again as d4 08 <index>, for the first 256 keys). Written here, not taken
// from a library: no msgpack library for JS exposes map-key positions to its ext hooks, which the cache needs.
//
// JS side, as Sente's cljs: a whole number (1.0 and -0 too) is an int; other numbers are float32 when exact,
// else float64; typed arrays go in the platform's (little-endian) byte order; a Date has ms precision.
// Reading: uuids, symbols and chars are strings, ratios numbers, ints beyond 2^53 BigInt, bin Uint8Array.
// The value mapping (keywords, object keys, Map, Set) is codec.js'.

import { Keyword, isKeywordShaped, kw, mapIn } from "./codec.js";

const UTF8 = new TextEncoder();
const UTF8_IN = new TextDecoder("utf-8"); // malformed input -> U+FFFD, as the JVM reads it
const CACHE_SIZE = 256;
const MAX_DEPTH = 512;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
    this.cache = new Map(); // keyword or string key -> index (a keyword and a string of the same text differ)
    this.depth = 0;
  }

  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(2 * this.buf.length, this.pos + n));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  byte(b) {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  head(tag, value, width) {
    this.reserve(9);
    this.buf[this.pos++] = tag;
    if (width === 1) this.view.setUint8(this.pos, value);
    else if (width === 2) this.view.setUint16(this.pos, value);
    else if (width === 4) this.view.setUint32(this.pos, value);
    else this.view.setBigUint64(this.pos, BigInt.asUintN(64, BigInt(value)));
    this.pos += width;
  }

  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  int(v) { // a safe integer (number) or an int64 (bigint), in Sente's widths: never cf
    if (v >= 0) {
      if (v <= 0x7f) this.byte(Number(v));
      else if (v <= 0xff) this.head(0xcc, Number(v), 1);
      else if (v <= 0xffff) this.head(0xcd, Number(v), 2);
      else if (v <= 0xffffffff) this.head(0xce, Number(v), 4);
      else this.head(0xd3, v, 8);
    } else if (v >= -32) this.byte(Number(v) & 0xff);
    else if (v >= -128) this.head(0xd0, Number(v) & 0xff, 1);
    else if (v >= -32768) this.head(0xd1, Number(v) & 0xffff, 2);
    else if (v >= -2147483648) this.head(0xd2, Number(v) >>> 0, 4);
    else this.head(0xd3, v, 8);
  }

  number(x) {
    if (Number.isInteger(x) && Math.abs(x) < 1e21) { // cljs integer? (false from 1e21 on)
      if (!Number.isSafeInteger(x)) throw new RangeError(`Pack failed: ${x} is beyond 2^53-1`);
      this.int(x === 0 ? 0 : x); // -0 is written 00, as cljs does
    } else if (Math.fround(x) === x) {
      this.reserve(5);
      this.buf[this.pos++] = 0xca;
      this.view.setFloat32(this.pos, x);
      this.pos += 4;
    } else {
      this.reserve(9);
      this.buf[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, x);
      this.pos += 8;
    }
  }

  sized(fix, fixmax, base, n) {
    if (n <= fixmax) this.byte(fix | n);
    else if (n <= 0xffff) this.head(base, n, 2);
    else this.head(base + 1, n, 4);
  }

  str(s) {
    const b = UTF8.encode(s);
    if (b.length <= 31) this.byte(0xa0 | b.length);
    else if (b.length <= 0xff) this.head(0xd9, b.length, 1);
    else this.sized(0, -1, 0xda, b.length);
    this.bytes(b);
  }

  extHead(type, n) {
    const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
    if (fixed !== undefined) this.byte(fixed);
    else if (n <= 0xff) this.head(0xc7, n, 1);
    else if (n <= 0xffff) this.head(0xc8, n, 2);
    else this.head(0xc9, n, 4);
    this.byte(type & 0xff);
  }

  ext(type, payload) {
    this.extHead(type, payload.length);
    this.bytes(payload);
  }

  nested(type, write) { // an ext whose payload is msgpack written in place (a set's array), sharing the cache
    const start = this.pos;
    this.reserve(6);
    this.pos += 6;
    write();
    const payload = this.buf.slice(start + 6, this.pos);
    this.pos = start;
    this.ext(type, payload);
  }

  key(k) {
    if (k instanceof Keyword || typeof k === "string") {
      const index = this.cache.get(k);
      if (index !== undefined) {
        this.head(0xd4, 0x0800 | index, 2);
        return;
      }
      if (this.cache.size < CACHE_SIZE) this.cache.set(k, this.cache.size);
    }
    this.write(k);
  }

  map(entries) {
    this.sized(0x80, 15, 0xde, entries.length);
    for (const [k, v] of entries) {
      this.key(k);
      this.write(v);
    }
  }

  write(x) {
    if (++this.depth > MAX_DEPTH) throw new RangeError("Pack failed: nesting too deep (a circular structure?)");
    try {
      this.value(x);
    } finally {
      this.depth -= 1;
    }
  }

  value(x) {
    if (x === null || x === undefined) return this.byte(0xc0);
    if (x === true || x === false) return this.byte(x ? 0xc3 : 0xc2);
    if (typeof x === "number") return this.number(x);
    if (typeof x === "string") return this.str(x);
    if (x instanceof Keyword) return this.ext(0, UTF8.encode(x.text));
    if (Array.isArray(x)) {
      this.sized(0x90, 15, 0xdc, x.length);
      for (const v of x) this.write(v);
      return;
    }
    if (typeof x === "bigint") {
      if (x < INT64_MIN || x > INT64_MAX) throw new RangeError(`Pack failed: ${x} is outside int64`);
      return this.int(x >= -(2n ** 53n) && x <= 2n ** 53n ? Number(x) : x);
    }
    if (x instanceof Set) return this.nested(4, () => this.write([...x]));
    if (x instanceof Map) return this.map([...x]);
    if (x instanceof Date) {
      const ms = x.getTime();
      const seconds = Math.floor(ms / 1000);
      const payload = new DataView(new ArrayBuffer(12));
      payload.setUint32(0, (ms - seconds * 1000) * 1e6);
      payload.setBigInt64(4, BigInt(seconds));
      return this.ext(-1, new Uint8Array(payload.buffer));
    }
    if (x instanceof Int32Array) return this.ext(5, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    if (x instanceof Float32Array) return this.ext(6, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    if (x instanceof Float64Array) return this.ext(7, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    if (x instanceof Uint8Array || x instanceof ArrayBuffer) {
      const b = x instanceof ArrayBuffer ? new Uint8Array(x) : x;
      if (b.length <= 0xff) this.head(0xc4, b.length, 1);
      else this.sized(0, -1, 0xc5, b.length);
      return this.bytes(b);
    }
    const proto = Object.getPrototypeOf(x);
    if (typeof x === "object" && (proto === Object.prototype || proto === null)) {
      return this.map(Object.entries(x).map(([k, v]) => [isKeywordShaped(k) ? kw(k) : k, v]));
    }
    throw new TypeError(`Pack failed: unsupported type (${x?.constructor?.name ?? typeof x})`);
  }
}

/** `value` as Sente's msgpack bytes (one fresh map-key cache for the whole value). */
export function encode(value) {
  const w = new Writer();
  w.write(value);
  return w.buf.slice(0, w.pos);
}

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.end = bytes.length;
    this.cache = [];
  }

  take(n) {
    if (n > this.end - this.pos) throw new RangeError(`Unpack failed: truncated (${n} bytes announced)`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.take(1)); }
  u16() { return this.view.getUint16(this.take(2)); }
  u32() { return this.view.getUint32(this.take(4)); }

  int64(signed) {
    const v = signed ? this.view.getBigInt64(this.take(8)) : this.view.getBigUint64(this.take(8));
    return v >= -(2n ** 53n) && v <= 2n ** 53n ? Number(v) : v;
  }

  text(n) {
    const at = this.take(n);
    return UTF8_IN.decode(this.buf.subarray(at, at + n));
  }

  read(depth, key) {
    if (depth > MAX_DEPTH) throw new RangeError("Unpack failed: nesting too deep");
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return this.string(b & 0x1f, key);
    if (b >= 0x90 && b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b >= 0x80 && b <= 0x8f) return this.map(b & 0x0f, depth);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.int64(false);
      case 0xd0: return this.view.getInt8(this.take(1));
      case 0xd1: return this.view.getInt16(this.take(2));
      case 0xd2: return this.view.getInt32(this.take(4));
      case 0xd3: return this.int64(true);
      case 0xca: return this.view.getFloat32(this.take(4));
      case 0xcb: return this.view.getFloat64(this.take(8));
      case 0xd9: return this.string(this.u8(), key);
      case 0xda: return this.string(this.u16(), key);
      case 0xdb: return this.string(this.u32(), key);
      case 0xc4: case 0xc5: case 0xc6: {
        const n = b === 0xc4 ? this.u8() : b === 0xc5 ? this.u16() : this.u32();
        const at = this.take(n);
        return this.buf.slice(at, at + n);
      }
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      case 0xd4: return this.ext(1, depth, key);
      case 0xd5: return this.ext(2, depth, key);
      case 0xd6: return this.ext(4, depth, key);
      case 0xd7: return this.ext(8, depth, key);
      case 0xd8: return this.ext(16, depth, key);
      case 0xc7: return this.ext(this.u8(), depth, key);
      case 0xc8: return this.ext(this.u16(), depth, key);
      case 0xc9: return this.ext(this.u32(), depth, key);
      default: throw new RangeError(`Unpack failed: unexpected byte 0x${b.toString(16)}`);
    }
  }

  string(n, key) {
    const s = this.text(n);
    if (key && this.cache.length < CACHE_SIZE) this.cache.push(s);
    return s;
  }

  array(n, depth) {
    if (n > this.end - this.pos) throw new RangeError(`Unpack failed: truncated (an array of ${n})`);
    const out = [];
    for (let i = 0; i < n; i++) out.push(this.read(depth + 1, false));
    return out;
  }

  map(n, depth) {
    if (2 * n > this.end - this.pos) throw new RangeError(`Unpack failed: truncated (a map of ${n})`);
    const entries = [];
    for (let i = 0; i < n; i++) {
      const k = this.read(depth + 1, true);
      entries.push([k, this.read(depth + 1, false)]);
    }
    return mapIn(entries);
  }

  ext(n, depth, key) {
    const type = this.view.getInt8(this.take(1));
    const at = this.take(n);
    const payload = this.buf.subarray(at, at + n);
    switch (type) {
      case 0: {
        const k = kw(UTF8_IN.decode(payload));
        if (key && this.cache.length < CACHE_SIZE) this.cache.push(k);
        return k;
      }
      case 1: case 2: case 9: return UTF8_IN.decode(payload); // symbol, char, uuid: strings in JS
      case 8: return this.cache[payload[0]] ?? null; // a cache reference (the key it names)
      case 3: case 4: {
        const inner = new Reader(payload);
        inner.cache = this.cache; // a set's keys share the message's cache
        if (type === 3) return Number(inner.read(depth + 1, false)) / Number(inner.read(depth + 1, false));
        const head = inner.u8();
        const count = head === 0xdc ? inner.u16() : head === 0xdd ? inner.u32() : head & 0x0f;
        const s = new Set();
        for (let i = 0; i < count; i++) s.add(inner.read(depth + 1, false));
        return s;
      }
      case 5: case 6: case 7: { // the platform's byte order, as Sente's cljs reads them
        const T = type === 5 ? Int32Array : type === 6 ? Float32Array : Float64Array;
        const copy = payload.slice(0, n - (n % T.BYTES_PER_ELEMENT));
        return new T(copy.buffer);
      }
      case -1: {
        if (n < 12) throw new RangeError("Unpack failed: a timestamp needs 12 bytes");
        const v = new DataView(payload.buffer, payload.byteOffset, 12);
        return new Date(Number(v.getBigInt64(4)) * 1000 + Math.floor(v.getInt32(0) / 1e6));
      }
      default: return { ext: type, data: payload.slice() };
    }
  }
}

/** The first msgpack value of `bytes` (Uint8Array or ArrayBuffer); trailing bytes are ignored, as Sente does. */
export function decode(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return new Reader(b).read(0, false);
}

export const msgpackPacker = { name: "msgpack", binary: true, pack: encode, unpack: decode };

// ------------------------------------------------------------------ gzip wrapper

const THRESHOLD = 1024;

async function through(stream, bytes) {
  const piped = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(piped).arrayBuffer());
}

/** Sente's gzip wrapper around a packer: 0x00 + its bytes below 1024 bytes, 0x01 + gzip above. Asynchronous. */
export function gzipPacker(inner) {
  if (typeof CompressionStream === "undefined" || typeof DecompressionStream === "undefined") {
    throw new TypeError("the gzip packer needs CompressionStream and DecompressionStream");
  }
  return {
    name: `${inner.name}+gzip`,
    binary: true,
    async pack(value) {
      const packed = inner.pack(value);
      const bytes = typeof packed === "string" ? UTF8.encode(packed) : packed;
      const out = bytes.length < THRESHOLD ? bytes : await through(new CompressionStream("gzip"), bytes);
      const framed = new Uint8Array(out.length + 1);
      framed[0] = bytes.length < THRESHOLD ? 0 : 1;
      framed.set(out, 1);
      return framed;
    },
    async unpack(data) {
      const b = data instanceof Uint8Array ? data : new Uint8Array(data);
      if (b.length === 0) throw new RangeError("Unpack failed: an empty message");
      const rest = b[0] === 1 ? await through(new DecompressionStream("gzip"), b.subarray(1)) : b.subarray(1);
      return inner.unpack(inner.binary ? rest : UTF8_IN.decode(rest));
    },
  };
}
