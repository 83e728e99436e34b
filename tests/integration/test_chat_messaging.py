"""
Messaging (PROTOCOL §4-5) against live ringpushd processes: send and its every
error, multi-device pushes, offline catch-up with and without acks,
catchup_limit with history filling the gap, read/unread across devices,
sync, history, recall rules, and dedup across restarts (SIGTERM and SIGKILL).
"""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import msgpack

import rptest
from rptest import Server, expect_error, expect_ok


def login(srv, user, device="d1", resume=True):
    """A session; with resume, the catch-up pushes up to synced are returned too."""
    c = srv.login(user, device, resume=resume)
    got = []
    if resume:
        while True:
            p = c.push(timeout=10)
            if p["op"] == "synced":
                break
            got.append(p)
    return c, got


def port_released(srv, timeout=10.0):
    """After a SIGKILL the kernel tears the io_uring instance down asynchronously,
    and the dead server's listener may accept (and reset) for a moment: wait
    until the port refuses."""
    def refused():
        try:
            socket.create_connection((srv.host, srv.port), timeout=0.5).close()
            return False
        except OSError:
            return True
    rptest.wait_until(refused, timeout, what="the killed server's port to close")


def msgs(c, n, timeout=10):
    return [c.push("msg", timeout=timeout) for _ in range(n)]


