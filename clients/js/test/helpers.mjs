// Test support: a live ringpushd on free ports with a temporary data
// directory, JWT minting, and small waiting helpers. The server binary comes
// from $RINGPUSHD (set by the ctest wrapper); tests skip when it is missing.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { decode } from "@msgpack/msgpack";
import { WebSocket } from "ws";

import { RingpushClient } from "../dist/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));

export const SECRET = "jstest-secret-3f9a1c";
export const ADMIN_KEY = "jstest-admin-77d2";

export function serverBinary() {
  return process.env.RINGPUSHD || path.resolve(here, "../../../build/js/engine/ringpushd");
}

export function haveServer() {
  try {
    fs.accessSync(serverBinary(), fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}

/** An HS256 JWT for `user`, signed with the raw bytes of `secret`. */
export function mintToken(user, { secret = SECRET, ttl = 3600 } = {}) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + ttl }));
  const sig = createHmac("sha256", Buffer.from(secret)).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` until it returns a truthy value, or throws after `timeout` ms. */
export async function waitFor(pred, { timeout = 5000, what = "condition" } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** One ringpushd process; start() waits until the client port accepts. */
export class Server {
  constructor({ shards = 2, args = [] } = {}) {
    this.shards = shards;
    this.args = args;
    this.data = fs.mkdtempSync(path.join(os.tmpdir(), "rpjs-data-"));
    this.log = path.join(this.data, "..", path.basename(this.data) + ".log");
    this.proc = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  token(user, opts) {
    return mintToken(user, opts);
  }

  async start() {
    if (!this.port) {
      this.port = await freePort();
      this.adminPort = await freePort();
    }
    const argv = ["--bind", "127.0.0.1", "--port", String(this.port), "--admin-port", String(this.adminPort),
      "--data", this.data, "--secret", SECRET, "--admin-key", ADMIN_KEY, "--shards", String(this.shards),
      "--pin", "false", ...this.args];
    const out = fs.openSync(this.log, "a");
    const env = { ...process.env, ASAN_OPTIONS: process.env.ASAN_OPTIONS || "detect_leaks=1:abort_on_error=0" };
    this.proc = spawn(serverBinary(), argv, { stdio: ["ignore", out, out], env });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => this.proc.once("exit", (code, sig) => resolve({ code, sig })));
    const end = Date.now() + 30000;
    while (!(await canConnect(this.port))) {
      if (this.proc.exitCode !== null) throw new Error(`ringpushd exited during start-up:\n${this.tail()}`);
      if (Date.now() > end) throw new Error(`ringpushd did not listen within 30 s:\n${this.tail()}`);
      await sleep(30);
    }
    return this;
  }

  /** SIGTERM (or `sig`); resolves with the exit status. */
  async stop(sig = "SIGTERM") {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(sig);
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
    const st = await this.exited;
    clearTimeout(timer);
    return st;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  tail(lines = 30) {
    try {
      return fs.readFileSync(this.log, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  async admin(method, p, body) {
    const r = await fetch(`http://127.0.0.1:${this.adminPort}${p}`, {
      method,
      headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = text;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: r.status, body: json };
  }

  /** Stops the server and removes its data; fails if it did not exit 0 on SIGTERM. */
  async dispose() {
    const st = await this.stop();
    fs.rmSync(this.data, { recursive: true, force: true });
    if (st && st.code !== 0) {
      const tail = this.tail();
      fs.rmSync(this.log, { force: true });
      throw new Error(`ringpushd exited with ${JSON.stringify(st)}:\n${tail}`);
    }
    fs.rmSync(this.log, { force: true });
  }
}

/** A client for `user` on `srv` that records its events; not yet connected. */
export function makeClient(srv, user, device = "d1", opts = {}) {
  const c = new RingpushClient({
    url: srv.url,
    token: () => srv.token(user),
    device,
    reconnect: { minDelay: 50, maxDelay: 500 },
    requestTimeout: 5000,
    sendTimeout: 10000,
    ...opts,
  });
  c.log = { msg: [], read: [], friend: [], synced: 0, bye: [], open: 0, close: [], gap: [], errors: [] };
  c.on("msg", (m) => c.log.msg.push(m));
  c.on("read", (r) => c.log.read.push(r));
  c.on("friend", (f) => c.log.friend.push(f));
  c.on("synced", () => c.log.synced++);
  c.on("bye", (b) => c.log.bye.push(b.reason));
  c.on("open", () => c.log.open++);
  c.on("close", (e) => c.log.close.push(e));
  c.on("gap", (g) => c.log.gap.push(g));
  c.on("error", (e) => c.log.errors.push(e));
  return c;
}

/** A connected client (hello done). */
export async function login(srv, user, device = "d1", opts = {}) {
  const c = makeClient(srv, user, device, opts);
  await c.connect();
  return c;
}

/**
 * A WebSocket constructor (the client's `WebSocket` option) whose incoming
 * frames go through `filter(frame, deliver, socket)` first: it calls
 * deliver() to pass a frame on, now or later, or drops it by not calling it;
 * socket.drop() cuts the connection as a network failure would.
 */
export function filteredSocket(filter) {
  return class FilteredSocket {
    constructor(url) {
      this.binaryType = "arraybuffer";
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      ws.onopen = (ev) => this.onopen?.(ev);
      ws.onerror = (ev) => this.onerror?.(ev);
      ws.onclose = (ev) => this.onclose?.({ code: ev.code, reason: ev.reason });
      ws.onmessage = (ev) => filter(decode(new Uint8Array(ev.data)), () => this.onmessage?.({ data: ev.data }), this);
      this.ws = ws;
    }
    get readyState() {
      return this.ws.readyState;
    }
    send(data) {
      this.ws.send(data);
    }
    close(code, reason) {
      this.ws.close(code, reason);
    }
    drop() {
      this.ws.terminate();
    }
  };
}
