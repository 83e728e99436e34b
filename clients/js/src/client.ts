/**
 * RingpushClient: one logical session with a ringpush server over WebSocket.
 *
 * The client keeps itself connected: after a drop it reconnects with
 * exponential backoff and resumes (hello with `resume: true`), so the server
 * pushes what this device has not acknowledged. What it guarantees to the
 * application:
 *
 * - `msg` events arrive once per (conv, seq) for the life of the client object
 *   and in strictly increasing seq per conversation, across reconnects. When a
 *   known conversation jumps ahead (catch-up returns only the newest entries),
 *   the hole is filled from `history` before the newer entry is delivered.
 *   Entries this device made (its sends, its group changes) are not
 *   delivered back: the application has them as the results of its calls.
 * - An entry is acknowledged (`ack`) only after every `msg` listener has
 *   returned, and after the promises they returned have settled.
 * - Requests made while disconnected wait for the next session. Requests go
 *   out in order, paced under the server's request rate limit; one answered
 *   `rate_limited` (not executed) is sent again after a pause. A request that
 *   is safe to repeat (send, read, queries) is sent again after a drop; `send`
 *   keeps its cmid, so a repeat of an accepted send is answered with the
 *   original entry (`dup: true`) and appends nothing; the entry is not
 *   delivered back as a `msg`, whether the catch-up or that answer comes
 *   first. Other requests that were in flight fail with `disconnected`.
 *
 * All methods are meant for one event loop (the browser's or Node's); nothing
 * here is shared between threads.
 */
import { decode, encode } from "@msgpack/msgpack";
import { Emitter } from "./emitter.js";
import { RingpushError } from "./errors.js";
import { messageBytes, socketConstructor, SocketConstructor, SocketLike } from "./socket.js";
import { Friends, Groups } from "./groups.js";
import type {
  ClientEvents,
  ConvSummary,
  HistoryOptions,
  HistoryPage,
  Message,
  SendOptions,
  SendResult,
  Session,
  State,
} from "./types.js";

export interface ReconnectOptions {
  /** First delay after a drop, ms (default 250). */
  minDelay?: number;
  /** Largest delay, ms (default 10000). */
  maxDelay?: number;
  /** Growth per failed attempt (default 2). */
  factor?: number;
}

export interface ClientOptions {
  /** `ws://host:port/ws` or `wss://…`. */
  url: string;
  /** A JWT, or a function that returns one; it is called before every connect. */
  token: string | (() => string | Promise<string>);
  /** This device's id (1–32 bytes of [A-Za-z0-9_.@-]). */
  device: string;
  /** Ask for catch-up at every hello (default true). */
  resume?: boolean;
  /** `false` turns reconnecting off. */
  reconnect?: ReconnectOptions | false;
  /** Time limit of a request, ms (default 15000); `send` has `sendTimeout` (default 60000). */
  requestTimeout?: number;
  sendTimeout?: number;
  /** Fill holes in a conversation from history (default true). */
  gapFill?: boolean;
  /** In a browser, drop the connection on `offline` and reconnect on `online` (default true). */
  watchNetwork?: boolean;
  /** The server's per-connection request limit (its `rate_limit` and
   * `rate_burst`; default 200/s, burst 400). Requests are paced under it. */
  rateLimit?: { rate?: number; burst?: number };
  /** A WebSocket constructor to use instead of the platform's or `ws`. */
  WebSocket?: SocketConstructor;
}

