// sente.js: Sente's channel-socket client (make-channel-socket-client!) for plain JavaScript, speaking the
// wire protocol of Sente 1.21/1.22 to csente or to a Clojure Sente server (../shared/docs/protocol.md §2-5).
//
//   import { connect } from "/sente.js";
//   const chsk = connect("/chsk", { csrfToken, params: { user: "alice" } });   // type "auto" | "ws" | "ajax"
//   chsk.on("open", (state) => ...);             // state events: state, open, firstOpen, close, uid, lastClose, handshake
//   chsk.on("chat/said", (msg) => msg.data);     // pushed events by id ("ns/name"); "*" for every pushed event
//   const reply = await chsk.send(["chat/say", { text: "hi" }], { timeoutMs: 5000 });  // rejects: SenteError
//   chsk.send(["chat/say", { text: "no reply wanted" }]);                             // -> true if sent
//
// Behaviour follows Sente's cljs client, like the Python client (sente.protocol.client): WebSocket first
// under "auto", downgraded to Ajax long-polling for good if it fails before its first handshake; an
// application-level keep-alive ping; reconnects at once, then with Encore's exponential backoff; the CSRF
// token as the csrf-token query parameter (WebSocket) or the X-CSRF-Token header (Ajax). One deliberate
// difference, as in the Python client: requests waiting on a WebSocket that closes fail at once ("closed").
// Data mapping between JS values and Clojure data: see codec.js.

import { Keyword, fromEvent, kw, toEvent } from "./codec.js";
import { getPacker } from "./packers.js";

export { Keyword, kw, isKeywordShaped, ednPacker, transitPacker } from "./codec.js";
export { decode, encode, msgpackPacker, gzipPacker } from "./msgpack.js";
export { getPacker } from "./packers.js";

const HANDSHAKE = kw("chsk/handshake");
const WS_PING = kw("chsk/ws-ping");
const WS_PONG = kw("chsk/ws-pong");
const TIMEOUT = kw("chsk/timeout");
const AJAX_CB = kw("ajax");
const FORM = "application/x-www-form-urlencoded;charset=UTF-8";
const BINARY = "application/octet-stream";

/** A request that got no reply: `reason` is "timeout", "closed" or "error" (Sente's :chsk/* cb errors). */
export class SenteError extends Error {
  constructor(reason, detail) {
    super(`chsk/${reason}${detail ? `: ${detail}` : ""}`);
    this.name = "SenteError";
    this.reason = reason;
    this.detail = detail;
  }
}

/** Encore's exp-backoff as Sente uses it: uniform in [500·2ⁿ, 1000·2ⁿ) ms, n capped at 36. */
export function expBackoff(attempt, random = Math.random) {
  const b = 2 ** Math.min(attempt, 36);
  return Math.floor((b + random() * b) * 0.5 * 1000);
}

/** A random 6-hex-digit callback id, like Sente's `(uuid-str 6)`. */
function cbId() {
  return Math.floor(Math.random() * 0x1000000).toString(16).padStart(6, "0");
}

function uuid4() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const h = [...Array(32)].map(() => Math.floor(Math.random() * 16).toString(16));
  h[12] = "4";
  h[16] = ((parseInt(h[16], 16) & 3) | 8).toString(16);
  const s = h.join("");
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

function query(pairs) {
  return pairs
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
}

/** Connect to a Sente server at `path` (e.g. "/chsk"); options as Sente's, in camelCase. */
export function connect(path, options = {}) {
  return new ChannelSocket(path, options);
}

