// Session behaviour against a live ringpushd: hello, ping, refused tokens,
// requests queued before the session, replaced sessions, reconnect with
// backoff across a server restart, keepalive, and close().
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { decode, encode } from "@msgpack/msgpack";

import { RingpushClient, RingpushError } from "../dist/index.js";
import { haveServer, login, makeClient, mintToken, Server, sleep, waitFor } from "./helpers.mjs";

const skip = haveServer() ? false : "ringpushd binary not found (set RINGPUSHD)";

describe("session", { skip, timeout: 60000 }, () => {
  let srv;
  before(async () => {
    srv = await new Server({ shards: 2, args: ["--heartbeat", "1"] }).start();
  });
  after(async () => {
    await srv.dispose();
  });

  test("hello returns the session and ping round-trips", async () => {
    const c = await login(srv, "s_ana", "web1");
    try {
      const s = c.current;
      assert.equal(s.user, "s_ana");
      assert.equal(s.device, "web1");
      assert.equal(s.heartbeat_ms, 1000);
      assert.equal(s.max_frame, 65536);
      assert.ok(Math.abs(s.server_time - Date.now()) < 60000);
      assert.equal(c.status, "open");
      await c.ping();
      const r = await c.request("ping");
      assert.equal(r.op, "pong");
    } finally {
      c.close();
    }
  });

  test("resume delivers synced; resume false does not", async () => {
    const a = makeClient(srv, "s_res");
    const synced = a.next("synced");
    await a.connect();
    await synced;
    a.close();
    const b = makeClient(srv, "s_res", "d2", { resume: false });
    await b.connect();
    await b.ping();
    await sleep(100);
    assert.equal(b.log.synced, 0);
    b.close();
  });

  test("a bad token is refused once, with no reconnect", async () => {
    const c = new RingpushClient({
      url: srv.url,
      token: mintToken("s_bad", { secret: "not-the-secret" }),
      device: "d1",
      reconnect: { minDelay: 20 },
    });
    const errors = [];
    c.on("error", (e) => errors.push(e));
    await assert.rejects(c.connect(), (e) => e instanceof RingpushError && e.code === "unauthorized");
    await sleep(200);
    assert.equal(c.status, "closed");
    await assert.rejects(c.ping(), (e) => e.code === "closed");
    assert.ok(errors.some((e) => e.code === "unauthorized"));
  });

  test("a hello answered unavailable is retried with backoff until the server takes it", async () => {
    // A scripted socket: the first two hellos are answered unavailable (and the
    // connection closed, as the server does), the third ok.
    let hellos = 0;
    class BusySocket {
      constructor() {
        this.binaryType = "arraybuffer";
        this.readyState = 0;
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        setTimeout(() => {
          this.readyState = 1;
          this.onopen?.({});
        }, 1);
      }
      send(data) {
        const f = decode(data);
        if (f.op !== "hello") return;
        hellos++;
        const reply = hellos <= 2
          ? { op: "error", id: f.id, code: "unavailable", msg: "try again" }
          : { op: "ok", id: f.id, user: "s_busy", device: f.device, heartbeat_ms: 30000,
              server_time: Date.now(), max_frame: 65536, shard: 0 };
        setTimeout(() => {
          this.onmessage?.({ data: encode(reply) });
          if (hellos <= 2) this.close(1000, "");
        }, 1);
      }
      close(code = 1000, reason = "") {
        if (this.readyState === 3) return;
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code, reason }), 1);
      }
    }
    const c = new RingpushClient({ url: "ws://scripted", token: "t", device: "d1", resume: false,
                                   WebSocket: BusySocket, reconnect: { minDelay: 10, maxDelay: 50 } });
    const errors = [];
    c.on("error", (e) => errors.push(e.code));
    const s = await c.connect();
    assert.equal(s.user, "s_busy");
    assert.equal(hellos, 3);
    assert.deepEqual(errors, ["unavailable", "unavailable"]);
    assert.equal(c.status, "open");
    c.close();
  });

  test("an expired token is refused", async () => {
    const c = new RingpushClient({ url: srv.url, token: mintToken("s_exp", { ttl: -60 }), device: "d1" });
    await assert.rejects(c.connect(), (e) => e.code === "unauthorized");
    c.close();
  });

  test("requests made before the session wait for it", async () => {
    const c = makeClient(srv, "s_early");
    const p = c.ping();
    const s = c.sync();
    await c.connect();
    await p;
    assert.ok(Array.isArray(await s));
    c.close();
  });

  test("a second session of the same device ends the first: bye replaced, no reconnect", async () => {
    const a = await login(srv, "s_rep", "phone");
    const b = await login(srv, "s_rep", "phone");
    await waitFor(() => a.status === "closed", { what: "first session closed" });
    assert.deepEqual(a.log.bye, ["replaced"]);
    assert.equal(a.log.close.at(-1).reconnect, false);
    await sleep(300);
    assert.equal(a.log.open, 1, "the replaced client must not come back");
    await b.ping();
    assert.equal(b.status, "open");
    b.close();
  });

  test("keepalive pings hold an idle session past the idle timeout", async () => {
    const c = await login(srv, "s_idle");
    await sleep(4000); // idle timeout is 3 x heartbeat = 3 s
    assert.equal(c.log.open, 1, "no reconnect was needed");
    assert.equal(c.log.close.length, 0);
    await c.ping();
    c.close();
  });

  test("close() fails pending requests and stops for good", async () => {
    const c = makeClient(srv, "s_close");
    const p = c.ping(); // queued: not connected yet
    c.close();
    await assert.rejects(p, (e) => e.code === "closed");
    await assert.rejects(c.connect(), (e) => e.code === "closed");
  });
});

describe("reconnect", { skip, timeout: 60000 }, () => {
  test("server restart: bye shutdown, backoff while down, resume when back", async () => {
    const srv = await new Server({ shards: 2 }).start();
    try {
      const c = await login(srv, "r_ana");
      const delays = [];
      c.on("reconnecting", (r) => delays.push(r));
      await srv.stop();
      await waitFor(() => c.log.bye.includes("shutdown"), { what: "bye shutdown" });
      await waitFor(() => delays.length >= 3, { what: "three reconnect attempts" });
      // Backoff grows: each base delay doubles up to the maximum (half of it is random).
      assert.ok(delays[2].delay >= delays[0].delay, JSON.stringify(delays));
      const queued = c.ping(); // waits for the next session
      await srv.start();
      await waitFor(() => c.status === "open", { timeout: 10000, what: "reopened" });
      await queued;
      assert.equal(c.log.open, 2);
      c.close();
    } finally {
      await srv.dispose();
    }
  });

  test("admin kick: bye kicked, no reconnect", async (t) => {
    const srv = await new Server({ shards: 1 }).start();
    try {
      const c = await login(srv, "k_ana");
      const r = await srv.admin("POST", "/v1/users/k_ana/kick");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await waitFor(() => c.status === "closed", { what: "kicked client closed" });
      assert.deepEqual(c.log.bye, ["kicked"]);
    } finally {
      await srv.dispose();
    }
  });
});
