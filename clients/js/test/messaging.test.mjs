// Messaging against a live ringpushd: send and msg pushes, body types, cmid
// dedup on a repeated send, a send retried across a dropped connection (and
// not delivered back), requests paced under the server's rate limit, read
// receipts, recall, history paging, sync unread counts, and resume after a
// disconnect that loses nothing and duplicates nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { directConv } from "../dist/index.js";
import { filteredSocket, haveServer, login, makeClient, Server, sleep, waitFor } from "./helpers.mjs";

const skip = haveServer() ? false : "ringpushd binary not found (set RINGPUSHD)";

function texts(c, conv) {
  return c.log.msg.filter((m) => m.conv === conv).map((m) => m.body);
}

function seqs(c, conv) {
  return c.log.msg.filter((m) => m.conv === conv).map((m) => m.seq);
}

describe("messaging", { skip, timeout: 120000 }, () => {
  let srv;
  before(async () => {
    srv = await new Server({ shards: 2 }).start();
  });
  after(async () => {
    await srv.dispose();
  });

  test("send: durable reply, msg push to the peer, body types kept", async () => {
    const a = await login(srv, "m_ana");
    const b = await login(srv, "m_ben");
    try {
      const conv = directConv("m_ana", "m_ben");
      const r1 = await a.send({ to: "m_ben", body: "hello" });
      assert.equal(r1.conv, conv);
      assert.equal(r1.seq, 1);
      assert.equal(r1.dup, false);
      assert.ok(r1.cmid.length > 0 && r1.cmid.length <= 64);
      const bin = new Uint8Array([0, 1, 2, 250]);
      const r2 = await a.send({ to: "m_ben", body: bin, type: "image" });
      assert.equal(r2.seq, 2);
      assert.notEqual(r2.cmid, r1.cmid, "every send gets its own cmid");
      await waitFor(() => b.log.msg.length === 2, { what: "two pushes" });
      const [m1, m2] = b.log.msg;
      assert.deepEqual(
        { conv: m1.conv, seq: m1.seq, from: m1.from, dev: m1.dev, cmid: m1.cmid, type: m1.type, body: m1.body },
        { conv, seq: 1, from: "m_ana", dev: "d1", cmid: r1.cmid, type: "text", body: "hello" },
      );
      assert.equal(m1.ts, r1.ts);
      assert.equal(m2.type, "image");
      assert.ok(m2.body instanceof Uint8Array, "bin stays bin");
      assert.deepEqual([...m2.body], [0, 1, 2, 250]);
      await sleep(100);
      assert.equal(a.log.msg.length, 0, "the sending device gets no push of its own send");
    } finally {
      a.close();
      b.close();
    }
  });

  test("a repeated cmid is answered dup with the original entry", async () => {
    const a = await login(srv, "d_ana");
    const b = await login(srv, "d_ben");
    try {
      const r1 = await a.send({ to: "d_ben", body: "once", cmid: "fixed-1" });
      const r2 = await a.send({ to: "d_ben", body: "once", cmid: "fixed-1" });
      assert.equal(r2.dup, true);
      assert.equal(r2.seq, r1.seq);
      assert.equal(r2.ts, r1.ts);
      await sleep(200);
      assert.equal(b.log.msg.length, 1, "a dup pushes nothing");
      const h = await b.history(r1.conv);
      assert.equal(h.msgs.length, 1);
    } finally {
      a.close();
      b.close();
    }
  });

  test("a send in flight when the connection drops is retried with its cmid: exactly one entry", async () => {
    const a = await login(srv, "t_ana");
    const b = await login(srv, "t_ben");
    try {
      const results = [];
      for (let i = 0; i < 10; i++) {
        const p = a.send({ to: "t_ben", body: `m${i}` });
        if (i % 3 === 0) a.reconnect(); // the frame is written, then the socket goes
        results.push(await p);
      }
      const conv = results[0].conv;
      assert.deepEqual(
        results.map((r) => r.seq),
        results.map((_, i) => i + 1),
      );
      const h = await b.history(conv);
      assert.deepEqual(
        h.msgs.map((m) => m.body),
        results.map((_, i) => `m${i}`),
      );
      await waitFor(() => b.log.msg.length === 10, { what: "ten pushes" });
      assert.deepEqual(texts(b, conv), results.map((_, i) => `m${i}`));
      assert.ok(a.log.open >= 4, "the client reconnected");
    } finally {
      a.close();
      b.close();
    }
  });

  // The server accepts a send, and the connection drops before its reply
  // arrives. At the next hello the catch-up pushes the entry (this device has
  // not acked it) and the retried send is answered dup; whichever of the two
  // the client gets first, the application sees the entry only as the send()
  // result, and the peer's entries around it as msg events.
  for (const order of ["push first", "reply first"]) {
    test(`a send whose reply was lost is not delivered back as a msg (${order})`, async () => {
      const ana = order === "push first" ? "l_ana" : "l2_ana";
      const ben = order === "push first" ? "l_ben" : "l2_ben";
      let mode = "lose";
      let lost = false;
      const held = [];
      const Sock = filteredSocket((f, deliver) => {
        const dup = f.op === "ok" && f.dup === true;
        if (mode === "lose" && f.op === "ok" && f.seq !== undefined) {
          lost = true; // the send's reply
          mode = "pass";
          return;
        }
        if ((mode === "hold reply" && dup) ||
            (mode === "hold push" && !dup && (held.length > 0 || (f.op === "msg" && f.from === ana)))) {
          held.push(deliver);
          return;
        }
        deliver();
      });
      const release = () => {
        mode = "pass";
        for (const deliver of held.splice(0)) deliver();
      };
      const a = await login(srv, ana, "d1", { WebSocket: Sock });
      const b = await login(srv, ben);
      try {
        const conv = directConv(ana, ben);
        await b.send({ to: ana, body: "b1" });
        await waitFor(() => a.log.msg.length === 1, { what: "b1" });
        const sent = a.send({ to: ben, body: "mine" });
        await waitFor(() => lost, { what: "the send's reply" });
        a.disconnect();
        await b.send({ to: ana, body: "b2" });
        mode = order === "push first" ? "hold reply" : "hold push";
        const synced = a.next("synced");
        await a.connect();
        let r;
        if (order === "push first") {
          await synced; // the catch-up, with the entry of the send, is handled
          release();
          r = await sent;
        } else {
          r = await sent;
          release();
          await synced;
        }
        assert.equal(r.dup, true);
        assert.equal(r.seq, 2);
        await b.send({ to: ana, body: "b3" });
        await waitFor(() => a.log.msg.length >= 3, { what: "b3" });
        await sleep(100);
        assert.deepEqual(texts(a, conv), ["b1", "b2", "b3"]);
        assert.deepEqual(seqs(a, conv), [1, 3, 4]);
        assert.deepEqual(a.log.gap, []);
        assert.equal(a.lastSeq(conv), 4);
      } finally {
        a.close();
        b.close();
      }
    });
  }

  test("sends made while offline go out, in order, after the reconnect", async () => {
    const s2 = await new Server({ shards: 1 }).start();
    try {
      const a = await login(s2, "o_ana");
      await s2.stop();
      await waitFor(() => a.status !== "open", { what: "client noticed the stop" });
      const ps = [0, 1, 2].map((i) => a.send({ to: "o_ben", body: `late${i}` }));
      await sleep(300);
      await s2.start();
      const rs = await Promise.all(ps);
      assert.deepEqual(
        rs.map((r) => r.seq),
        [1, 2, 3],
      );
      const b = await login(s2, "o_ben");
      const h = await b.history(rs[0].conv);
      assert.deepEqual(
        h.msgs.map((m) => m.body),
        ["late0", "late1", "late2"],
      );
      a.close();
      b.close();
    } finally {
      await s2.dispose();
    }
  });

  test("sends queued while offline past the server's burst all go out, paced, in order", async () => {
    const s2 = await new Server({ shards: 1 }).start();
    try {
      const a = await login(s2, "q_ana");
      a.disconnect();
      const n = 600; // the server takes a burst of 400, then 200/s
      const ps = [...Array(n)].map((_, i) => a.send({ to: "q_ben", body: `q${i}` }).catch((e) => e.code));
      await a.connect();
      const rs = await Promise.all(ps);
      a.close();
      assert.deepEqual(rs.filter((r) => typeof r === "string"), [], "no send failed");
      assert.deepEqual(
        rs.map((r) => r.seq),
        rs.map((_, i) => i + 1),
      );
    } finally {
      await s2.dispose();
    }
  });

  test("sync returns every conversation when they take more than one frame", async () => {
    const s2 = await new Server({ shards: 1, args: ["--max-frame", "8192"] }).start();
    try {
      const a = await login(s2, "p_ana");
      for (let i = 0; i < 300; i++) await a.send({ to: `p_u${i}`, body: "x" });
      const first = await a.request("sync");
      assert.equal(first.more, true, "one frame does not hold 300");
      const all = await a.sync();
      assert.equal(new Set(all.map((c) => c.conv)).size, 300);
      const ts = all.map((c) => c.last_ts);
      assert.deepEqual(ts, [...ts].sort((x, y) => y - x), "newest first across pages");
      a.close();
    } finally {
      await s2.dispose();
    }
  });

  test("read: cursor moves, the peer gets a read receipt, sync counts unread", async () => {
    const a = await login(srv, "r_ana");
    const b = await login(srv, "r_ben");
    try {
      let last;
      for (let i = 0; i < 3; i++) last = await a.send({ to: "r_ben", body: `x${i}` });
      await waitFor(() => b.log.msg.length === 3, { what: "pushes" });
      let sb = (await b.sync()).find((c) => c.conv === last.conv);
      assert.equal(sb.last_seq, 3);
      assert.equal(sb.unread, 3);
      const sa = (await a.sync()).find((c) => c.conv === last.conv);
      assert.equal(sa.unread, 0, "sending implies reading");
      await b.read(last.conv, 2);
      await waitFor(() => a.log.read.length === 1, { what: "read receipt" });
      assert.deepEqual(a.log.read[0], { conv: last.conv, user: "r_ben", seq: 2 });
      sb = (await b.sync()).find((c) => c.conv === last.conv);
      assert.equal(sb.read_seq, 2);
      assert.equal(sb.unread, 1);
      assert.ok(sb.ack_seq >= 3 || sb.ack_seq === 0, "ack cursor reported");
    } finally {
      a.close();
      b.close();
    }
  });

  test("recall: the peer gets a recall entry, history reads the original as recalled", async () => {
    const a = await login(srv, "c_ana");
    const b = await login(srv, "c_ben");
    try {
      const r = await a.send({ to: "c_ben", body: "oops" });
      const at = await a.recall(r.conv, r.seq);
      assert.equal(at, r.seq + 1);
      await waitFor(() => b.log.msg.length === 2, { what: "msg and recall" });
      await sleep(100);
      const rec = b.log.msg[1];
      assert.equal(rec.type, "recall");
      assert.equal(rec.target, r.seq);
      const h = await b.history(r.conv);
      assert.equal(h.msgs[0].type, "recalled");
      assert.equal(h.msgs[0].body.length, 0);
      const other = await a.send({ to: "c_ben", body: "mine" });
      await assert.rejects(b.recall(r.conv, other.seq), (e) => e.code === "forbidden");
      await assert.rejects(a.recall(r.conv, 99), (e) => e.code === "not_found");
      await sleep(100);
      assert.equal(a.log.msg.length, 0, "own recall is not delivered back");
    } finally {
      a.close();
      b.close();
    }
  });

  test("history pages before/after with limit and more", async () => {
    const a = await login(srv, "h_ana");
    try {
      let conv;
      for (let i = 1; i <= 12; i++) conv = (await a.send({ to: "h_ben", body: `n${i}` })).conv;
      const newest = await a.history(conv, { limit: 5 });
      assert.deepEqual(
        newest.msgs.map((m) => m.seq),
        [8, 9, 10, 11, 12],
      );
      assert.equal(newest.more, true);
      const older = await a.history(conv, { before: 8, limit: 5 });
      assert.deepEqual(
        older.msgs.map((m) => m.seq),
        [3, 4, 5, 6, 7],
      );
      const first = await a.history(conv, { after: 0, limit: 3 });
      assert.deepEqual(
        first.msgs.map((m) => m.body),
        ["n1", "n2", "n3"],
      );
      const tail = await a.history(conv, { after: 10 });
      assert.deepEqual(
        tail.msgs.map((m) => m.seq),
        [11, 12],
      );
      assert.equal(tail.more, false);
      const b = await login(srv, "h_eve");
      await assert.rejects(b.history(conv), (e) => e.code === "forbidden");
      b.close();
    } finally {
      a.close();
    }
  });

  test("a reconnect loses nothing and duplicates nothing", async () => {
    const a = await login(srv, "z_ana");
    const b = await login(srv, "z_ben");
    try {
      const conv = directConv("z_ana", "z_ben");
      for (let i = 0; i < 5; i++) await a.send({ to: "z_ben", body: `before${i}` });
      await waitFor(() => b.log.msg.length === 5, { what: "first five" });
      // b is away while ten arrive, then comes back while ten more arrive,
      // and its connection drops again in the middle of those.
      b.disconnect();
      for (let i = 0; i < 10; i++) await a.send({ to: "z_ben", body: `during${i}` });
      const back = b.connect();
      for (let i = 10; i < 20; i++) {
        await a.send({ to: "z_ben", body: `during${i}` });
        if (i === 14) {
          await back; // the second session is open: this drop ends it
          b.reconnect();
        }
      }
      await back;
      await waitFor(() => b.log.msg.length >= 25, { what: "all 25" });
      await sleep(200);
      const want = [...Array(5)].map((_, i) => `before${i}`).concat([...Array(20)].map((_, i) => `during${i}`));
      assert.deepEqual(texts(b, conv), want);
      assert.deepEqual(seqs(b, conv), want.map((_, i) => i + 1));
      await waitFor(() => b.log.open >= 3, { what: "the third session" });
      assert.equal(b.lastSeq(conv), 25);
    } finally {
      a.close();
      b.close();
    }
  });

  test("ack only after handling; entries pushed again after a reconnect are dropped", async () => {
    const a = await login(srv, "k_ana");
    const b = makeClient(srv, "k_ben");
    let release;
    const gate = new Promise((r) => (release = r));
    const handled = [];
    b.on("msg", async (m) => {
      await gate; // a slow handler: nothing may be acked before it finishes
      handled.push(m.seq);
    });
    try {
      await b.connect();
      const conv = directConv("k_ana", "k_ben");
      for (let i = 1; i <= 3; i++) await a.send({ to: "k_ben", body: `k${i}` });
      await waitFor(() => b.log.msg.length >= 1, { what: "first push" });
      await sleep(200);
      let st = (await b.sync()).find((c) => c.conv === conv);
      assert.equal(st.ack_seq, 0, "nothing acked while the handler runs");
      // A new session resumes from the ack cursor: the server pushes 1..3 again.
      b.reconnect();
      await waitFor(() => b.log.open === 2, { what: "second session" });
      await sleep(300); // its catch-up arrives behind the blocked handler
      release();
      await waitFor(() => handled.length >= 3, { what: "three handled" });
      await sleep(300);
      assert.deepEqual(handled, [1, 2, 3], "each entry handled once, in order");
      assert.deepEqual(seqs(b, conv), [1, 2, 3]);
      st = (await b.sync()).find((c) => c.conv === conv);
      assert.equal(st.ack_seq, 3, "acked once handled");
    } finally {
      a.close();
      b.close();
    }
  });

  test("a device that was away gets everything at the next hello, then synced", async () => {
    const a = await login(srv, "y_ana");
    const b1 = await login(srv, "y_ben");
    try {
      const conv = directConv("y_ana", "y_ben");
      await a.send({ to: "y_ben", body: "seen" });
      await waitFor(() => b1.log.msg.length === 1, { what: "first" });
      await sleep(100); // the ack goes out
      b1.close();
      for (let i = 0; i < 4; i++) await a.send({ to: "y_ben", body: `away${i}` });
      const b2 = makeClient(srv, "y_ben");
      const synced = b2.next("synced");
      await b2.connect();
      await synced;
      assert.deepEqual(texts(b2, conv), ["away0", "away1", "away2", "away3"], "catch-up starts after the ack cursor");
      b2.close();
    } finally {
      a.close();
    }
  });
});