export class ChannelSocket {
  /**
   * options: type ("auto"), packer ("edn" | "transit" | "msgpack", each also "+gzip", or {name, binary, pack,
   * unpack}), csrfToken (string or () => string),
   * params (extra query parameters), clientId, protocol ("http:"/"https:") and host ("host:port") (default:
   * the page's), wsKaliveMs (20000; the check runs every half), wsPingTimeoutMs (5000), ajaxTimeoutMs (60000),
   * backoffMsFn (attempt -> ms), wsConstructor (url -> WebSocket-like), fetch, headers (extra Ajax headers,
   * for Node), autoStart (true).
   */
  constructor(path, options = {}) {
    const type = options.type ?? "auto";
    if (!["auto", "ws", "ajax"].includes(type)) throw new TypeError(`type must be auto, ws or ajax, got ${type}`);
    this.options = options;
    this.packer = getPacker(options.packer);
    this.clientId = options.clientId ?? uuid4();
    const loc = globalThis.location;
    const protocol = options.protocol ?? loc?.protocol ?? "http:";
    const host = options.host ?? loc?.host;
    if (!host) throw new TypeError("no page location: pass options.host ('127.0.0.1:8090')");
    const p = path.startsWith("/") ? path : `/${path}`;
    this.httpUrl = `${protocol}//${host}${p}`;
    this.wsUrl = `${protocol === "https:" ? "wss:" : "ws:"}//${host}${p}`;
    this.kaliveMs = options.wsKaliveMs === undefined ? 20000 : options.wsKaliveMs;
    this.pingTimeoutMs = options.wsPingTimeoutMs ?? 5000;
    this.ajaxTimeoutMs = options.ajaxTimeoutMs ?? 60000;
    const wsCtor = globalThis.WebSocket;
    this.wsConstructor = options.wsConstructor ?? (wsCtor ? (url) => new wsCtor(url) : null);
    this.fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.state = { type, open: false, everOpened: false };
    this.transport = type === "ajax" || (type === "auto" && !this.wsConstructor) ? "ajax" : "ws";
    this.listeners = new Map();
    this.pending = new Map(); // request key -> {resolve, reject, timer, transport}
    this.attempt = 0;
    this.conn = 0; // every connection attempt gets a number; reports from older ones are stale
    this.stopped = true;
    this.comms = 0; // bumped by every frame sent or received (Sente's udt-last-comms)
    this.handshakes = 0;
    this.wsHandshaked = false;
    this.ws = null;
    this.poll = null; // AbortController of the poll in flight
    this.timers = new Set();
    this.ajaxKeys = 0;
    this.unloading = false;
    if (globalThis.addEventListener && globalThis.window === globalThis) {
      globalThis.addEventListener("beforeunload", () => { this.unloading = true; });
    }
    if (options.autoStart !== false) this.start();
  }

  // ------------------------------------------------------------------ events