interface Pending {
  frame: Record<string, unknown>;
  retry: boolean;
  sent: boolean;
  resolve: (reply: Record<string, unknown>) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Per conversation: `hw` is the highest seq handled (0: nothing known yet);
 * `own` holds seqs this client appended above `hw` (its own sends, recalls). */
interface ConvState {
  hw: number;
  own: Set<number>;
}

/** Ops whose repetition changes nothing: sent again after a reconnect. */
const RETRYABLE = new Set([
  "send",
  "read",
  "history",
  "sync",
  "ping",
  "group.info",
  "group.members",
  "group.list",
  "friend.list",
]);

/** Group ops that append an event (unless they change nothing). */
const GROUP_CHANGES = new Set([
  "group.create",
  "group.invite",
  "group.join",
  "group.kick",
  "group.leave",
  "group.dismiss",
  "group.update",
  "group.admin",
  "group.nick",
]);

/** Reasons in `bye` after which reconnecting would be wrong. */
const FINAL_BYE = new Set(["replaced", "kicked"]);

const SENT_CMIDS_KEPT = 1024;

/** The server's default request limit (PROTOCOL §8): a token bucket per
 * connection, 200 requests/s with a burst of 400; `hello` counts, `ack` and
 * `ping` frames do not. */
const RATE_LIMIT = 200;
const RATE_BURST = 400;

/** How long the requests wait after one was answered `rate_limited`, ms. */
const RATE_LIMITED_PAUSE = 1000;

/** The conversation id of a direct conversation between users `a` and `b`. */
export function directConv(a: string, b: string): string {
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

/** The conversation id of a group. */
export function groupConv(group: string): string {
  return `g:${group}`;
}

export class RingpushClient extends Emitter<ClientEvents> {
  readonly groups: Groups;
  readonly friends: Friends;

  private readonly opts: ClientOptions;
  private state: State = "idle";
  private ws: SocketLike | null = null;
  private gen = 0; // bumped for every socket, so late callbacks of an old one are ignored
  private session: Session | null = null;
  private helloId = 0;
  private nextReqId = 0;
  private pending = new Map<number, Pending>();
  private convs = new Map<string, ConvState>();
  private acks = new Map<string, number>(); // to send
  private acked = new Map<string, number>(); // highest ack queued or sent, per conv
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private inbox: Promise<void> = Promise.resolve();
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private beatTimer: ReturnType<typeof setInterval> | null = null;
  private lastSend = 0;
  private lastRecv = 0;
  private byeReason = "";
  private offline = false;
  private cmidBase: string;
  private cmidCount = 0;
  private sentCmids = new Set<string>();
  private tokens = 0; // requests that may go out now (see take())
  private tokensAt = 0; // when `tokens` was counted; ahead of now during a pause
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private ready: { promise: Promise<Session>; resolve: (s: Session) => void; reject: (e: Error) => void };
  private unwatch: (() => void) | null = null;

  constructor(opts: ClientOptions) {
    super();
    this.opts = opts;
    this.groups = new Groups(this);
    this.friends = new Friends(this);
    this.cmidBase = `${opts.device}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    this.ready = deferred<Session>();
    this.ready.promise.catch(() => {}); // reported through connect() or `error`
  }

  /** Current connection state. */
  get status(): State {
    return this.state;
  }

  /** The current session (hello reply), or null while disconnected. */
  get current(): Session | null {
    return this.session;
  }

  /** Highest seq of `conv` handled by this client (0 if none). */
  lastSeq(conv: string): number {
    return this.convs.get(conv)?.hw ?? 0;
  }

  /**
   * Starts connecting (and keeps reconnecting). Resolves with the first
   * session; rejects on a fatal hello error (`unauthorized`, `conflict`,
   * `bad_request`) or if the client is closed first.
   */
  connect(): Promise<Session> {
    if (this.state === "closed") return Promise.reject(new RingpushError("closed", "client is closed"));
    if (this.state === "idle") {
      this.watchNetwork();
      void this.open();
    }
    return this.ready.promise;
  }

  /** Drops the current connection (as a network failure would) and reconnects at once. */
  reconnect(): void {
    if (this.state === "closed") return;
    this.attempt = 0;
    this.drop(4000, "client reconnect");
    if (!this.offline) void this.open();
  }

  /**
   * Drops the connection and stays away until connect() is called again.
   * Unlike close(), everything is kept: requests made meanwhile wait, and
   * what was handled is remembered, so the next session resumes where this
   * one stopped.
   */
  disconnect(): void {
    if (this.state === "closed" || this.state === "idle") return;
    this.setState("idle");
    this.drop(1000, "client disconnect");
    this.ready = deferred<Session>();
    this.ready.promise.catch(() => {});
  }

  /** Closes for good: pending requests fail with `closed`, no reconnect. */
  close(): void {
    if (this.state === "closed") return;
    this.flushAcks();
    this.setState("closed");
    this.drop(1000, "client closed");
    this.failAll(new RingpushError("closed", "client closed"));
    this.ready.reject(new RingpushError("closed", "client closed"));
    this.stopFlush();
    this.unwatch?.();
    this.unwatch = null;
  }

  // ---------------------------------------------------------------- requests

  /**
   * Sends one request and resolves with the whole `ok` reply (or `pong`).
   * Rejects with a RingpushError carrying the server's code, or `timeout`,
   * `disconnected`, `closed`, `too_large` (frame above the session's max_frame).
   */
  request(op: string, fields: Record<string, unknown> = {}, timeout?: number): Promise<Record<string, unknown>> {
    if (this.state === "closed") return Promise.reject(new RingpushError("closed", "client is closed"));
    const id = this.newId();
    const frame = { ...fields, op, id };
    const ms = timeout ?? this.opts.requestTimeout ?? 15000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RingpushError("timeout", `${op}: no reply within ${ms} ms`));
      }, ms);
      const p: Pending = { frame, retry: RETRYABLE.has(op), sent: false, resolve, reject, timer };
      this.pending.set(id, p);
      if (!this.flushTimer) this.flush(); // else it waits its turn
    });
  }

  /** Sends a message; see SendOptions. Resolves once the entry is durable. */
  async send(o: SendOptions): Promise<SendResult> {
    const cmid = o.cmid ?? this.newCmid();
    this.rememberCmid(cmid);
    const fields: Record<string, unknown> = { cmid, type: o.type ?? "text", body: o.body };
    if (o.to !== undefined) fields.to = o.to;
    if (o.group !== undefined) fields.group = o.group;
    const r = await this.request("send", fields, this.opts.sendTimeout ?? 60000);
    const res: SendResult = {
      conv: r.conv as string,
      seq: r.seq as number,
      ts: r.ts as number,
      cmid,
      dup: r.dup === true,
    };
    this.markOwn(res.conv, res.seq);
    return res;
  }

  /** Moves this user's read cursor of `conv` to `seq`. */
  async read(conv: string, seq: number): Promise<void> {
    await this.request("read", { conv, seq });
  }

  /** Recalls entry `seq` of `conv`; resolves with the seq of the recall entry. */
  async recall(conv: string, seq: number): Promise<number> {
    const r = await this.request("recall", { conv, seq });
    const at = r.seq as number;
    this.markOwn(conv, at);
    return at;
  }

  /** One page of a conversation, ascending by seq. */
  async history(conv: string, o: HistoryOptions = {}): Promise<HistoryPage> {
    const fields: Record<string, unknown> = { conv };
    if (o.before !== undefined) fields.before = o.before;
    if (o.after !== undefined) fields.after = o.after;
    if (o.limit !== undefined) fields.limit = o.limit;
    const r = await this.request("history", fields);
    return { conv: r.conv as string, msgs: r.msgs as Message[], more: r.more === true };
  }

  /**
   * Every conversation of the user with last seq, read cursor and unread count, newest first.
   * A list longer than one frame comes in pages, which this reads one after another.
   */
  async sync(): Promise<ConvSummary[]> {
    const convs: ConvSummary[] = [];
    let after: string | undefined;
    for (;;) {
      const r = await this.request("sync", after === undefined ? {} : { after });
      convs.push(...(r.convs as ConvSummary[]));
      if (r.more !== true || typeof r.next !== "string") return convs;
      after = r.next;
    }
  }

  /** A round trip to the server. */
  async ping(): Promise<void> {
    await this.request("ping");
  }

  // ---------------------------------------------------------------- connection

  private async open(): Promise<void> {
    const gen = ++this.gen;
    this.setState("connecting");
    let token: string;
    let Ctor: SocketConstructor;
    try {
      token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
      Ctor = await socketConstructor(this.opts.WebSocket);
    } catch (e) {
      if (gen !== this.gen) return;
      this.emit("error", toError(e));
      this.retryLater();
      return;
    }
    if (gen !== this.gen) return;
    let ws: SocketLike;
    try {
      ws = new Ctor(this.opts.url);
    } catch (e) {
      this.emit("error", toError(e));
      this.retryLater();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.byeReason = "";
    ws.onopen = () => {
      if (gen !== this.gen) return;
      this.helloId = this.newId();
      this.write({ op: "hello", id: this.helloId, token, device: this.opts.device, resume: this.opts.resume ?? true });
    };
    ws.onmessage = (ev) => {
      if (gen === this.gen) this.onData(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen === this.gen) this.onClosed(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows
  }

  private onData(data: unknown): void {
    const bytes = messageBytes(data);
    if (!bytes) return;
    let f: Record<string, unknown>;
    try {
      f = decode(bytes) as Record<string, unknown>;
    } catch (e) {
      this.emit("error", toError(e));
      return;
    }
    if (!f || typeof f !== "object") return;
    this.lastRecv = Date.now();
    const op = f.op;
    if (typeof f.id === "number" && (op === "ok" || op === "error" || op === "pong")) {
      this.onReply(f.id, f);
      return;
    }
    switch (op) {
      case "error":
        this.emit("error", new RingpushError(String(f.code), String(f.msg ?? "")));
        return;
      case "bye":
        // Recorded now: the close that follows must know it, whatever the inbox holds.
        this.byeReason = String(f.reason ?? "");
        break;
      case "msg":
      case "read":
      case "friend":
      case "synced":
        break;
      default:
        return; // unknown pushes are ignored, like unknown keys
    }
    this.inbox = this.inbox.then(() => this.onPush(f)).catch((e) => this.emit("error", toError(e)));
  }

  private onReply(id: number, f: Record<string, unknown>): void {
    if (id === this.helloId && !this.session) {
      const err = new RingpushError(String(f.code), String(f.msg ?? ""));
      if (f.op === "ok") this.onSession(f as unknown as Session);
      else if (err.code === "unavailable") this.onHelloBusy(err);
      else this.onHelloRefused(err);
      return;
    }
    const p = this.pending.get(id);
    if (!p) return; // timed out, or an internal ping
    if (f.op === "error" && f.code === "rate_limited") {
      // Not executed, so safe to send again whatever the op: after a pause,
      // in its place among the requests still waiting. Its time limit runs on.
      p.sent = false;
      this.tokens = 0;
      this.tokensAt = Date.now() + RATE_LIMITED_PAUSE;
      this.flush();
      return;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (f.op === "error") {
      p.reject(new RingpushError(String(f.code), String(f.msg ?? "")));
      return;
    }
    // A change's reply names the event it wrote (none: a bare ok); the server
    // does not push that event to this device, so it is marked as seen here.
    const change = GROUP_CHANGES.has(String(p.frame.op));
    if (change && typeof f.conv === "string" && typeof f.seq === "number") this.markOwn(f.conv, f.seq);
    p.resolve(f);
  }

  private onSession(s: Session): void {
    this.session = s;
    this.attempt = 0;
    this.setState("open");
    this.startHeartbeat(s.heartbeat_ms);
    this.tokens = this.pace().burst - 1; // a new connection's burst, less the hello
    this.tokensAt = Date.now();
    this.flush();
    this.flushAcks();
    this.emit("open", s);
    this.ready.resolve(s);
  }

  /** `unavailable`: the server could not take the session now (its storage
   * or the user's core is busy). Not final: reconnect with backoff. */
  private onHelloBusy(err: RingpushError): void {
    this.emit("error", err);
    this.drop(1000, "hello unavailable");
    this.retryLater();
  }

  /** Any other refused hello is final: retrying the same token cannot succeed. */
  private onHelloRefused(err: RingpushError): void {
    this.emit("error", err);
    this.ready.reject(err);
    this.failAll(err);
    this.setState("closed");
    this.drop(1000, "hello refused");
    this.unwatch?.();
  }

  /** The socket is gone. `schedule`: whether to plan the reconnect here (the
   * caller of drop() decides for itself). */
  private onClosed(code: number, reason: string, schedule = true): void {
    this.ws = null;
    this.session = null;
    this.stopHeartbeat();
    this.stopFlush();
    this.gen++;
    for (const [id, p] of this.pending) {
      if (!p.sent) continue;
      if (p.retry) {
        p.sent = false;
      } else {
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.reject(new RingpushError("disconnected", `${String(p.frame.op)}: connection lost before the reply`));
      }
    }
    if (FINAL_BYE.has(this.byeReason)) {
      const err = new RingpushError("closed", `server ended the session: ${this.byeReason}`);
      this.setState("closed");
      this.failAll(err);
      this.ready.reject(err);
      this.emit("close", { code, reason, reconnect: false });
      return;
    }
    if (!schedule) {
      this.emit("close", { code, reason, reconnect: this.state !== "closed" && this.state !== "idle" });
      return;
    }
    const again = this.opts.reconnect !== false;
    this.emit("close", { code, reason, reconnect: again });
    if (!again) {
      this.setState("closed");
      this.failAll(new RingpushError("closed", "connection closed"));
      this.ready.reject(new RingpushError("closed", "connection closed"));
      return;
    }
    this.retryLater();
  }

  /** Closes the socket without waiting for its close event, and settles what it held. */
  private drop(code: number, reason: string): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    if (!ws) return;
    this.onClosed(code, reason, false);
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  private retryLater(): void {
    if (this.state === "closed") return;
    if (this.offline) {
      this.setState("offline");
      return;
    }
    const r = this.opts.reconnect || {};
    const min = r.minDelay ?? 250;
    const max = r.maxDelay ?? 10000;
    const base = Math.min(max, min * Math.pow(r.factor ?? 2, this.attempt));
    // Half fixed, half random: spreads a crowd of clients after a server restart.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempt++;
    this.setState("waiting");
    this.emit("reconnecting", { attempt: this.attempt, delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.open();
    }, delay);
  }

  private watchNetwork(): void {
    const w = (globalThis as { window?: Window }).window;
    if (!w || typeof w.addEventListener !== "function" || this.opts.watchNetwork === false) return;
    const off = () => {
      this.offline = true;
      this.drop(4001, "offline");
      this.setState("offline");
    };
    const on = () => {
      if (!this.offline) return;
      this.offline = false;
      if (this.state === "closed") return;
      this.attempt = 0;
      void this.open();
    };
    w.addEventListener("offline", off);
    w.addEventListener("online", on);
    this.unwatch = () => {
      w.removeEventListener("offline", off);
      w.removeEventListener("online", on);
    };
  }

  private startHeartbeat(ms: number): void {
    this.stopHeartbeat();
    const beat = Math.max(ms, 500);
    this.lastRecv = Date.now();
    this.beatTimer = setInterval(
      () => {
        const now = Date.now();
        if (now - this.lastRecv > 2 * beat + 1000) {
          // The server answers every ping: this much silence is a dead path.
          this.reconnect();
          return;
        }
        if (now - this.lastSend >= beat / 2) this.write({ op: "ping", id: this.newId() });
      },
      Math.max(250, beat / 4),
    );
  }

  private stopHeartbeat(): void {
    if (this.beatTimer) clearInterval(this.beatTimer);
    this.beatTimer = null;
  }

  /** Writes the requests that wait for the session, in order, as fast as
   * the server's request limit lets them go; the rest wait for a timer. */
  private flush(): void {
    this.stopFlush();
    if (!this.session) return;
    for (const [id, p] of this.pending) {
      if (p.sent) continue;
      const wait = this.take();
      if (wait > 0) {
        this.flushTimer = setTimeout(() => {
          this.flushTimer = null;
          this.flush();
        }, wait);
        return;
      }
      this.transmit(id, p);
    }
  }

  private stopFlush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
  }

  /** Takes one request from the budget: 0, or the ms until there is one. */
  private take(): number {
    const { rate, burst } = this.pace();
    const now = Date.now();
    if (now < this.tokensAt) return this.tokensAt - now; // pausing after rate_limited
    this.tokens = Math.min(burst, this.tokens + ((now - this.tokensAt) * rate) / 1000);
    this.tokensAt = now;
    if (this.tokens < 1) return Math.ceil(((1 - this.tokens) * 1000) / rate);
    this.tokens--;
    return 0;
  }

  /** The client's own bucket: the server's rate, and three quarters of its
   * burst, the rest kept for requests that reach the server bunched up. */
  private pace(): { rate: number; burst: number } {
    const r = this.opts.rateLimit;
    return { rate: r?.rate ?? RATE_LIMIT, burst: Math.floor(((r?.burst ?? RATE_BURST) * 3) / 4) };
  }

  private transmit(id: number, p: Pending): void {
    const max = this.session?.max_frame ?? 65536;
    const bytes = encode(p.frame, { ignoreUndefined: true });
    if (bytes.byteLength > max) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new RingpushError("too_large", `${String(p.frame.op)}: ${bytes.byteLength} bytes > ${max}`));
      return;
    }
    p.sent = true;
    this.writeBytes(bytes);
  }

  private write(frame: Record<string, unknown>): void {
    this.writeBytes(encode(frame, { ignoreUndefined: true }));
  }

  private writeBytes(bytes: Uint8Array): void {
    if (!this.ws) return;
    try {
      this.ws.send(bytes);
      this.lastSend = Date.now();
    } catch (e) {
      this.emit("error", toError(e));
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  private setState(s: State): void {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  private newId(): number {
    this.nextReqId = this.nextReqId >= 0xffffffff ? 1 : this.nextReqId + 1;
    return this.nextReqId;
  }

  private newCmid(): string {
    return `${this.cmidBase}-${(++this.cmidCount).toString(36)}`;
  }

  private rememberCmid(cmid: string): void {
    this.sentCmids.add(cmid);
    if (this.sentCmids.size > SENT_CMIDS_KEPT) {
      const oldest = this.sentCmids.values().next().value as string;
      this.sentCmids.delete(oldest);
    }
  }

  protected override onListenerError(e: unknown): void {
    this.emit("error", toError(e));
  }

  // ---------------------------------------------------------------- pushes

  private async onPush(f: Record<string, unknown>): Promise<void> {
    switch (f.op) {
      case "msg":
        await this.onMsg(f as unknown as Message);
        return;
      case "read":
        this.emit("read", { conv: f.conv as string, user: f.user as string, seq: f.seq as number });
        return;
      case "friend":
        this.emit("friend", f as unknown as ClientEvents["friend"]);
        return;
      case "synced":
        this.emit("synced", undefined);
        return;
      case "bye":
        this.emit("bye", { reason: String(f.reason ?? "") });
        return;
    }
  }

  private conv(conv: string): ConvState {
    let st = this.convs.get(conv);
    if (!st) {
      st = { hw: 0, own: new Set() };
      this.convs.set(conv, st);
    }
    return st;
  }

  private async onMsg(m: Message): Promise<void> {
    const st = this.conv(m.conv);
    this.advance(m.conv, st);
    if (m.seq <= st.hw || st.own.has(m.seq)) return; // already handled: at-least-once resume
    if (st.hw > 0 && m.seq > st.hw + 1 && this.opts.gapFill !== false) await this.fillGap(st, m);
    if (this.isOwn(m)) {
      // Catch-up brings what this device has not acked, its own entries too:
      // a send whose reply was lost (before the retry's dup reply, maybe), a
      // group change whose event it never got.
      this.passOwn(st, m);
      return;
    }
    await this.deliver(st, m);
  }

  /** Delivers the entries between st.hw and m.seq from history, in order. */
  private async fillGap(st: ConvState, m: Message): Promise<void> {
    const to = m.seq - 1;
    while (st.hw < to) {
      let page: HistoryPage;
      try {
        page = await this.history(m.conv, { after: st.hw, limit: Math.min(200, to - st.hw) });
      } catch (e) {
        this.emit("gap", { conv: m.conv, from: st.hw + 1, to });
        return;
      }
      const before = st.hw;
      for (const e of page.msgs) {
        if (e.seq <= st.hw || e.seq > to) continue;
        if (st.own.has(e.seq) || this.isOwn(e)) {
          this.passOwn(st, e);
          continue;
        }
        await this.deliver(st, e);
      }
      if (st.hw === before) {
        this.emit("gap", { conv: m.conv, from: st.hw + 1, to });
        return;
      }
    }
  }

  /** An entry of this device's own (from history or catch-up), which the
   * application learns of from the call that made it: a send of this client
   * (the send() result), or a group event this device caused (the server
   * pushes it to the user's other devices only). */
  private isOwn(e: Message): boolean {
    if (e.from !== this.session?.user || e.dev !== this.opts.device) return false;
    return e.type === "event" || this.sentCmids.has(e.cmid);
  }

  /** Moves hw over an entry of this device's own without delivering it. */
  private passOwn(st: ConvState, e: Message): void {
    if (e.seq > st.hw) st.hw = e.seq;
    this.advance(e.conv, st);
  }

  private async deliver(st: ConvState, m: Message): Promise<void> {
    try {
      await this.emitAsync("msg", m);
    } catch (e) {
      this.emit("error", toError(e));
    }
    if (m.seq > st.hw) st.hw = m.seq;
    this.advance(m.conv, st);
  }

  /** Records an entry this client appended, so it is not delivered back to it. */
  private markOwn(conv: string, seq: number): void {
    const st = this.conv(conv);
    if (seq > st.hw) st.own.add(seq);
    this.advance(conv, st);
  }

  /** Moves hw over own entries that directly follow it, and acks the new hw. */
  private advance(conv: string, st: ConvState): void {
    const start = st.hw;
    while (st.own.has(st.hw + 1)) {
      st.own.delete(st.hw + 1);
      st.hw++;
    }
    for (const s of st.own) if (s <= st.hw) st.own.delete(s);
    if (st.hw > start || st.hw > (this.acked.get(conv) ?? 0)) this.queueAck(conv, st.hw);
  }

  private queueAck(conv: string, seq: number): void {
    if (seq <= (this.acked.get(conv) ?? 0)) return;
    this.acked.set(conv, seq);
    this.acks.set(conv, seq);
    if (!this.ackTimer) this.ackTimer = setTimeout(() => this.flushAcks(), 0);
  }

  /** Sends the cumulative ack of every conversation that moved (one frame each). */
  private flushAcks(): void {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (!this.session || this.acks.size === 0) return;
    for (const [conv, seq] of this.acks) this.write({ op: "ack", conv, seq });
    this.acks.clear();
  }
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