describe("rate limit", { skip, timeout: 60000 }, () => {
  test("a request answered rate_limited is sent again after a pause; rateLimit paces under a given limit", async () => {
    const srv = await new Server({ shards: 1, args: ["--rate-limit", "20", "--rate-burst", "40"] }).start();
    try {
      for (const [user, rateLimit] of [["rl_ana", undefined], ["rl_eve", { rate: 20, burst: 40 }]]) {
        let limited = 0;
        const Sock = filteredSocket((f, deliver) => {
          if (f.op === "error" && f.code === "rate_limited") limited++;
          deliver();
        });
        const a = await login(srv, user, "d1", { WebSocket: Sock, rateLimit });
        const ps = [...Array(60)].map((_, i) => a.send({ to: "rl_ben", body: `r${i}` }).catch((e) => e.code));
        // Not repeatable after a drop, but a refused request was not executed.
        ps.push(a.groups.create({ name: "after the sends" }).catch((e) => e.code));
        const rs = await Promise.all(ps);
        a.close();
        assert.deepEqual(rs.filter((r) => typeof r === "string"), [], `${user}: no request failed`);
        assert.deepEqual(
          rs.slice(0, 60).map((r) => r.seq).sort((x, y) => x - y),
          [...Array(60)].map((_, i) => i + 1),
        );
        if (rateLimit) assert.equal(limited, 0, "paced under the limit it was given");
        else assert.ok(limited > 0, "paced for the default limit: this server refused some");
      }
    } finally {
      await srv.dispose();
    }
  });
});