  /** Listen to a pushed event id ("ns/name"), "*" (every pushed event) or a state event; returns an unsubscribe fn. */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }

  emit(name, value) {
    for (const fn of [...(this.listeners.get(name) ?? [])]) {
      try {
        fn(value);
      } catch (e) {
        console.error(`sente.js: a ${name} listener threw`, e);
      }
    }
  }

  receive(event) {
    const msg = { event, id: event[0], data: event[1] };
    this.emit(msg.id, msg);
    if (!msg.id.startsWith("chsk/")) this.emit("*", msg);
  }

  setState(changes) {
    const old = this.state;
    const next = { ...old, ...changes };
    for (const [k, v] of Object.entries(changes)) if (v === undefined) delete next[k];
    if (Object.keys(next).length === Object.keys(old).length && Object.keys(next).every((k) => next[k] === old[k])) return;
    this.state = next;
    const opened = next.open && !old.open;
    const closed = old.open && !next.open;
    const change = { old, new: next, openChanged: opened || closed, opened, closed, firstOpen: opened && !old.everOpened };
    this.emit("state", change);
    if (opened) this.emit("open", next);
    if (change.firstOpen) this.emit("firstOpen", next);
    if (closed) this.emit("close", next);
    if (next.uid !== old.uid) this.emit("uid", next.uid);
    if (next.lastClose !== old.lastClose) this.emit("lastClose", next.lastClose);
  }

  closedState(reason, extra = {}) {
    this.setState({ open: false, lastClose: { udt: Date.now(), reason }, ...extra });
  }

  // ------------------------------------------------------------------ timers

  after(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  cancel(t) {
    clearTimeout(t);
    this.timers.delete(t);
  }

  // ------------------------------------------------------------------ lifecycle

  /** Connect (Sente's chsk-connect!): the retry counter starts again from 0. */
  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connectNow();
  }

  connectNow() {
    this.conn += 1;
    if (this.state.udtNextReconnect !== undefined) this.setState({ udtNextReconnect: undefined });
    if (this.transport === "ws") this.openWs(this.conn);
    else this.startPoll(this.conn);
  }

  /** Stop for good (until start/reconnect): no reconnects; waiting WebSocket requests fail with "closed". */
  disconnect(reason = "requested-disconnect") {
    this.stopped = true;
    this.conn += 1;
    this.failWsRequests();
    this.dropTransport(1000, "CLOSE_NORMAL");
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const key of [...this.pending.keys()]) this.settle(key, null, "closed");
    this.closedState(reason, { udtNextReconnect: undefined });
  }

  /** Sente's chsk-reconnect!: disconnect, then connect afresh (under "auto", WebSocket first again). */
  reconnect() {
    this.disconnect("requested-reconnect");
    if (this.options.type === undefined || this.options.type === "auto") {
      this.transport = this.wsConstructor ? "ws" : "ajax";
      this.wsHandshaked = false;
      this.handshakes = 0;
    }
    this.start();
  }

  /** For tests (chsk-break-connection!): drop the connection as a network failure would; it reconnects. */
  breakConnection(code = 3000) {
    if (this.transport === "ws" && this.ws) this.ws.close(code, "CLOSE_ABNORMAL");
    else if (this.poll) this.poll.abort();
  }

  dropTransport(code, reason) {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close(code, reason);
      } catch {
        // already closed
      }
    }
    if (this.poll) {
      this.poll.abort();
      this.poll = null;
    }
  }

  retry() {
    if (this.stopped || this.unloading) return;
    this.attempt += 1;
    this.conn += 1;
    const delay = this.attempt === 1 ? 0 : (this.options.backoffMsFn ?? expBackoff)(this.attempt);
    if (delay <= 0) {
      this.connectNow();
      return;
    }
    this.setState({ udtNextReconnect: Date.now() + delay });
    const conn = this.conn;
    this.after(delay, () => {
      if (conn === this.conn && !this.stopped) this.connectNow();
    });
  }

  // ------------------------------------------------------------------ sending

  /**
   * Send `["ns/name", data]`. Without `timeoutMs`: returns whether it was sent (false when not open). With
   * `{timeoutMs}`: a Promise of the server's reply, rejected with a SenteError ("timeout", "closed", "error").
   */
  send(event, { timeoutMs } = {}) {
    const ev = toEvent(event);
    const wantsReply = timeoutMs !== undefined && timeoutMs !== null;
    if (wantsReply && !(timeoutMs >= 0)) throw new TypeError("timeoutMs must be >= 0");
    if (!this.state.open) {
      return wantsReply ? Promise.reject(new SenteError("closed")) : false;
    }
    if (!wantsReply) {
      if (this.transport === "ws") this.sendFrame(ev, null);
      else this.post(ev, null);
      return true;
    }
    return new Promise((resolve, reject) => {
      const key = this.transport === "ws" ? this.newCbId() : `ajax-${++this.ajaxKeys}`;
      this.wait(key, { resolve, reject }, timeoutMs);
      if (this.transport === "ws") this.sendFrame(ev, key);
      else this.post(ev, key, timeoutMs);
    });
  }

  newCbId() {
    for (;;) {
      const key = cbId();
      if (!this.pending.has(key)) return key;
    }
  }

  wait(key, handlers, timeoutMs) {
    const entry = { ...handlers, transport: this.transport, timer: null };
    if (timeoutMs !== undefined && timeoutMs !== null) {
      entry.timer = this.after(timeoutMs, () => this.settle(key, null, "timeout"));
    }
    this.pending.set(key, entry);
  }

  /** Settle the request `key` with a reply value, or fail it with a reason. */
  settle(key, value, failure, detail) {
    const entry = this.pending.get(key);
    if (!entry) return;
    this.pending.delete(key);
    if (entry.timer !== null) this.cancel(entry.timer);
    if (failure) entry.reject(new SenteError(failure, detail));
    else entry.resolve(value);
  }

  failWsRequests() {
    for (const [key, entry] of [...this.pending]) if (entry.transport === "ws") this.settle(key, null, "closed");
  }

  sendFrame(ev, key) {
    this.comms += 1;
    const ws = this.ws;
    let packed;
    try {
      packed = this.packer.pack([ev, key]);
    } catch (e) {
      this.sendFailed(ws, key, e);
      return;
    }
    if (!(packed instanceof Promise)) {
      this.wsSend(ws, key, packed);
      return;
    }
    // an asynchronous packer (gzip): frames still go out in the order they were sent
    this.outbox = (this.outbox ?? Promise.resolve()).then(() => packed).then(
      (data) => this.wsSend(ws, key, data),
      (e) => this.sendFailed(ws, key, e),
    );
  }

  wsSend(ws, key, data) {
    if (ws !== this.ws) {
      if (key !== null) this.settle(key, null, "closed");
      return;
    }
    try {
      ws.send(data);
    } catch (e) {
      this.sendFailed(ws, key, e);
    }
  }

  sendFailed(ws, key, e) {
    if (key !== null) this.settle(key, null, "error", String(e));
    if (ws !== this.ws) return;
    this.setState({ lastWsError: { udt: Date.now(), ev: String(e) } });
    this.closedState("ws-error");
    this.conn += 1;
    this.ws = null;
    ws?.close?.(1000, "CLOSE_NORMAL");
    this.retry();
  }

  /** The body of an Ajax answer: bytes for a binary packer, else text. */
  async responseBody(res) {
    return this.packer.binary ? new Uint8Array(await res.arrayBuffer()) : res.text();
  }

  csrfToken() {
    const t = this.options.csrfToken;
    return typeof t === "function" ? t() : t;
  }

  ajaxHeaders(extra = {}) {
    const headers = { ...(this.options.headers ?? {}), "X-Requested-With": "XMLHTTPRequest", ...extra };
    const token = this.csrfToken();
    if (token !== null && token !== undefined) headers["X-CSRF-Token"] = token;
    return headers;
  }

  async post(ev, key, timeoutMs) {
    const abort = new AbortController();
    const limit = timeoutMs ?? this.ajaxTimeoutMs;
    let timedOut = false;
    const timer = this.after(limit, () => {
      timedOut = true;
      abort.abort();
    });
    let text, packed;
    try {
      packed = this.packer.pack([ev, key === null ? null : AJAX_CB]);
      if (packed instanceof Promise) packed = await packed; // (a synchronous packer's POST starts at once)
    } catch (e) {
      this.cancel(timer);
      if (key !== null) this.settle(key, null, "error", String(e));
      return;
    }
    try {
      const fields = [["udt", Date.now()], ["client-id", this.clientId]];
      // binary packers: the bytes are the body, the fields go in the query (Sente's binary?=true)
      const [url, body, type] = this.packer.binary
        ? [`${this.httpUrl}?${query([...fields, ["binary?", "true"]])}`, packed, BINARY]
        : [this.httpUrl, query([...fields, ["ppstr", packed]]), FORM];
      const res = await this.fetch(url, {
        method: "POST", body, headers: this.ajaxHeaders({ "Content-Type": type }), credentials: "same-origin", signal: abort.signal,
      });
      text = await this.responseBody(res);
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${this.packer.binary ? "" : text}`);
    } catch (e) {
      this.cancel(timer);
      if (timedOut) {
        if (key !== null) this.settle(key, null, "timeout");
        return;
      }
      this.closedState("unexpected");
      if (key !== null) this.settle(key, null, "error", String(e));
      return;
    }
    this.cancel(timer);
    if (!text || text.length === 0) {
      if (key !== null) this.settle(key, null, "error", "empty response");
      return;
    }
    let payload;
    try {
      [payload] = await this.packer.unpack(text);
    } catch (e) {
      if (key !== null) this.settle(key, null, "error", `unreadable response: ${e}`);
      return;
    }
    if (key !== null) {
      if (payload === TIMEOUT) this.settle(key, null, "timeout");
      else this.settle(key, payload);
    }
    if (!this.state.open && !this.stopped) this.setState({ open: true });
  }

  // ------------------------------------------------------------------ incoming messages

  handshake(data) {
    if (!Array.isArray(data) || data.length < 2) {
      console.warn("sente.js: ignored a malformed handshake", data);
      return;
    }
    const uid = data[0] instanceof Keyword && data[0].text === "sente/nil-uid" ? null : data[0];
    const handshakeData = data.length > 2 ? data[2] : null; // Sente <= 1.20 sent [uid nil]
    const first = this.handshakes === 0;
    this.handshakes += 1;
    this.attempt = 0;
    if (this.transport === "ws") this.wsHandshaked = true;
    this.setState({ type: this.transport, open: true, everOpened: true, uid, handshakeData, udtNextReconnect: undefined });
    this.emit("handshake", { uid, handshakeData, first });
    if (this.transport === "ws" && this.kaliveMs !== null) this.scheduleKalive(this.conn);
  }

  batch(payload) {
    if (!Array.isArray(payload)) {
      console.warn("sente.js: ignored a message that is neither a reply, a handshake, a ping nor a batch", payload);
      return;
    }
    for (const item of payload) {
      const event = fromEvent(item);
      if (event[0] !== "chsk/bad-event" && event[0].startsWith("chsk/")) {
        console.warn("sente.js: ignored a chsk/* event inside a batch", event);
        continue;
      }
      this.receive(event);
    }
  }

  // ------------------------------------------------------------------ WebSocket

  openWs(conn) {
    const token = this.csrfToken();
    const url = `${this.wsUrl}?${query([...Object.entries(this.options.params ?? {}), ["client-id", this.clientId], ["csrf-token", token]])}`;
    let ws;
    try {
      ws = this.wsConstructor(url);
    } catch (e) {
      this.wsError(conn, String(e));
      if (conn === this.conn) this.wsClosed(conn, null, "", false);
      return;
    }
    if (!ws) {
      this.wsError(conn, "no WebSocket");
      if (conn === this.conn) this.wsClosed(conn, null, "", false);
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => this.wsFrame(conn, e.data);
    ws.onerror = (e) => this.wsError(conn, e?.message ?? "error");
    ws.onclose = (e) => this.wsClosed(conn, e.code, e.reason, e.wasClean);
  }

  wsFrame(conn, data) {
    if (typeof data !== "string") { // an ArrayBuffer (binaryType "arraybuffer") or a Node Buffer
      data = this.packer.binary ? new Uint8Array(data) : new TextDecoder().decode(data);
    }
    let unpacked;
    try {
      unpacked = this.packer.unpack(data);
    } catch (e) {
      console.warn("sente.js: dropped an unreadable frame", e);
      return;
    }
    if (!(unpacked instanceof Promise) && this.inbox === undefined) {
      this.wsMessage(conn, unpacked);
      return;
    }
    // an asynchronous packer (gzip): frames are handled in the order they arrived
    this.inbox = (this.inbox ?? Promise.resolve()).then(() => unpacked).then(
      (value) => this.wsMessage(conn, value),
      (e) => console.warn("sente.js: dropped an unreadable frame", e),
    );
  }

  wsMessage(conn, unpacked) {
    if (conn !== this.conn) return;
    this.comms += 1;
    let payload, cb;
    try {
      [payload, cb] = unpacked;
    } catch (e) {
      console.warn("sente.js: dropped an unreadable frame", e);
      return;
    }
    if (cb !== null && cb !== undefined) {
      if (typeof cb === "string") this.onReply(cb, payload);
      return;
    }
    if (Array.isArray(payload) && payload[0] === HANDSHAKE) this.handshake(payload[1]);
    else if (payload === WS_PING) {
      this.sendFrame([WS_PONG], null);
      this.receive(["chsk/ws-ping"]);
    } else this.batch(payload);
  }

  onReply(key, payload) {
    const entry = this.pending.get(key);
    if (!entry) return;
    if (entry.ping) {
      this.pending.delete(key);
      if (entry.timer !== null) this.cancel(entry.timer);
      if (payload !== "pong") this.reconnectAfterFailedPing();
      return;
    }
    this.settle(key, payload);
  }

  wsError(conn, detail) {
    if (conn !== this.conn) return;
    this.setState({ lastWsError: { udt: Date.now(), ev: detail } });
    if ((this.options.type ?? "auto") === "auto" && this.transport === "ws" && !this.wsHandshaked) this.downgrade();
  }

  /** "auto": a WebSocket that never completed a handshake failed; go to Ajax, for good. */
  downgrade() {
    this.conn += 1;
    this.failWsRequests();
    this.dropTransport(1000, "CLOSE_NORMAL");
    this.closedState("downgrading-ws-to-ajax");
    this.transport = "ajax";
    this.handshakes = 0;
    this.attempt = 0;
    this.connectNow();
  }

  wsClosed(conn, code, reason, clean) {
    if (conn !== this.conn) return;
    this.conn += 1;
    this.ws = null;
    this.failWsRequests();
    this.closedState(clean ? "clean" : "unexpected", { lastWsClose: { udt: Date.now(), code, reason, clean } });
    this.retry();
  }

  scheduleKalive(conn) {
    const comms = this.comms;
    this.after(this.kaliveMs / 2, () => {
      if (conn !== this.conn || !this.state.open) return;
      if (comms === this.comms) {
        // nothing sent or received for a whole interval: ping, expecting "pong"
        const key = this.newCbId();
        const entry = { resolve() {}, reject() {}, ping: true, transport: "ws", timer: null };
        entry.timer = this.after(this.pingTimeoutMs, () => {
          if (this.pending.get(key) === entry) {
            this.pending.delete(key);
            this.reconnectAfterFailedPing();
          }
        });
        this.pending.set(key, entry);
        this.sendFrame([WS_PING], key);
      }
      this.scheduleKalive(conn);
    });
  }

  reconnectAfterFailedPing() {
    this.conn += 1;
    this.failWsRequests();
    this.dropTransport(1000, "CLOSE_NORMAL");
    this.closedState("ws-ping-timeout");
    this.attempt = 0;
    this.connectNow();
  }

  // ------------------------------------------------------------------ Ajax long-polling

  async startPoll(conn) {
    const abort = new AbortController();
    this.poll = abort;
    let timedOut = false;
    const timer = this.after(this.ajaxTimeoutMs, () => {
      timedOut = true;
      abort.abort();
    });
    const pairs = [...Object.entries(this.options.params ?? {}), ["udt", Date.now()], ["client-id", this.clientId]];
    if (!this.state.open) pairs.push(["handshake?", 1]);
    let text, error;
    try {
      const res = await this.fetch(`${this.httpUrl}?${query(pairs)}`, {
        method: "GET", headers: this.ajaxHeaders(), credentials: "same-origin", signal: abort.signal, cache: "no-store",
      });
      text = await this.responseBody(res);
      if (!res.ok) error = `HTTP ${res.status}: ${this.packer.binary ? "" : text}`;
    } catch (e) {
      error = String(e);
    }
    this.cancel(timer);
    if (this.poll === abort) this.poll = null;
    if (conn !== this.conn || this.stopped) return;
    if (timedOut) {
      this.conn += 1;
      this.startPoll(this.conn);
      return;
    }
    let payload;
    if (error === undefined) {
      try {
        [payload] = await this.packer.unpack(text ?? "");
      } catch (e) {
        error = `unreadable poll response: ${e}`;
      }
    }
    if (error !== undefined) {
      this.closedState("unexpected");
      this.retry();
      return;
    }
    this.conn += 1;
    this.attempt = 0;
    if (Array.isArray(payload) && payload[0] === HANDSHAKE) this.handshake(payload[1]);
    else {
      if (!this.state.open) this.setState({ open: true });
      if (payload !== TIMEOUT) this.batch(payload);
    }
    this.startPoll(this.conn);
  }
}