def test_send_push_multi_device_and_errors():
    with Server(shards=2) as srv:
        a1, _ = login(srv, "alice", "phone")
        a2, _ = login(srv, "alice", "laptop")
        b1, _ = login(srv, "bob", "phone")
        r = expect_ok(a1.send_message(to="bob", body="hi", cmid="m1"))
        assert r["conv"] == "d:alice:bob" and r["seq"] == 1 and isinstance(r["ts"], int), r
        assert "dup" not in r, r
        for c in (b1, a2):
            p = c.push("msg")
            assert p == {"op": "msg", "conv": "d:alice:bob", "seq": 1, "from": "alice",
                         "dev": "phone", "cmid": "m1", "type": "text", "body": "hi",
                         "ts": r["ts"]}, p
        a1.no_push(0.3, op="msg")  # not to the sending device
        # body keeps its msgpack type; any type name the server does not reserve
        r = expect_ok(b1.send_message(to="alice", body=b"\x00\xff", type="x-custom"))
        for c in (a1, a2):
            p = c.push("msg")
            assert p["body"] == b"\x00\xff" and p["type"] == "x-custom" and p["seq"] == 2, p
        # to oneself: one conversation d:bob:bob, the other devices get it
        b2, _ = login(srv, "bob", "tablet")
        r = expect_ok(b1.send_message(to="bob", body="note"))
        assert r["conv"] == "d:bob:bob" and r["seq"] == 1, r
        assert b2.push("msg")["conv"] == "d:bob:bob"
        b1.no_push(0.3, op="msg")
        # every error of send; the connection stays usable after each
        big = "x" * 32769
        cases = [
            ({"to": "bob", "group": "g", "cmid": "e1", "type": "text", "body": "x"}, "bad_request"),
            ({"cmid": "e2", "type": "text", "body": "x"}, "bad_request"),
            ({"to": "bob", "type": "text", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e3", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e4", "type": "text"}, "bad_request"),
            ({"to": "bob", "cmid": "", "type": "text", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "c" * 65, "type": "text", "body": "x"}, "bad_request"),
            ({"to": "bo b", "cmid": "e5", "type": "text", "body": "x"}, "bad_request"),
            ({"to": "b" * 65, "cmid": "e6", "type": "text", "body": "x"}, "bad_request"),
            ({"to": 7, "cmid": "e7", "type": "text", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e8", "type": "t" * 17, "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e9", "type": "event", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e10", "type": "recall", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e11", "type": "recalled", "body": "x"}, "bad_request"),
            ({"to": "bob", "cmid": "e12", "type": "text", "body": 5}, "bad_request"),
            ({"to": "bob", "cmid": "e13", "type": "text", "body": big}, "too_large"),
            ({"group": "nosuch", "cmid": "e14", "type": "text", "body": "x"}, "not_found"),
        ]
        for fields, code in cases:
            rid = a1.new_id()
            expect_error(a1.request("send", fields, _id=rid), code, rid)
        a1.ping()
        b1.no_push(0.3, op="msg")
        # nothing of the refused sends was appended
        r = expect_ok(a1.send_message(to="bob", body="after"))
        assert r["seq"] == 3, r
        # an unknown op, and a known op with a missing field
        expect_error(a1.request("frobnicate"), "bad_request")
        expect_error(a1.request("read", conv="d:alice:bob"), "bad_request")
        expect_error(a1.request("history", conv="not-a-conv"), "bad_request")
        a1.ping()


def test_str_body_is_kept_byte_for_byte():
    """The server does not interpret a body (PROTOCOL §2): a str that is not
    valid UTF-8 is stored and delivered as that str, byte for byte, in the
    push, the catch-up and history."""
    body = b"ok\xff\xfe\xed\xa0\x80"
    packed_body = bytes([0xa0 | len(body)]) + body  # a fixstr, not a bin
    with Server(shards=2) as srv:
        a, _ = login(srv, "alice")
        rid = a.new_id()
        a.send_raw(rptest.raw_frame(
            b"\x86" + msgpack.packb("op") + msgpack.packb("send") + msgpack.packb("id") +
            msgpack.packb(rid) + msgpack.packb("to") + msgpack.packb("bob") +
            msgpack.packb("cmid") + msgpack.packb("c1") + msgpack.packb("type") +
            msgpack.packb("text") + msgpack.packb("body") + packed_body))
        assert expect_ok(a.reply(rid))["seq"] == 1

        # bob reads with a decoder that keeps str bytes as they are
        s = socket.create_connection((srv.host, int(srv.port)), timeout=10)
        s.sendall(rptest.frame({"op": "hello", "id": 1, "token": srv.token("bob"),
                                "device": "d", "resume": True}))
        s.sendall(rptest.frame({"op": "history", "id": 2, "conv": "d:alice:bob"}))
        buf, frames = b"", []
        while len(frames) < 4:  # hello ok, the catch-up's msg, synced, history
            chunk = s.recv(65536)
            assert chunk, frames
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                frames.append(buf[4:4 + n])
                buf = buf[4 + n:]
        s.close()
        want = msgpack.packb("body") + packed_body
        pushes = [f for f in frames if msgpack.unpackb(f, raw=True).get(b"op") == b"msg"]
        assert len(pushes) == 1 and want in pushes[0], frames
        hist = [f for f in frames if msgpack.unpackb(f, raw=True).get(b"id") == 2]
        assert len(hist) == 1 and want in hist[0], frames


def test_ack_past_the_last_entry():
    """An ack beyond the conversation's last seq counts up to the last entry:
    the entries written after it still reach the device, live and in a later
    session's catch-up."""
    with Server(shards=2) as srv:
        a, _ = login(srv, "alice")
        expect_ok(a.send_message(to="bob", body="m1"))
        b, got = login(srv, "bob", "phone")
        assert [p["seq"] for p in got] == [1], got
        b.ack("d:alice:bob", 100)
        b.ping()
        (conv,) = expect_ok(b.request("sync"))["convs"]
        assert (conv["last_seq"], conv["ack_seq"]) == (1, 1), conv
        expect_ok(a.send_message(to="bob", body="m2"))
        assert b.push("msg")["seq"] == 2
        b.close()
        time.sleep(0.3)
        b, got = login(srv, "bob", "phone")
        assert [p["seq"] for p in got] == [2], got
        for i in range(3):
            expect_ok(a.send_message(to="bob", body="live%d" % i))
        assert [b.push("msg")["seq"] for _ in range(3)] == [3, 4, 5]


def test_pushes_during_catchup_come_after_synced():
    """A read receipt or a friend request for a device that is catching up is
    held back with the live entries and comes after synced."""
    with Server(shards=2, args=["--rate-limit", "1000000", "--rate-burst", "1000000"]) as srv:
        stuck_catchup_for(srv, "bob")
        alice = srv.login("alice", "x", resume=False)
        phone = srv.login("bob", "phone", resume=False)
        expect_ok(phone.send_message(to="alice", body="hi"))
        tablet = srv.client()
        tablet.send({"op": "hello", "id": 1, "token": srv.token("bob"), "device": "tablet",
                     "resume": True})
        time.sleep(1.0)  # the tablet's catch-up is under way and stuck
        expect_ok(alice.request("read", conv="d:alice:bob", seq=1))
        expect_ok(alice.request("friend.request", user="bob"))
        ops = []
        while not ops or ops[-1] != "synced":
            ops.append(tablet.recv(30)["op"])
        assert ops[0] == "ok" and ops.count("msg") == 601, ops[:3]
        after = [tablet.recv(10)["op"] for _ in range(2)]
        assert sorted(after) == ["friend", "read"], after


def test_pushes_held_during_catchup_are_bounded_by_bytes():
    """A device catching up holds the live pushes meanwhile up to half the
    outbound queue's bound in bytes, however many they are (4,000 small ones
    here); past that it is closed with bye slow."""
    with Server(shards=2, args=["--rate-limit", "1000000", "--rate-burst", "1000000"]) as srv:
        stuck_catchup_for(srv, "hub")
        tablet = srv.client()
        tablet.send({"op": "hello", "id": 1, "token": srv.token("hub"), "device": "t",
                     "resume": True})
        time.sleep(1.0)  # the catch-up waits for a client that does not read
        bob = srv.login("bob", "x", resume=False)
        # one pipeline, under the 4,096 requests one conversation queues
        n = 4000
        bob.send_raw(b"".join(rptest.frame({"op": "send", "id": 100 + i, "to": "hub",
                                            "cmid": "s%d" % i, "type": "text", "body": "z"})
                              for i in range(n)))
        for i in range(n):
            expect_ok(bob.reply(100 + i, 60))
        ops = {}
        while True:
            op = tablet.recv(30)["op"]
            ops[op] = ops.get(op, 0) + 1
            if op == "synced":
                break
        seqs = [tablet.recv(10)["seq"] for _ in range(n)]
        assert seqs == list(range(1, n + 1)), seqs[:5]
        tablet.close()
        # the same again with 160 pushes of 30 KB: past 2 MiB held, bye slow
        tablet = srv.client()
        tablet.send({"op": "hello", "id": 1, "token": srv.token("hub"), "device": "t2",
                     "resume": True})
        time.sleep(1.0)
        for i in range(160):
            expect_ok(bob.send_message(to="hub", body="w" * 30000, cmid="w%d" % i))
        while True:
            f = tablet.recv(30)
            if f["op"] == "bye":
                assert f["reason"] == "slow", f
                break
            assert f["op"] in ("ok", "msg"), f


def stuck_catchup_for(srv, user):
    """Enough entries for user (600 of 30 KB) that a catch-up outgrows the
    outbound queue and the socket buffers, and waits for the client."""
    for sender in ("s1", "s2", "s3"):
        c = srv.login(sender, "x", resume=False)
        c.send_raw(b"".join(rptest.frame({
            "op": "send", "id": 100 + i, "to": user, "cmid": "c%d" % i, "type": "text",
            "body": "y" * 30000}) for i in range(200)))
        for i in range(200):
            expect_ok(c.reply(100 + i, 60))
        c.close()


def test_offline_catchup_with_and_without_acks():
    with Server(shards=2) as srv:
        a, _ = login(srv, "alice")
        sent = [expect_ok(a.send_message(to="bob", body="m%d" % i)) for i in range(5)]
        assert [r["seq"] for r in sent] == [1, 2, 3, 4, 5]
        # bob's phone has acked nothing: everything, oldest first, then synced
        b, got = login(srv, "bob", "phone")
        assert [(p["seq"], p["body"]) for p in got] == [(i + 1, "m%d" % i) for i in range(5)], got
        b.ack("d:alice:bob", 3)
        b.ping()  # the ack is handled before the ping
        b.close()
        time.sleep(0.3)
        b, got = login(srv, "bob", "phone")
        assert [p["seq"] for p in got] == [4, 5], got
        # a stale ack never moves the cursor back
        b.ack("d:alice:bob", 1)
        b.ack("d:alice:bob", 5)
        b.ping()
        b.close()
        time.sleep(0.3)
        b, got = login(srv, "bob", "phone")
        assert got == [], got
        # the cursor is per device: the tablet acked nothing
        t, got = login(srv, "bob", "tablet")
        assert [p["seq"] for p in got] == [1, 2, 3, 4, 5], got
        # resume false: no catch-up, no synced, live pushes at once
        n = srv.login("bob", "watch", resume=False)
        expect_ok(a.send_message(to="bob", body="live"))
        assert n.push("msg")["seq"] == 6
        assert [p["op"] for p in n.drain(0.3)] == []
        for c in (b, t):
            assert c.push("msg")["seq"] == 6
        # acks survive a restart (the cursor is persisted)
        b.ack("d:alice:bob", 6)
        b.ping()
        time.sleep(0.3)
        for c in (a, b, t, n):
            c.close()
        srv.restart()
        b, got = login(srv, "bob", "phone")
        assert got == [], got
        t, got = login(srv, "bob", "tablet")
        assert [p["seq"] for p in got] == [1, 2, 3, 4, 5, 6], got


def test_catchup_limit_and_history_fill_the_gap():
    with Server(shards=2, args=["--catchup-limit", "5"]) as srv:
        a, _ = login(srv, "alice")
        for i in range(12):
            expect_ok(a.send_message(to="carol", body="n%d" % i))
        for i in range(3):
            expect_ok(a.send_message(to="dave", body="d%d" % i))
        c, got = login(srv, "carol")
        # the newest five, oldest first; the client sees the gap below seq 8
        assert [p["seq"] for p in got] == [8, 9, 10, 11, 12], got
        h = expect_ok(c.request("history", conv="d:alice:carol", before=8))
        assert [m["seq"] for m in h["msgs"]] == list(range(1, 8)) and h["more"] is False, h
        assert h["msgs"][0]["body"] == "n0" and h["msgs"][0]["op"] == "msg", h
        # paging both ways
        h = expect_ok(c.request("history", conv="d:alice:carol", before=8, limit=3))
        assert [m["seq"] for m in h["msgs"]] == [5, 6, 7] and h["more"] is True, h
        h = expect_ok(c.request("history", conv="d:alice:carol", after=9, limit=2))
        assert [m["seq"] for m in h["msgs"]] == [10, 11] and h["more"] is True, h
        h = expect_ok(c.request("history", conv="d:alice:carol", after=10))
        assert [m["seq"] for m in h["msgs"]] == [11, 12] and h["more"] is False, h
        h = expect_ok(c.request("history", conv="d:alice:carol"))
        assert [m["seq"] for m in h["msgs"]] == list(range(1, 13)) and h["more"] is False, h
        h = expect_ok(c.request("history", conv="d:alice:carol", before=1))
        assert h["msgs"] == [] and h["more"] is False, h
        expect_error(c.request("history", conv="d:alice:carol", limit=201), "bad_request")
        expect_error(c.request("history", conv="d:alice:carol", limit=0), "bad_request")
        expect_error(c.request("history", conv="d:alice:carol", before=3, after=1),
                     "bad_request")
        # not a member of that direct conversation
        expect_error(c.request("history", conv="d:alice:dave"), "forbidden")
        # a page that would not fit in max_frame is shortened, with more
    with Server(shards=2, args=["--max-frame", "8192", "--max-body", "2000"]) as srv:
        a, _ = login(srv, "alice")
        for i in range(10):
            expect_ok(a.send_message(to="erin", body="y" * 1900))
        h = expect_ok(a.request("history", conv="d:alice:erin"))
        seqs = [m["seq"] for m in h["msgs"]]
        assert h["more"] is True and 1 <= len(seqs) < 10 and seqs[-1] == 10, seqs
        assert seqs == list(range(seqs[0], 11)), seqs


def test_read_unread_across_devices_and_sync():
    with Server(shards=2) as srv:
        a1, _ = login(srv, "alice", "phone")
        a2, _ = login(srv, "alice", "laptop")
        b1, _ = login(srv, "bob", "phone")
        for i in range(4):
            expect_ok(b1.send_message(to="alice", body="x%d" % i))
        time.sleep(0.05)
        expect_ok(b1.send_message(to="carol", body="later"))  # newer last_ts
        for c in (a1, a2):
            msgs(c, 4)
        s = expect_ok(a1.request("sync"))["convs"]
        assert s == [{"conv": "d:alice:bob", "last_seq": 4, "last_ts": s[0]["last_ts"],
                      "read_seq": 0, "ack_seq": 0, "unread": 4}], s
        a1.ack("d:alice:bob", 2)
        r = expect_ok(a1.request("read", conv="d:alice:bob", seq=3))
        assert r == {"op": "ok", "id": r["id"]}, r
        # the user's other device and the peer get a read push; not the reader
        for c in (a2, b1):
            p = c.push("read")
            assert p == {"op": "read", "conv": "d:alice:bob", "user": "alice", "seq": 3}, p
        a1.no_push(0.3, op="read")
        s = expect_ok(a1.request("sync"))["convs"][0]
        assert (s["read_seq"], s["ack_seq"], s["unread"]) == (3, 2, 1), s
        s = expect_ok(a2.request("sync"))["convs"][0]
        assert (s["read_seq"], s["ack_seq"], s["unread"]) == (3, 0, 1), s
        # a read that does not move the cursor: ok, no push; above last_seq: clamped
        expect_ok(a2.request("read", conv="d:alice:bob", seq=2))
        a1.no_push(0.3, op="read")
        expect_ok(a2.request("read", conv="d:alice:bob", seq=99))
        assert a1.push("read")["seq"] == 4
        assert b1.push("read")["seq"] == 4
        s = expect_ok(a1.request("sync"))["convs"][0]
        assert (s["read_seq"], s["unread"]) == (4, 0), s
        expect_error(a1.request("read", conv="d:alice:zoe", seq=1), "not_found")
        expect_error(a1.request("read", conv="d:bob:carol", seq=1), "not_found")
        # sending implies reading, with no read push
        expect_ok(b1.send_message(to="alice", body="more"))
        r = expect_ok(a1.send_message(to="bob", body="reply"))
        a2.push("msg")
        a2.push("msg")
        s = expect_ok(a2.request("sync"))["convs"][0]
        assert (s["last_seq"], s["read_seq"], s["unread"]) == (6, 6, 0), s
        a2.no_push(0.3, op="read")
        # bob's sync: newest last_ts first
        s = expect_ok(b1.request("sync"))["convs"]
        assert [x["conv"] for x in s] == ["d:alice:bob", "d:bob:carol"], s
        assert s[0]["last_ts"] >= s[1]["last_ts"], s
        # the read cursor is persisted across a restart
        for c in (a1, a2, b1):
            c.close()
        time.sleep(0.3)
        srv.restart()
        a3, _ = login(srv, "alice", "tablet")
        s = expect_ok(a3.request("sync"))["convs"][0]
        assert (s["last_seq"], s["read_seq"], s["unread"], s["ack_seq"]) == (6, 6, 0, 0), s


def test_read_below_joined_seq_moves_nothing():
    """A member's read cursor counts from joined_seq - 1 (sync never reports
    less), so a read at or below that moves nothing and pushes nothing: a read
    push never tells a device less than sync does. For a member who logged in
    after being invited and one online when invited."""
    with Server(shards=2) as srv:
        a = srv.login("alice")
        d1, _ = login(srv, "dave", "d1")
        d2, _ = login(srv, "dave", "d2")
        expect_ok(a.request("group.create", group="late", name="L"))  # seq 1
        for i in range(5):
            expect_ok(a.send_message(group="late", body="x%d" % i))  # 2..6
        expect_ok(a.request("group.invite", group="late", users=["carol", "dave"]))  # 7
        expect_ok(a.send_message(group="late", body="y"))  # 8
        c1, _ = login(srv, "carol", "c1")
        c2, _ = login(srv, "carol", "c2")
        for d in (d1, d2):
            assert [m["seq"] for m in msgs(d, 2)] == [7, 8]

        def row(c):
            x = expect_ok(c.request("sync"))["convs"][0]
            return (x["conv"], x["last_seq"], x["read_seq"], x["unread"])
        for (r1, r2) in ((c1, c2), (d1, d2)):
            assert row(r1) == ("g:late", 8, 6, 2)
            for seq in (3, 6):
                expect_ok(r1.request("read", conv="g:late", seq=seq))
                r2.no_push(0.3, op="read")
                assert row(r2) == ("g:late", 8, 6, 2)
            expect_ok(r1.request("read", conv="g:late", seq=7))
            user = "carol" if r1 is c1 else "dave"
            assert r2.push("read") == {"op": "read", "conv": "g:late", "user": user, "seq": 7}
            assert row(r2) == ("g:late", 8, 7, 1)


def test_own_events_and_recalls_are_read():
    """What a user does to a conversation (a group event, a recall) is read by
    that user, as a send is: it raises the others' unread count, not theirs.
    Leaving takes the group out of the user's list instead."""
    with Server(shards=2) as srv:
        a = srv.login("alice")
        b = srv.login("bob")

        def unread(c, conv):
            for x in expect_ok(c.request("sync"))["convs"]:
                if x["conv"] == conv:
                    return (x["last_seq"], x["read_seq"], x["unread"])
            return None
        expect_ok(a.request("group.create", group="rd", name="R", members=["bob"]))
        b.push("msg")
        assert unread(a, "g:rd") == (1, 1, 0)
        assert unread(b, "g:rd") == (1, 0, 1)
        expect_ok(a.request("group.update", group="rd", name="R2"))
        b.push("msg")
        assert unread(a, "g:rd") == (2, 2, 0)
        sent = expect_ok(b.send_message(group="rd", body="hi"))
        a.push("msg")
        expect_ok(b.request("recall", conv="g:rd", seq=sent["seq"]))
        a.push("msg")
        assert unread(b, "g:rd") == (4, 4, 0)
        assert unread(a, "g:rd") == (4, 2, 2)
        expect_ok(b.request("group.leave", group="rd"))
        assert unread(b, "g:rd") is None


RECALL_WINDOW_S = 4  # long enough for the steps below on a loaded machine


def test_recall_rules():
    with Server(shards=2, args=["--recall-window", str(RECALL_WINDOW_S)]) as srv:
        a1, _ = login(srv, "alice", "phone")
        a2, _ = login(srv, "alice", "laptop")
        b, _ = login(srv, "bob")
        s1 = expect_ok(a1.send_message(to="bob", body="oops", cmid="r1"))["seq"]
        r2 = expect_ok(a1.send_message(to="bob", body=b"bin", cmid="r2"))
        s2 = r2["seq"]
        msgs(b, 2)
        msgs(a2, 2)
        expect_error(b.request("recall", conv="d:alice:bob", seq=s1), "forbidden")
        r = expect_ok(a1.request("recall", conv="d:alice:bob", seq=s1))
        assert r["seq"] == 3, r
        for c in (b, a2):
            p = c.push("msg")
            assert (p["type"], p["target"], p["seq"], p["from"], p["body"]) == \
                ("recall", s1, 3, "alice", ""), p
        a1.no_push(0.3, op="msg")
        h = expect_ok(b.request("history", conv="d:alice:bob"))["msgs"]
        assert (h[0]["type"], h[0]["body"], h[0]["cmid"]) == ("recalled", "", "r1"), h
        assert h[1]["body"] == b"bin" and h[2]["type"] == "recall", h
        # recalled, recall entries and missing seqs: not_found
        expect_error(a1.request("recall", conv="d:alice:bob", seq=s1), "not_found")
        expect_error(a1.request("recall", conv="d:alice:bob", seq=3), "not_found")
        expect_error(a1.request("recall", conv="d:alice:bob", seq=99), "not_found")
        expect_error(a1.request("recall", conv="d:bob:carol", seq=1), "forbidden")
        expect_error(a1.request("recall", conv="bad", seq=1), "bad_request")
        # past the window of s2, counted from its ts (the server's wall clock)
        time.sleep(max(0.0, r2["ts"] / 1000.0 + RECALL_WINDOW_S + 0.3 - time.time()))
        expect_error(a1.request("recall", conv="d:alice:bob", seq=s2), "expired")
        # a bin body is recalled as an empty bin
        s4 = expect_ok(a1.send_message(to="bob", body=b"zz"))["seq"]
        expect_ok(a1.request("recall", conv="d:alice:bob", seq=s4))
        h = expect_ok(b.request("history", conv="d:alice:bob", after=s4 - 1, limit=1))["msgs"]
        assert (h[0]["type"], h[0]["body"]) == ("recalled", b""), h


def test_cursors_are_written_within_their_delay():
    """Moved cursors may wait cursor_delay_ms for their write: a crash just
    after an ack loses it (the device gets those entries again, never a hole),
    as it loses the read cursor that sends moved, which a retry answered dup
    moves again; a crash once the delay is over loses neither (an idle server
    wakes for them); a
    SIGTERM writes them at once."""
    conv = "d:cda:cdb"
    r = subprocess.run([rptest.server_binary(), "--secret", "s", "--cursor-delay-ms", "60001"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "cursor-delay-ms must be 0..60000" in r.stderr, r
    with Server(shards=2, args=["--cursor-delay-ms", "3000"]) as srv:
        a, _ = login(srv, "cda")
        sent = [expect_ok(a.send_message(to="cdb", body="m%d" % i, cmid="c%d" % i))["seq"]
                for i in range(4)]
        assert sent == [1, 2, 3, 4], sent
        b, got = login(srv, "cdb")
        assert [p["seq"] for p in got] == sent, got
        b.ack(conv, 2)
        b.ping()
        srv.kill()
        port_released(srv)
        srv.start()
        b, got = login(srv, "cdb")
        assert [p["seq"] for p in got] == sent, got
        a, _ = login(srv, "cda")
        convs = expect_ok(a.request("sync"))["convs"]
        assert [(c["read_seq"], c["unread"]) for c in convs] == [(0, 4)], convs
        # a retry reads its entry again; an older one moves nothing back
        for cmid, read in (("c2", 3), ("c0", 3)):
            r = expect_ok(a.send_message(to="cdb", body="again", cmid=cmid))
            assert r.get("dup") is True, r
            convs = expect_ok(a.request("sync"))["convs"]
            assert [(c["read_seq"], c["unread"]) for c in convs] == [(read, 4 - read)], convs
        assert expect_ok(a.send_message(to="cdb", body="m4"))["seq"] == 5
        assert b.push("msg")["seq"] == 5
        b.ack(conv, 5)
        b.ping()
        assert metric(srv, "ringpush_cursors_waiting") > 0
        # written once the delay (3 s) is over, by an otherwise idle server
        t0 = time.monotonic()
        rptest.wait_until(lambda: metric(srv, "ringpush_cursors_waiting") == 0, 20,
                          what="the waiting cursors to be written")
        took = time.monotonic() - t0
        assert 1.5 < took < 3.9, "written %.2f s after the ack, not after the delay" % took
        srv.kill()
        port_released(srv)
        srv.start()
        b, got = login(srv, "cdb")
        assert got == [], got
        a, _ = login(srv, "cda")
        convs = expect_ok(a.request("sync"))["convs"]
        assert [(c["read_seq"], c["unread"]) for c in convs] == [(5, 0)], convs
        assert expect_ok(a.send_message(to="cdb", body="m5"))["seq"] == 6
        assert b.push("msg")["seq"] == 6
        b.ack(conv, 6)
        expect_ok(b.request("read", conv=conv, seq=6))
        for c in (a, b):
            c.close()
        srv.restart()
        b, got = login(srv, "cdb")
        assert got == [], got
        convs = expect_ok(b.request("sync"))["convs"]
        assert [(c["read_seq"], c["ack_seq"], c["unread"]) for c in convs] == [(6, 6, 0)], convs
        a, _ = login(srv, "cda")
        convs = expect_ok(a.request("sync"))["convs"]
        assert [(c["read_seq"], c["unread"]) for c in convs] == [(6, 0)], convs
        a.close()
        # a retry from the backend while the sender is offline writes nothing
        # over the cursor stored
        m = {"from": "cda", "to": "cdb", "type": "text", "body": "again", "cmid": "c1"}
        status, dup = srv.admin("POST", "/v1/messages", body=m)
        assert status == 200 and dup.get("dup") is True and dup["seq"] == 2, (status, dup)
        srv.restart()
        a, _ = login(srv, "cda")
        convs = expect_ok(a.request("sync"))["convs"]
        assert [(c["read_seq"], c["unread"]) for c in convs] == [(6, 0)], convs


def test_dedup_across_restarts():
    with Server(shards=2) as srv:
        a, _ = login(srv, "alice")
        b, _ = login(srv, "bob")
        first = expect_ok(a.send_message(to="bob", body="once", cmid="same"))
        other = expect_ok(a.send_message(to="bob", body="two", cmid="other"))
        msgs(b, 2)
        again = expect_ok(a.send_message(to="bob", body="retry", cmid="same"))
        assert again == dict(first, id=again["id"], dup=True), (first, again)
        b.no_push(0.3, op="msg")
        # the same cmid from another sender, or in another conversation, is new
        r = expect_ok(b.send_message(to="alice", body="b's", cmid="same"))
        assert r["seq"] == 3 and "dup" not in r, r
        r = expect_ok(a.send_message(to="carol", body="c's", cmid="same"))
        assert r["seq"] == 1 and "dup" not in r, r
        for c in (a, b):
            c.close()
        for how in ("term", "kill"):
            if how == "term":
                srv.restart()
            else:
                srv.kill()
                port_released(srv)
                srv.start()
            a, _ = login(srv, "alice", "d2")
            b = srv.login("bob", "d9", resume=False)
            again = expect_ok(a.send_message(to="bob", body="after " + how, cmid="same"))
            assert (again["conv"], again["seq"], again["ts"], again.get("dup")) == \
                (first["conv"], first["seq"], first["ts"], True), (first, again)
            again = expect_ok(a.send_message(to="bob", body="x", cmid="other"))
            assert (again["seq"], again["ts"], again.get("dup")) == \
                (other["seq"], other["ts"], True), again
            b.no_push(0.3, op="msg")
            a.close()
            b.close()
        # the counter survived: a new cmid takes the next seq
        a, _ = login(srv, "alice", "d3")
        assert expect_ok(a.send_message(to="bob", body="new", cmid="new"))["seq"] == 4


def test_dedup_window_to_the_millisecond():
    """A cmid is remembered for dedup_window from its entry's ts, to the
    millisecond: a retry 150 ms past it is a new send, one 300 ms within it a
    dup. (Memory expires records once a second, which alone would remember a
    cmid up to a second longer.) Ten originals 100 ms apart meet that tick at
    every phase. The bounds taken from this side's clock allow 50 ms."""
    window = 1.0
    with Server(shards=2, args=["--dedup-window", "1"]) as srv:
        a, _ = login(srv, "alice")
        plan = []  # (when to retry, cmid, original, when it was sent, when its ok came)
        for i in range(10):
            for cmid in ("late%d" % i, "young%d" % i):
                sent = time.monotonic()
                first = expect_ok(a.send_message(to="bob", body="x", cmid=cmid))
                acked = time.monotonic()
                when = acked + window + 0.15 if cmid.startswith("late") else sent + window - 0.3
                plan.append((when, cmid, first, sent, acked))
            time.sleep(0.1)
        checked = {"late": 0, "young": 0}
        for when, cmid, first, sent, acked in sorted(plan, key=lambda p: p[0]):
            time.sleep(max(0.0, when - time.monotonic()))
            t = time.monotonic()
            r = expect_ok(a.send_message(to="bob", body="x", cmid=cmid))
            if cmid.startswith("late"):
                # the original's ts came before its ok: the retry is older than this
                if t - acked > window + 0.05:
                    assert "dup" not in r and r["seq"] > first["seq"], (cmid, first, r)
                    assert r["ts"] - first["ts"] > window * 1000, (cmid, first, r)
                    checked["late"] += 1
            elif time.monotonic() - sent < window - 0.05:
                # the retry's answer came after it was checked: it was younger
                assert r == dict(first, id=r["id"], dup=True), (cmid, first, r)
                checked["young"] += 1
        assert checked["late"] == 10 and checked["young"] >= 5, checked


def test_admin_send_reaches_every_device_of_the_sender():
    with Server(shards=2) as srv:
        status, body = srv.admin("GET", "/v1/users/probe")
        a1, _ = login(srv, "alice", "phone")
        a2, _ = login(srv, "alice", "laptop")
        b, _ = login(srv, "bob")
        first = expect_ok(a1.send_message(to="bob", body="from a client", cmid="k1"))
        msgs(b, 1)
        msgs(a2, 1)
        m = {"from": "alice", "to": "bob", "type": "text", "body": "from the backend",
             "cmid": "k2"}
        status, sent = srv.admin("POST", "/v1/messages", body=m)
        assert status == 200 and (sent["conv"], sent["seq"]) == ("d:alice:bob", 2), sent
        for c in (a1, a2, b):
            p = c.push("msg")
            assert (p["seq"], p["from"], p["dev"], p["body"]) == \
                (2, "alice", "", "from the backend"), p
        # dedup is shared with the client's sends of the same sender
        status, dup = srv.admin("POST", "/v1/messages", body=dict(m, cmid="k1"))
        assert status == 200 and dup.get("dup") is True and dup["seq"] == first["seq"], dup
        assert dup["ts"] == first["ts"], (dup, first)
        b.no_push(0.3, op="msg")
        # sending implies reading for the sender
        s = expect_ok(a2.request("sync"))["convs"][0]
        assert (s["last_seq"], s["read_seq"], s["unread"]) == (2, 2, 0), s
        # the rules of a client send
        status, err = srv.admin("POST", "/v1/messages",
                                body={"from": "carol", "group": "nosuch", "type": "text",
                                      "body": "x", "cmid": "k3"})
        assert status == 404 and err["code"] == "not_found", (status, err)
        status, err = srv.admin("POST", "/v1/messages", body=dict(m, type="event", cmid="k4"))
        assert status == 400 and err["code"] == "bad_request", (status, err)
        expect_ok(a1.request("group.create", group="club", name="Club"))
        status, err = srv.admin("POST", "/v1/messages",
                                body={"from": "bob", "group": "club", "type": "text",
                                      "body": "x", "cmid": "k5"})
        assert status == 403 and err["code"] == "forbidden", (status, err)


def test_push_right_after_login_while_state_loads():
    """A user with many conversations logs in (its state dropped at its last
    logout, so it is read anew): a direct and a group message sent as soon as
    the hello ok arrives are pushed to it, with resume false and true
    (PROTOCOL §4-5: a device is online from its hello ok)."""
    nconv = 1500
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        rick, _ = login(srv, "rick", "d", resume=False)
        # pete and d:pete:rick live on the shard that is not rick's home (2
        # shards, FNV-1a): the sends do not queue behind rick's state reads
        pete, _ = login(srv, "pete", "d", resume=False)
        expect_ok(pete.request("group.create", group="crew", name="Crew", members=["rick"]))
        # many conversations make the state of rick slow to read
        first = rick.next_id
        rick.send_raw(b"".join(
            rptest.frame({"op": "send", "id": first + i, "to": "u%d" % i, "cmid": "bulk%d" % i,
                          "type": "text", "body": "x"}) for i in range(nconv)))
        rick.next_id += nconv
        for i in range(nconv):
            expect_ok(rick.reply(first + i, 30))
        rick.close()
        n = 0
        for rnd in range(6):
            resume = rnd % 2 == 1
            time.sleep(0.2)  # the last session is gone: the state is dropped
            c = rptest.Client(srv)
            c.send({"op": "hello", "id": 1, "token": srv.token("rick"), "device": "d",
                    "resume": resume})
            expect_ok(c.reply(1, 30))
            n += 1
            dm = expect_ok(pete.send_message(to="rick", body="dm %d" % n))
            grp = expect_ok(pete.send_message(group="crew", body="grp %d" % n))
            want = {(dm["conv"], dm["seq"]), (grp["conv"], grp["seq"])}
            deadline = time.monotonic() + 5
            while want and time.monotonic() < deadline:
                try:
                    p = c.push("msg", timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                want.discard((p["conv"], p["seq"]))
            assert not want, "round %d (resume %s): not pushed: %r" % (rnd, resume, want)
            # what it got is acked, so the next resume starts after it
            for conv, seq in ((dm["conv"], dm["seq"]), (grp["conv"], grp["seq"])):
                c.send({"op": "ack", "conv": conv, "seq": seq})
            c.ping()
            c.close()

def pipelined(c, frames, timeout=30):
    """Send frames in one write; return their replies in order."""
    first = c.next_id
    c.send_raw(b"".join(rptest.frame(dict(f, id=first + i)) for i, f in enumerate(frames)))
    c.next_id += len(frames)
    return [c.reply(first + i, timeout) for i in range(len(frames))]


def test_ids_of_full_length():
    """User and group ids may be 64 bytes (§2), so a direct conversation's id
    may be 131: two users with UUID ids, a user writing to themself, a group
    id of 64 bytes."""
    a_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    b_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    long_a, long_b = "a" * 64, "b" * 64
    with Server(shards=2) as srv:
        a, _ = login(srv, a_id)
        b, _ = login(srv, b_id)
        seq = expect_ok(a.send_message(to=b_id, body="hi"))["seq"]
        p = b.push("msg")
        assert p["conv"] == "d:%s:%s" % (a_id, b_id) and p["seq"] == seq
        expect_ok(a.send_message(to=a_id, body="note to self"))
        expect_ok(a.request("group.create", name="G", group="g" * 64))
        la, _ = login(srv, long_a)
        lb, _ = login(srv, long_b)
        expect_ok(la.send_message(to=long_b, body="x"))
        conv = "d:%s:%s" % (long_a, long_b)
        assert lb.push("msg")["conv"] == conv
        page = expect_ok(lb.request("history", conv=conv))
        assert [m["body"] for m in page["msgs"]] == ["x"]
        for c in (a, b, la, lb):
            c.close()
        srv.restart()
        lb, got = login(srv, long_b, "d2")
        assert [(m["conv"], m["seq"]) for m in got] == [(conv, 1)]
        lb.close()


def test_sync_lists_what_fits_a_frame():
    """sync lists every conversation while they fit one frame; when they do
    not, the newest first with "more", and "after" pages through the rest."""
    n = 300
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        a, _ = login(srv, "alice")
        for r in pipelined(a, [{"op": "send", "to": "u%03d" % i, "cmid": "c%d" % i,
                                "type": "text", "body": "x"} for i in range(n)]):
            expect_ok(r)
        r = expect_ok(a.request("sync"))
        assert len(r["convs"]) == n and r["more"] is False
        a.close()
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000",
                                "--max-frame", "8192"]) as srv:
        a, _ = login(srv, "alice")
        for r in pipelined(a, [{"op": "send", "to": "u%03d" % i, "cmid": "c%d" % i,
                                "type": "text", "body": "x"} for i in range(300)]):
            expect_ok(r)
        r = expect_ok(a.request("sync"))
        convs = r["convs"]
        assert 50 <= len(convs) < 300 and r["more"] is True
        ts = [c["last_ts"] for c in convs]
        assert ts == sorted(ts, reverse=True)
        # the next pages, each after the cursor of the one before: every
        # conversation once, in order
        pages = [r]
        while r["more"]:
            r = expect_ok(a.request("sync", after=r["next"]))
            assert r["convs"], r
            convs += r["convs"]
            pages.append(r)
        assert "next" not in r
        assert sorted(c["conv"] for c in convs) == sorted(
            "d:alice:u%03d" % i for i in range(300))
        ts = [c["last_ts"] for c in convs]
        assert ts == sorted(ts, reverse=True)
        # a conversation leaving the list between pages shifts nothing: page 2
        # again after a conversation of page 1 has a new entry
        moved = pages[0]["convs"][-1]["conv"]
        expect_ok(a.send_message(to=moved[len("d:alice:"):], body="again"))
        again = expect_ok(a.request("sync", after=pages[0]["next"]))
        assert again["convs"] == pages[1]["convs"], (again["convs"][:2], pages[1]["convs"][:2])
        for bad in ("x", "12", ":d:a:b", "12:", 5):
            expect_error(a.request("sync", after=bad), "bad_request")
        a.close()


def test_sync_cursor_is_one_the_server_writes():
    """The sync cursor is "<last_ts>:<conv>" as the server writes it: a
    conversation part that is not a valid conversation id, or a last_ts with
    a leading zero, is bad_request."""
    with Server(shards=2) as srv:
        a, _ = login(srv, "alice")
        for peer in ("bob", "carol"):
            expect_ok(a.send_message(to=peer, body="x"))
        convs = expect_ok(a.request("sync"))["convs"]
        assert len(convs) == 2, convs
        ts = convs[0]["last_ts"]
        # well formed: after the first row; after a position before every row,
        # whatever conversation names it (one not in the list too)
        r = expect_ok(a.request("sync", after="%d:%s" % (ts, convs[0]["conv"])))
        assert r["convs"] == convs[1:] and r["more"] is False, r
        for ok in ("g:gone", "d:bob:zed", "d:alice:alice"):
            r = expect_ok(a.request("sync", after="%d:%s" % (ts + 1, ok)))
            assert len(r["convs"]) == 2, (ok, r)
        r = expect_ok(a.request("sync", after="0:d:alice:bob"))
        assert r["convs"] == [] and r["more"] is False, r
        for bad in ("%d:x" % ts, "%d:" % ts, "%d:zzz" % ts, "%d:g:" % ts, "%d:d:" % ts,
                    "%d:d:bob:alice" % ts, "%d:d:alice" % ts, "%d:d:alice:bob:" % ts,
                    "%d:g:a b" % ts, "0%d:d:alice:bob" % ts, "00:d:alice:bob",
                    "+%d:d:alice:bob" % ts, " %d:d:alice:bob" % ts, ":d:alice:bob"):
            expect_error(a.request("sync", after=bad), "bad_request")


def test_sends_caught_by_a_shutdown_are_read_by_their_author():
    """Sending implies reading, also for the sends a SIGTERM catches in
    flight: the entries are durable, and so is their author's read cursor
    (another shard writes it, after the owner's commit)."""
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        for delay in (0.005, 0.02):
            a, _ = login(srv, "sdn", "d")
            a.send_raw(b"".join(rptest.frame({"op": "send", "id": 10 + i, "to": "peer",
                                              "cmid": "z%s%d" % (delay, i), "type": "text",
                                              "body": "b"}) for i in range(300)))
            time.sleep(delay)
            assert srv.stop(signal.SIGTERM, timeout=10) == 0
            srv.start()
            a, _ = login(srv, "sdn", "d")
            convs = expect_ok(a.request("sync"))["convs"]
            assert len(convs) == 1 and convs[0]["last_seq"] > 0, convs
            assert convs[0]["read_seq"] == convs[0]["last_seq"], convs
            assert convs[0]["unread"] == 0, convs
            a.close()
    # the same with the rings between shards small enough to fill: the
    # messages that wait for room keep every shard in until they are taken
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000",
                                "--xcore-depth", "8"]) as srv:
        a, _ = login(srv, "sdm", "d")
        a.send_raw(b"".join(rptest.frame({"op": "send", "id": 10 + i, "to": "p%04d" % i,
                                          "cmid": "y%d" % i, "type": "text", "body": "b"})
                            for i in range(1500)))
        time.sleep(0.01)
        assert srv.stop(signal.SIGTERM, timeout=10) == 0
        srv.start()
        a, _ = login(srv, "sdm", "d")
        r = expect_ok(a.request("sync"))
        convs = r["convs"]
        while r["more"]:
            r = expect_ok(a.request("sync", after=r["next"]))
            convs += r["convs"]
        assert convs, "nothing was committed before the stop"
        unread = [c for c in convs if c["read_seq"] != c["last_seq"]]
        assert not unread, (len(unread), len(convs), unread[:3])
        a.close()


def test_a_shutdown_under_a_backlog_of_reads_exits():
    """SIGTERM after connections that read nothing (small receive buffers)
    queued history reads of ~6 MB each and went away: the process exits
    within its grace, and the reads still queued when the shards have
    stopped are not run (run, their results filled memory nobody would
    free, about 1 GB/s here, until the OOM killer came). A guard kills the
    server past 2 GB."""
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        users = ["fl%d" % i for i in range(8)]
        a = srv.login("hist", "d", resume=False)
        expect_ok(a.request("group.create", name="b", group="big", members=users))
        a.send_raw(b"".join(rptest.frame({"op": "send", "id": 10 + i, "group": "big",
                                          "cmid": "h%d" % i, "type": "text",
                                          "body": "x" * 30000}) for i in range(300)))
        for i in range(300):
            expect_ok(a.reply(10 + i, 60))
        socks = []
        for u in users:
            sk = socket.socket()
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sk.connect((srv.host, srv.port))
            sk.sendall(rptest.frame({"op": "hello", "id": 1, "token": srv.token(u),
                                     "device": "d", "resume": False}))
            sk.setblocking(False)
            socks.append([sk, 2, b""])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            for e in socks:
                if not e[2]:
                    e[2] = b"".join(rptest.frame({"op": "history", "id": e[1] + k,
                                                  "conv": "g:big", "limit": 200})
                                    for k in range(50))
                    e[1] += 50
                try:
                    e[2] = e[2][e[0].send(e[2]):]
                except OSError:
                    pass
            time.sleep(0.05)
        for e in socks:
            e[0].close()
        pid = srv.proc.pid
        peak = [0]
        done = threading.Event()

        def guard():
            while not done.is_set():
                try:
                    with open("/proc/%d/status" % pid) as st:
                        kb = next(int(x.split()[1]) for x in st if x.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    return
                peak[0] = max(peak[0], kb)
                if kb > 2 << 20:
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        g = threading.Thread(target=guard)
        g.start()
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t0
        done.set()
        g.join()
        assert rc == 0, (rc, took, peak[0])
        assert took < 15 and peak[0] < 2 << 20, (took, peak[0])

def metric(srv, name):
    """The sum of a /metrics series over its labels."""
    status, body = srv.admin("GET", "/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith(name + "{") or l.startswith(name + " "))


QUERIES_MAX = 8  # queries of one session reading storage at once


def test_pipelined_queries_read_a_few_at_a_time_in_order():
    """One connection pipelines 300 history pages and then a sync: at most
    8 queries of a session read storage at once, the connection's later
    requests wait behind them in order (so one client cannot fill the
    shard's read queue ahead of everyone else's), and every one is answered.
    The sync needs no read, so without the pause it was answered first."""
    n = 300
    with Server(shards=1, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        a = srv.login("qa", "d", resume=False)
        for i in range(20):
            expect_ok(a.send_message(to="qb", body="m%d" % i))
        frames = [rptest.frame({"op": "history", "id": 100 + k, "conv": "d:qa:qb",
                                "limit": 50}) for k in range(n)]
        frames.append(rptest.frame({"op": "sync", "id": 99}))
        a.send_raw(b"".join(frames))
        order = []
        while len(order) < n + 1:
            f = a.recv(30)
            if "id" not in f:
                continue
            expect_ok(f)
            if f["id"] != 99:
                assert len(f["msgs"]) == 20
            order.append(f["id"])
        assert sorted(order) == [99] + list(range(100, 100 + n))
        assert order.index(99) >= n - QUERIES_MAX, order.index(99)
        assert metric(srv, "ringpush_queries_paused_total") >= 1
        # the connection takes requests as before once its queries are done
        expect_ok(a.request("sync"))


def answers(c, n, timeout=30):
    """The ids of the next n replies on c, in arrival order."""
    ids = []
    while len(ids) < n:
        f = c.recv(timeout)
        if "id" in f:
            assert f.get("op") in ("ok", "pong"), f
            ids.append(f["id"])
    return ids


def test_dedup_records_gauge():
    """ringpush_dedup_records counts the dedup records owners keep in
    memory: one per distinct send, none for a retry (answered dup)."""
    with Server(shards=2) as srv:
        a = srv.login("dga", "d", resume=False)
        for i in range(5):
            expect_ok(a.send_message(to="dg%d" % i, body="x", cmid="m%d" % i))
        r = expect_ok(a.send_message(to="dg0", body="x", cmid="m0"))
        assert r.get("dup") is True, r
        deadline = time.monotonic() + 5
        while metric(srv, "ringpush_dedup_records") != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(srv, "ringpush_dedup_records") == 5


def test_dedup_memory_bounds_the_records_and_retries_still_dedup():
    """With --dedup-memory 50, a shard keeps at most 50 dedup records,
    however young they are; a retry of a send whose record left memory is
    still answered dup with its seq."""
    with Server(shards=1, args=["--dedup-memory", "50", "--rate-limit", "100000",
                                "--rate-burst", "100000"]) as srv:
        a = srv.login("dma", "d", resume=False)
        seqs = {}
        for i in range(300):
            r = expect_ok(a.send_message(to="dm%d" % (i % 7), body="x", cmid="c%d" % i))
            seqs[i] = (r["conv"], r["seq"])
        deadline = time.monotonic() + 5
        while metric(srv, "ringpush_dedup_records") > 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(srv, "ringpush_dedup_records") == 50
        for i in (0, 1, 150, 299):
            r = expect_ok(a.send_message(to="dm%d" % (i % 7), body="x", cmid="c%d" % i))
            assert r.get("dup") is True and (r["conv"], r["seq"]) == seqs[i], (i, r)
        r = expect_ok(a.send_message(to="dm0", body="x", cmid="new"))
        assert r.get("dup") is not True and r["seq"] == seqs[294][1] + 1, r


def test_queries_answered_at_once_count_and_pause_too():
    """history pages with nothing to read (answered without a read), pages
    that read, and group.list, 600 of them pipelined, then a ping: a query
    answered at once pauses and releases the connection in one go, and
    every frame is still run once and in order (the ping among the last 8)."""
    with Server(shards=1, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        a = srv.login("qa", "d", resume=False)
        for i in range(20):
            expect_ok(a.send_message(to="qb", body="m%d" % i))
        frames = []
        for k in range(600):
            if k % 3 == 0:
                q = {"op": "history", "conv": "d:qa:qb", "before": 1}
            elif k % 3 == 1:
                q = {"op": "group.list"}
            else:
                q = {"op": "history", "conv": "d:qa:qb", "limit": 50}
            q["id"] = 1000 + k
            frames.append(rptest.frame(q))
        frames.append(rptest.frame({"op": "ping", "id": 99}))
        a.send_raw(b"".join(frames))
        ids = answers(a, 601)
        assert sorted(ids) == [99] + list(range(1000, 1600))
        assert ids.index(99) >= 600 - QUERIES_MAX, ids.index(99)
        expect_ok(a.request("sync"))


def test_a_paused_connection_closed_replaced_or_kicked():
    """A connection closes, is replaced by a new session of its device, or
    is kicked while paused with thousands of queries held: the server stays
    up, the new session's pipelined queries are all answered, and it exits
    cleanly (the harness checks the exit status)."""
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        seeded = srv.login("qa", "d", resume=False)
        for i in range(5):
            expect_ok(seeded.send_message(to="qb", body="m%d" % i))
        seeded.close()
        page = [rptest.frame({"op": "history", "id": 100 + k, "conv": "d:qa:qb", "limit": 50})
                for k in range(3000)]
        pages = b"".join(page)
        for rep in range(12):
            a = srv.login("qa", "d", resume=False)
            a.send_raw(pages)
            time.sleep(0.003 * (rep % 4))
            if rep % 3 == 0:
                a.sock.close()
            elif rep % 3 == 1:
                b = srv.login("qa", "d", resume=False)  # same device: replaces a
                b.send_raw(b"".join(page[:200]) + rptest.frame({"op": "sync", "id": 99}))
                assert sorted(answers(b, 201)) == [99] + list(range(100, 300))
                b.close()
                a.sock.close()
            else:
                status, _ = srv.admin("POST", "/v1/users/qa/kick")
                assert status == 200, status
                a.sock.close()
        c = srv.login("qc", "d", resume=False)
        expect_ok(c.request("sync"))
        assert metric(srv, "ringpush_queries_paused_total") >= 1


def test_a_query_flood_neither_stalls_the_shard_nor_is_read_without_bound():
    """One connection pipelines history pages without end, reading its
    replies. Each query that ends releases the
    connection and replays its held frames, and the replay holds it again:
    another user of the shard is still answered at once, and the flooder's
    socket is not read past the hold bound (256 KiB), so what it has written
    and not had answered stays within the kernels' socket buffers. (A storm
    of one io_uring cancel per held frame stalled the shard for seconds, and
    a recv re-armed after every replay read the flood without bound.)"""
    with Server(shards=1, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        a = srv.login("qa", "d", resume=False)
        for i in range(200):
            expect_ok(a.send_message(to="qb", body="m%d" % i))
        b = srv.login("zz", "d", resume=False)
        one = rptest.frame({"op": "history", "id": 1, "conv": "d:qa:qb", "limit": 1,
                            "before": 150})
        chunk = one * 2000
        sock = a.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
        sock.settimeout(None)
        written, got, stop = [0], [0], threading.Event()

        def writer():
            while not stop.is_set():
                try:
                    sock.sendall(chunk)
                except OSError:
                    return
                written[0] += len(chunk)

        def reader():
            buf = bytearray()
            while not stop.is_set():
                try:
                    d = sock.recv(1 << 20)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                off = 0
                while len(buf) - off >= 4:
                    n = int.from_bytes(buf[off:off + 4], "big")
                    if len(buf) - off < 4 + n:
                        break
                    off += 4 + n
                    got[0] += 1
                del buf[:off]

        threads = [threading.Thread(target=f, daemon=True) for f in (writer, reader)]
        for t in threads:
            t.start()
        try:
            time.sleep(3)
            worst = 0.0
            for _ in range(5):
                t0 = time.monotonic()
                expect_ok(b.request("sync", _timeout=30))
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.5)
            time.sleep(4)
            backlog = written[0] - got[0] * len(one)
        finally:
            stop.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            for t in threads:
                t.join(10)
        assert worst < 1.0, worst
        assert backlog < 12 << 20, backlog  # socket buffers and 256 KiB, not more
        assert srv.running()


def test_a_slow_connection_is_closed_after_its_grace():
    """bye slow gives a client that does not read 5 s to take its last
    frames, counted from the bye, not from the connection's idle deadline:
    with --idle-timeout 60 it is gone within seconds of the bye (it stayed
    until the idle deadline)."""
    with Server(shards=2, args=["--idle-timeout", "60", "--rate-limit", "100000",
                                "--rate-burst", "100000"]) as srv:
        a = srv.login("own", "d", resume=False)
        expect_ok(a.request("group.create", name="s", group="slowg", members=["rd"]))
        sk = socket.socket()
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sk.connect((srv.host, srv.port))
        sk.sendall(rptest.frame({"op": "hello", "id": 1, "token": srv.token("rd"),
                                 "device": "d", "resume": False}))
        time.sleep(0.5)
        # 400 entries of 30 KB pushed to a reader that reads nothing: past
        # outbound_limit (4 MiB), bye slow
        a.send_raw(b"".join(rptest.frame({"op": "send", "id": 10 + i, "group": "slowg",
                                          "cmid": "s%d" % i, "type": "text",
                                          "body": "y" * 30000}) for i in range(400)))
        for i in range(400):
            expect_ok(a.reply(10 + i, 60))
        deadline = time.monotonic() + 10
        while metric(srv, "ringpush_bye_slow_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(srv, "ringpush_bye_slow_total") == 1
        t0 = time.monotonic()
        while metric(srv, "ringpush_connections") > 1 and time.monotonic() < t0 + 15:
            time.sleep(0.2)
        took = time.monotonic() - t0
        assert metric(srv, "ringpush_connections") == 1 and took < 10, took
        sk.close()

if __name__ == "__main__":
    rptest.main()