describe("gap fill", { skip, timeout: 60000 }, () => {
  test("catch-up returns only the newest entries; the client fills the hole from history", async () => {
    const srv = await new Server({ shards: 2, args: ["--catchup-limit", "5"] }).start();
    try {
      const a = await login(srv, "g_ana");
      const b = await login(srv, "g_ben");
      const conv = directConv("g_ana", "g_ben");
      await a.send({ to: "g_ben", body: "m1" });
      await waitFor(() => b.log.msg.length === 1, { what: "first" });
      await sleep(100); // the ack of seq 1 goes out
      b.disconnect();
      for (let i = 2; i <= 21; i++) await a.send({ to: "g_ben", body: `m${i}` });
      const synced = b.next("synced");
      await b.connect();
      await synced; // emitted only after the catch-up, and the filling, are handled
      assert.deepEqual(seqs(b, conv), [...Array(21)].map((_, i) => i + 1));
      assert.deepEqual(texts(b, conv), [...Array(21)].map((_, i) => `m${i + 1}`));
      assert.deepEqual(b.log.gap, []);

      // A fresh client knows nothing of the conversation: it takes the newest
      // five as they come and leaves older entries to history.
      const fresh = makeClient(srv, "g_ben", "d2");
      const s2 = fresh.next("synced");
      await fresh.connect();
      await s2;
      assert.deepEqual(seqs(fresh, conv), [17, 18, 19, 20, 21]);
      a.close();
      b.close();
      fresh.close();
    } finally {
      await srv.dispose();
    }
  });
});
