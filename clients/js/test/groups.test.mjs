// Groups and friends against a live ringpushd: create, invite, event entries
// pushed to members, group sends, roles, info, members, list, update, leave,
// kick, dismiss; a device's own changes not delivered back to it; friend
// request, accept, list, remove and their pushes.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { groupConv } from "../dist/index.js";
import { filteredSocket, haveServer, login, Server, sleep, waitFor } from "./helpers.mjs";

const skip = haveServer() ? false : "ringpushd binary not found (set RINGPUSHD)";

describe("groups and friends", { skip, timeout: 60000 }, () => {
  let srv;
  before(async () => {
    srv = await new Server({ shards: 2 }).start();
  });
  after(async () => {
    await srv.dispose();
  });

  test("a group's life: create, invite, send, roles, update, leave, kick, dismiss", async () => {
    const own = await login(srv, "gr_own");
    const m1 = await login(srv, "gr_m1");
    const m2 = await login(srv, "gr_m2");
    try {
      const g = await own.groups.create({ name: "team", members: ["gr_m1"], group: "team-js" });
      assert.deepEqual(g, { group: "team-js", conv: groupConv("team-js") });
      await assert.rejects(own.groups.create({ name: "again", group: "team-js" }), (e) => e.code === "conflict");

      await waitFor(() => m1.log.msg.some((m) => m.type === "event"), { what: "create event" });
      const created = m1.log.msg.find((m) => m.type === "event");
      assert.equal(created.conv, g.conv);
      assert.equal(created.from, "gr_own");
      assert.equal(created.data.kind, "create");

      await m1.groups.invite("team-js", ["gr_m2"]); // any member may invite
      await waitFor(() => m2.log.msg.some((m) => m.data?.kind === "invite"), { what: "invite event to m2" });

      const sent = await m2.send({ group: "team-js", body: "hi team" });
      assert.equal(sent.conv, g.conv);
      await waitFor(() => own.log.msg.some((m) => m.body === "hi team"), { what: "group msg to owner" });
      await waitFor(() => m1.log.msg.some((m) => m.body === "hi team"), { what: "group msg to m1" });

      const info = await m1.groups.info("team-js");
      assert.equal(info.name, "team");
      assert.equal(info.owner, "gr_own");
      assert.equal(info.count, 3);
      assert.equal(info.last_seq, sent.seq);

      const { members, more } = await own.groups.members("team-js");
      assert.equal(more, false);
      assert.deepEqual(members.map((m) => `${m.user}:${m.role}`).sort(), ["gr_m1:member", "gr_m2:member", "gr_own:owner"]);
      const page = await own.groups.members("team-js", { limit: 1 });
      assert.equal(page.members.length, 1);
      assert.equal(page.more, true);

      const list = await m2.groups.list();
      assert.deepEqual(list, [{ group: "team-js", name: "team", role: "member" }]);

      await assert.rejects(m1.groups.update("team-js", { name: "mine" }), (e) => e.code === "forbidden");
      await own.groups.admin("team-js", "gr_m1", true);
      await m1.groups.update("team-js", { name: "renamed", notice: "be nice" });
      await waitFor(() => m2.log.msg.some((m) => m.data?.kind === "update"), { what: "update event" });
      const upd = m2.log.msg.find((m) => m.data?.kind === "update");
      assert.equal(upd.data.name, "renamed");
      await m2.groups.nick("team-js", "twoey");
      await m2.groups.remark("team-js", "my note");
      const i2 = await m2.groups.info("team-js");
      assert.equal(i2.remark, "my note");
      assert.equal(i2.notice, "be nice");

      await assert.rejects(own.groups.leave("team-js"), (e) => e.code === "forbidden");
      await m2.groups.leave("team-js");
      await assert.rejects(m2.send({ group: "team-js", body: "x" }), (e) => e.code === "forbidden");

      await m1.groups.kick("team-js", ["gr_own"]).catch((e) => assert.equal(e.code, "forbidden"));
      await own.groups.kick("team-js", ["gr_m1"]);
      await waitFor(() => m1.log.msg.some((m) => m.data?.kind === "kick"), { what: "kick event to kicked" });

      await own.groups.dismiss("team-js");
      await assert.rejects(own.send({ group: "team-js", body: "x" }), (e) => e.code === "not_found");
      await assert.rejects(m2.groups.join("team-js"), (e) => e.code === "not_found");
    } finally {
      own.close();
      m1.close();
      m2.close();
    }
  });

  test("an open group can be joined; a closed one cannot", async () => {
    const own = await login(srv, "gj_own");
    const u = await login(srv, "gj_u");
    try {
      const { group } = await own.groups.create({ name: "lobby" });
      await assert.rejects(u.groups.join(group), (e) => e.code === "forbidden");
      await own.groups.update(group, { open: true });
      await u.groups.join(group);
      await waitFor(() => own.log.msg.some((m) => m.data?.kind === "join"), { what: "join event" });
      const r = await u.send({ group, body: "joined" });
      const h = await u.history(r.conv);
      assert.ok(h.msgs.length >= 1, "a member reads from the entry that added them");
      assert.equal(h.msgs.at(-1).body, "joined");
    } finally {
      own.close();
      u.close();
    }
  });

  // The server pushes a group event to every member device but the one that
  // caused it. That device learns of its change from the call's result only:
  // it gets no msg event for it, whether the entry turns up in a hole before
  // another member's message or in the catch-up of its next session, and a
  // hole of its own changes needs no history request. Its user's other
  // devices get the events.
  test("a device's own group changes are not delivered back to it", async () => {
    let histories = 0;
    const Sock = filteredSocket((f, deliver) => {
      if (f.op === "ok" && Array.isArray(f.msgs)) histories++;
      deliver();
    });
    const own = await login(srv, "go_own", "d1", { WebSocket: Sock });
    const other = await login(srv, "go_own", "d2");
    const m = await login(srv, "go_m");
    try {
      const { group, conv } = await own.groups.create({ name: "mine", members: ["go_m"] });
      await m.send({ group, body: "m1" });
      await waitFor(() => own.log.msg.length === 1, { what: "m1" });
      await own.groups.update(group, { notice: "n1" });
      await own.groups.invite(group, ["go_x"]);
      await own.groups.invite(group, ["go_x"]); // a member already: no event
      await own.groups.nick(group, "boss");
      const m2 = await m.send({ group, body: "m2" });
      await waitFor(() => own.log.msg.length >= 2, { what: "m2" });
      await sleep(100);
      assert.deepEqual(own.log.msg.map((e) => e.body), ["m1", "m2"]);
      assert.equal(histories, 0, "a hole of its own events is not fetched");
      assert.equal(own.lastSeq(conv), m2.seq);

      // A change whose event is not acked when the connection drops comes in
      // the next session's catch-up.
      await own.groups.update(group, { name: "ours" });
      const synced = own.next("synced");
      own.reconnect();
      await synced;
      const m3 = await m.send({ group, body: "m3" });
      await waitFor(() => own.log.msg.length >= 3, { what: "m3" });
      await sleep(100);
      assert.deepEqual(own.log.msg.map((e) => e.body), ["m1", "m2", "m3"]);
      assert.deepEqual(own.log.gap, []);
      assert.equal(own.lastSeq(conv), m3.seq);
      const st = (await own.sync()).find((c) => c.conv === conv);
      assert.equal(st.ack_seq, m3.seq, "its own events are acked");

      const kinds = (c) => c.log.msg.filter((e) => e.type === "event").map((e) => e.data.kind);
      assert.deepEqual(kinds(other), ["create", "update", "invite", "nick", "update"]);
      assert.deepEqual(kinds(m), kinds(other));
    } finally {
      own.close();
      other.close();
      m.close();
    }
  });

  test("friends: request, accept, list, remove, each with its push", async () => {
    const a = await login(srv, "f_ana");
    const b = await login(srv, "f_ben");
    try {
      await a.friends.request("f_ben", "hello there");
      await waitFor(() => b.log.friend.length === 1, { what: "request push" });
      assert.deepEqual(b.log.friend[0], { op: "friend", event: "request", from: "f_ana", note: "hello there" });
      const pending = await b.friends.list();
      assert.equal(pending.requests.length, 1);
      assert.equal(pending.requests[0].from, "f_ana");
      assert.equal(pending.requests[0].note, "hello there");

      await b.friends.accept("f_ana");
      await waitFor(() => a.log.friend.some((f) => f.event === "added"), { what: "added to a" });
      await waitFor(() => b.log.friend.some((f) => f.event === "added"), { what: "added to b" });
      assert.equal(a.log.friend.find((f) => f.event === "added").user, "f_ben");
      const la = await a.friends.list();
      assert.deepEqual(la.friends.map((f) => f.user), ["f_ben"]);
      assert.ok(la.friends[0].since > 0);

      await a.friends.remove("f_ben");
      await waitFor(() => b.log.friend.some((f) => f.event === "removed"), { what: "removed to b" });
      await sleep(50);
      assert.deepEqual((await b.friends.list()).friends, []);
    } finally {
      a.close();
      b.close();
    }
  });

  test("friends.list returns every request when they take more than one frame", async () => {
    const s2 = await new Server({ shards: 1, args: ["--max-frame", "8192"] }).start();
    try {
      const hub = await login(s2, "pf_hub");
      const note = "n".repeat(200);
      const want = [];
      for (let i = 0; i < 60; i++) {
        const id = `pf_u${String(i).padStart(2, "0")}`;
        const u = await login(s2, id);
        await u.friends.request("pf_hub", note);
        u.close();
        want.push(id);
      }
      // the hub's side is written after the requester's ok; its push follows it
      await waitFor(() => hub.log.friend.length === 60, { what: "60 request pushes" });
      const first = await hub.request("friend.list");
      assert.equal(first.more, true, "one frame does not hold 60");
      const all = await hub.friends.list();
      assert.deepEqual(all.requests.map((r) => r.from), want, "every request once, in id order");
      assert.deepEqual(all.friends, []);
      hub.close();
    } finally {
      await s2.dispose();
    }
  });
});
