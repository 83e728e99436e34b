"""
Groups and friends (PROTOCOL §6) against live ringpushd processes, with 2 and
4 shards: every group op, its events and permission denials, joined_seq, a
kicked member receiving the kick event and nothing after it, dismiss, the
list limits; friend requests, accept, remove, list, and dm_policy friends.
"""

import os
import re
import signal
import time

import rptest
from rptest import Server, expect_error, expect_ok


def event(c, kind, timeout=5):
    """The next group event push of that kind (other pushes stay queued)."""
    while True:
        p = c.push("msg", timeout=timeout)
        if p["type"] == "event" and p["data"]["kind"] == kind:
            return p


def group_scenario(shards):
    with Server(shards=shards, args=["--recall-window", "1"]) as srv:
        o = srv.login("owner", "o1")
        o2 = srv.login("owner", "o2")
        a = srv.login("ann")
        b = srv.login("ben")
        x = srv.login("xena")
        r = expect_ok(o.request("group.create", name="Team", members=["ann", "ben", "ann"],
                                group="team"))
        assert (r["group"], r["conv"], r["seq"]) == ("team", "g:team", 1), r
        for c in (a, b, o2):
            e = event(c, "create")
            assert e["seq"] == 1 and e["from"] == "owner" and e["dev"] == "o1", e
            d = e["data"]
            assert d["by"] == "owner" and d["count"] == 3 and d["users"][0] == "owner", d
            assert sorted(d["users"]) == ["ann", "ben", "owner"], d
            assert d["name"] == "Team", d  # the new group's name is a changed field
        o.no_push(0.2, op="msg")
        expect_error(x.request("group.create", name="Again", group="team"), "conflict")
        gen = expect_ok(x.request("group.create", name="Solo"))
        assert gen["group"] and gen["conv"] == "g:" + gen["group"], gen
        # members send; outsiders may not; no such group
        s = expect_ok(a.send_message(group="team", body="hi all"))
        assert s["seq"] == 2 and s["conv"] == "g:team", s
        for c in (o, o2, b):
            p = c.push("msg")
            assert (p["seq"], p["from"], p["body"]) == (2, "ann", "hi all"), p
        a.no_push(0.2, op="msg")
        x.no_push(0.2, op="msg")
        expect_error(x.send_message(group="team", body="?"), "forbidden")
        expect_error(x.send_message(group="nosuch", body="?"), "not_found")
        expect_error(x.request("history", conv="g:team"), "forbidden")
        expect_error(x.request("group.info", group="team"), "forbidden")
        expect_error(x.request("group.members", group="team"), "forbidden")
        expect_error(x.request("group.info", group="nosuch"), "not_found")
        # join: closed group refused; opened by an update; joined_seq
        expect_error(x.request("group.join", group="team"), "forbidden")
        expect_error(b.request("group.update", group="team", open=True), "forbidden")
        r = expect_ok(o.request("group.update", group="team", open=True, notice="be nice"))
        e = event(a, "update")
        assert e["data"]["open"] is True and e["data"]["notice"] == "be nice", e
        # a change's answer names its event; one that writes none is a bare ok
        assert (r["conv"], r["seq"]) == ("g:team", e["seq"]), (r, e)
        assert e["data"]["count"] == 0 and e["data"]["users"] == [], e
        # the event carries the fields that change, not one given unchanged
        expect_ok(o.request("group.update", group="team", open=True, notice="be kind"))
        e = event(a, "update")
        assert e["data"]["notice"] == "be kind" and "open" not in e["data"], e
        expect_ok(x.request("group.join", group="team"))
        e = event(a, "join")
        jseq = e["seq"]
        assert e["data"]["users"] == ["xena"] and e["from"] == "xena", e
        h = expect_ok(x.request("history", conv="g:team"))
        assert [m["seq"] for m in h["msgs"]] == [jseq], h  # reads from its joined_seq
        r = expect_ok(x.request("group.join", group="team"))  # a member again: no event
        assert "seq" not in r and "conv" not in r, r
        # roles: admin by the owner only
        expect_error(a.request("group.admin", group="team", user="ben", admin=True), "forbidden")
        expect_error(o.request("group.admin", group="team", user="zed", admin=True), "not_found")
        expect_error(o.request("group.admin", group="team", user="owner", admin=True),
                     "forbidden")
        expect_ok(o.request("group.admin", group="team", user="ann", admin=True))
        assert event(b, "admin")["data"]["admin"] is True
        # kick: admins kick plain members only; members kick nobody
        expect_error(b.request("group.kick", group="team", users=["xena"]), "forbidden")
        expect_error(a.request("group.kick", group="team", users=["owner"]), "forbidden")
        expect_ok(a.request("group.kick", group="team", users=["xena"]))
        e = event(x, "kick")  # the kicked member gets the event that removed it ...
        assert e["data"]["users"] == ["xena"] and e["data"]["by"] == "ann", e
        expect_ok(b.send_message(group="team", body="after the kick"))
        x.no_push(0.5, op="msg")  # ... and nothing after it
        expect_error(x.send_message(group="team", body="?"), "forbidden")
        expect_error(x.request("history", conv="g:team"), "forbidden")
        # invite by any member; nick; remark is private; info; members; list
        expect_ok(b.request("group.invite", group="team", users=["xena", "yuri"]))
        e = event(x, "invite")
        assert sorted(e["data"]["users"]) == ["xena", "yuri"] and e["data"]["count"] == 2, e
        expect_ok(b.request("group.invite", group="team", users=["xena"]))  # nobody new
        expect_ok(b.request("group.nick", group="team", nick="Benny"))
        assert event(a, "nick")["data"]["nick"] == "Benny"
        expect_ok(b.request("group.remark", group="team", remark="my team"))
        info = expect_ok(b.request("group.info", group="team"))
        assert (info["name"], info["notice"], info["owner"], info["open"], info["count"],
                info["remark"]) == ("Team", "be kind", "owner", True, 5, "my team"), info
        assert expect_ok(a.request("group.info", group="team"))["remark"] == "", info
        mem = expect_ok(a.request("group.members", group="team"))
        roles = {m["user"]: (m["role"], m["nick"]) for m in mem["members"]}
        assert roles == {"owner": ("owner", ""), "ann": ("admin", ""), "ben": ("member", "Benny"),
                         "xena": ("member", ""), "yuri": ("member", "")}, roles
        assert [m["user"] for m in mem["members"]] == sorted(roles) and mem["more"] is False
        page = expect_ok(a.request("group.members", group="team", limit=2))
        assert [m["user"] for m in page["members"]] == ["ann", "ben"] and page["more"], page
        page = expect_ok(a.request("group.members", group="team", after="ben", limit=2))
        assert [m["user"] for m in page["members"]] == ["owner", "xena"], page
        lst = expect_ok(a.request("group.list"))["groups"]
        assert lst == [{"group": "team", "name": "Team", "role": "admin"}], lst
        # recall: the sender within the window; the owner and admins at any time
        s1 = expect_ok(b.send_message(group="team", body="one"))["seq"]
        s2 = expect_ok(b.send_message(group="team", body="two"))["seq"]
        s3 = expect_ok(x.send_message(group="team", body="three"))["seq"]
        expect_error(x.request("recall", conv="g:team", seq=s1), "forbidden")
        expect_ok(a.request("recall", conv="g:team", seq=s1))
        time.sleep(1.2)
        expect_error(b.request("recall", conv="g:team", seq=s2), "expired")
        expect_error(x.request("recall", conv="g:team", seq=s3), "expired")
        r = expect_ok(o.request("recall", conv="g:team", seq=s2))
        p = [m for m in b.drain(0.5) if m.get("op") == "msg" and m["type"] == "recall"]
        assert [m["target"] for m in p] == [s1, s2] and p[-1]["seq"] == r["seq"], p
        h = expect_ok(x.request("history", conv="g:team", after=s1 - 1, limit=2))["msgs"]
        assert [m["type"] for m in h] == ["recalled", "recalled"], h
        # leave; the owner cannot; too many users in one request
        expect_error(o.request("group.leave", group="team"), "forbidden")
        expect_ok(b.request("group.leave", group="team"))
        assert event(a, "leave")["data"]["users"] == ["ben"]
        expect_error(b.request("group.leave", group="team"), "forbidden")
        expect_error(o.request("group.invite", group="team",
                               users=["u%d" % i for i in range(501)]), "too_large")
        # dismiss: owner only; every member gets the event; then not_found
        expect_error(a.request("group.dismiss", group="team"), "forbidden")
        expect_ok(o.request("group.dismiss", group="team"))
        for c in (a, o2, x):
            d = event(c, "dismiss")["data"]
            assert d["by"] == "owner", d
            # every member is affected: users lists them (up to 20), count counts them
            assert "ann" in d["users"] and "owner" in d["users"], d
            assert d["count"] == len(d["users"]) >= 3, d
        expect_error(a.send_message(group="team", body="?"), "not_found")
        expect_error(x.request("group.join", group="team"), "not_found")
        expect_error(o.request("group.create", name="Reuse", group="team"), "conflict")
        assert expect_ok(a.request("group.list"))["groups"] == []
        # the log is gapless: the owner reads every entry up to the dismiss
        for c in (o, o2, a, b, x):
            c.close()


def test_groups_2_shards():
    group_scenario(2)


def test_groups_4_shards():
    group_scenario(4)


def test_friends_and_dm_policy():
    with Server(shards=2, args=["--dm-policy", "friends"]) as srv:
        a = srv.login("amy", "a1")
        a2 = srv.login("amy", "a2")
        b = srv.login("bill")
        expect_error(a.send_message(to="bill", body="hi"), "forbidden")
        expect_ok(a.send_message(to="amy", body="note to self"))
        expect_error(a.request("friend.request", user="amy"), "bad_request")
        expect_error(a.request("friend.accept", user="bill"), "not_found")
        expect_error(a.request("friend.remove", user="bill"), "not_found")
        expect_ok(a.request("friend.request", user="bill", note="it's amy"))
        p = b.push("friend")
        assert p == {"op": "friend", "event": "request", "from": "amy", "note": "it's amy"}, p
        lst = expect_ok(b.request("friend.list"))
        assert lst["friends"] == [] and [(r["from"], r["note"]) for r in lst["requests"]] == \
            [("amy", "it's amy")] and isinstance(lst["requests"][0]["ts"], int), lst
        expect_error(a.send_message(to="bill", body="pending"), "forbidden")
        expect_ok(b.request("friend.accept", user="amy"))
        for c in (a, a2):
            assert c.push("friend") == {"op": "friend", "event": "added", "user": "bill"}
        assert b.push("friend") == {"op": "friend", "event": "added", "user": "amy"}
        expect_error(a.request("friend.request", user="bill"), "conflict")
        expect_ok(b.request("friend.accept", user="amy"))  # already friends: ok
        lst = expect_ok(a.request("friend.list"))
        assert [f["user"] for f in lst["friends"]] == ["bill"] and lst["requests"] == [], lst
        r = expect_ok(a.send_message(to="bill", body="friends now"))
        assert b.push("msg")["seq"] == r["seq"]
        expect_ok(b.send_message(to="amy", body="yes"))
        # friendship survives a restart
        for c in (a, a2, b):
            c.close()
        srv.restart()
        a = srv.login("amy", "a1")
        b = srv.login("bill")
        kept = expect_ok(a.send_message(to="bill", body="still friends", cmid="kept"))
        assert [f["user"] for f in expect_ok(b.request("friend.list"))["friends"]] == ["amy"]
        expect_ok(b.request("friend.remove", user="amy"))
        assert a.push("friend") == {"op": "friend", "event": "removed", "user": "bill"}
        assert b.push("friend") == {"op": "friend", "event": "removed", "user": "amy"}
        expect_error(a.send_message(to="bill", body="gone"), "forbidden")
        # a retry of a send accepted while they were friends gets the original
        again = expect_ok(a.send_message(to="bill", body="still friends", cmid="kept"))
        assert (again["seq"], again["ts"], again.get("dup")) == (kept["seq"], kept["ts"], True)

        def admin_sends(fresh):
            """The backend's retry gets the original; a new send is refused."""
            status, body = srv.admin("POST", "/v1/messages", body={
                "from": "amy", "to": "bill", "type": "text", "body": "still friends",
                "cmid": "kept"})
            assert (status, body.get("seq"), body.get("dup")) == (200, kept["seq"], True), body
            status, body = srv.admin("POST", "/v1/messages", body={
                "from": "amy", "to": "bill", "type": "text", "body": "new", "cmid": fresh})
            assert status == 403 and body.get("code") == "forbidden", (status, body)
        admin_sends("fresh")
        a.close()  # amy's friend list is read from storage now
        rptest.wait_until(lambda: srv.admin("GET", "/v1/users/amy")[1].get("online") is False,
                          what="amy offline")
        admin_sends("fresh2")
        a = srv.login("amy", "a1")
        expect_error(b.send_message(to="amy", body="gone"), "forbidden")
        # a request to someone who already asked is an accept
        expect_ok(a.request("friend.request", user="bill"))
        b.push("friend")
        expect_ok(b.request("friend.request", user="amy"))
        assert a.push("friend")["event"] == "added"
        expect_ok(a.send_message(to="bill", body="again"))

def friend_view(c, peer):
    """What c's friend.list says of peer: friend, request (from peer) or none."""
    lst = expect_ok(c.request("friend.list"))
    if any(f["user"] == peer for f in lst["friends"]):
        return "friend"
    return "request" if any(r["from"] == peer for r in lst["requests"]) else "none"


def crossing(c1, op1, c2, op2):
    """Two friend ops sent at the same moment from two users; both answers."""
    c1.send({"op": op1[0], "id": 900, "user": op1[1]})
    c2.send({"op": op2[0], "id": 900, "user": op2[1]})
    return c1.reply(900), c2.reply(900)


def test_crossing_friend_ops_leave_both_sides_agreeing():
    """Friend ops of the two users of a pair made at the same moment (each
    home decides before the other's op arrives) end the same on both sides,
    also after a restart: of two requests the later stands; an accept and a
    withdrawal end as one or the other on both sides; two removals, none; a
    request repeated with a new note is pushed again."""
    for shards in (1, 2):
        with Server(shards=shards, args=["--dm-policy", "friends"]) as srv:
            pairs = []
            for k in range(6):
                ua, ub = "cra%d" % k, "crb%d" % k
                a, b = srv.login(ua), srv.login(ub)
                # both ask at once: when the two cross, the later request
                # stands on both sides (one has a request from the other, to
                # accept); when one reached the other's home first, the
                # second was an accept and they are friends already
                ra, rb = crossing(a, ("friend.request", ub), b, ("friend.request", ua))
                assert ra["op"] == rb["op"] == "ok", (ra, rb)
                views = lambda: sorted((friend_view(a, ub), friend_view(b, ua)))
                rptest.wait_until(lambda: views() in (["none", "request"], ["friend", "friend"]),
                                  what="one request or a friendship (%s)" % ua)
                if views() == ["none", "request"]:
                    asked, asker = (a, ub) if friend_view(a, ub) == "request" else (b, ua)
                    expect_ok(asked.request("friend.accept", user=asker))
                rptest.wait_until(lambda: friend_view(a, ub) == friend_view(b, ua) == "friend",
                                  what="friends after the accept (%s)" % ua)
                for c, peer in ((a, ub), (b, ua)):
                    got = [p for p in c.drain(0.3) if p.get("op") == "friend"]
                    assert {"op": "friend", "event": "added", "user": peer} in got, got
                expect_ok(a.send_message(to=ub, body="hi"))
                expect_ok(b.send_message(to=ua, body="hi"))
                # both remove at once: none on both sides
                ra, rb = crossing(a, ("friend.remove", ub), b, ("friend.remove", ua))
                rptest.wait_until(lambda: friend_view(a, ub) == friend_view(b, ua) == "none",
                                  what="none after two removals (%s)" % ua)
                # an accept and a withdrawal at once: the same on both sides
                expect_ok(a.request("friend.request", user=ub))
                rptest.wait_until(lambda: friend_view(b, ua) == "request", what="the request")
                # (when the withdrawal reached b's home first, the accept
                # finds no request: not_found, and nothing on both sides)
                ra, rb = crossing(a, ("friend.remove", ub), b, ("friend.accept", ua))
                assert ra["op"] == "ok" and (rb["op"] == "ok" or rb.get("code") == "not_found"), \
                    (ra, rb)
                rptest.wait_until(lambda: friend_view(a, ub) == friend_view(b, ua) in
                                  ("friend", "none"), what="the same on both sides (%s)" % ua)
                va = friend_view(a, ub)
                pairs.append((ua, ub, va))
                a.close()
                b.close()
            srv.restart()
            for ua, ub, view in pairs:
                a, b = srv.login(ua), srv.login(ub)
                assert friend_view(a, ub) == friend_view(b, ua) == view, (ua, view)
                a.close()
                b.close()


def test_a_repeated_request_is_pushed_again():
    """A friend.request repeated (here with a new note) is pushed to the peer
    again and listed with the new note."""
    with Server(shards=2) as srv:
        a, b = srv.login("rqa"), srv.login("rqb")
        expect_ok(a.request("friend.request", user="rqb", note="one"))
        assert b.push("friend")["note"] == "one"
        expect_ok(a.request("friend.request", user="rqb", note="two"))
        p = b.push("friend")
        assert (p["event"], p["from"], p["note"]) == ("request", "rqa", "two"), p
        lst = expect_ok(b.request("friend.list"))
        assert [(r["from"], r["note"]) for r in lst["requests"]] == [("rqa", "two")], lst


def test_random_crossing_friend_ops_agree():
    """Random friend ops sent by both users of many pairs at once, several
    rounds, with a crash and a restart between them: at every quiet point the
    two users' views of each other agree (friends both, nothing both, or a
    request one way). RP_FRIEND_SEED picks another random sequence."""
    import random
    rng = random.Random(int(os.environ.get("RP_FRIEND_SEED", "7")))
    ops = ("friend.request", "friend.accept", "friend.remove")
    agree = {("friend", "friend"), ("none", "none"), ("request", "none"), ("none", "request")}
    with Server(shards=3, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        names = [("rfa%d" % k, "rfb%d" % k) for k in range(24)]
        for rnd in range(8):
            conns = {u: srv.login(u) for pair in names for u in pair}
            sent = []
            for ua, ub in names:
                for me, peer in ((ua, ub), (ub, ua)):
                    for i in range(rng.randrange(1, 4)):
                        rid = 5000 + 10 * rnd + i
                        conns[me].send({"op": rng.choice(ops), "id": rid, "user": peer})
                        sent.append((conns[me], rid))
            for c, rid in sent:  # each answered (ok, or the error its state gave)
                assert c.reply(rid)["op"] in ("ok", "error")
            for ua, ub in names:
                a, b = conns[ua], conns[ub]
                rptest.wait_until(lambda: (friend_view(a, ub), friend_view(b, ua)) in agree,
                                  what="round %d: %s and %s agree" % (rnd, ua, ub))
            for c in conns.values():
                c.close()
            if rnd in (2, 4):
                srv.restart(sig=signal.SIGKILL if rnd == 2 else signal.SIGTERM)


def test_generated_group_ids_cannot_be_guessed():
    """A group.create without an id gets one of the documented shape whose
    last part no one can work out from the ids before it (it differs between
    two ids of the same time, shard and counter: two runs of the server), so
    another user cannot create the next ids first and make it fail."""
    shape = re.compile(r"^g([0-9a-f]+)-([0-9]+)-([0-9a-f]+)-([0-9a-f]{16})$")
    first = {}
    for run in range(2):
        with Server(shards=1) as srv:
            a = srv.login("alice")
            ids = [expect_ok(a.request("group.create", name="G"))["group"] for _ in range(20)]
            assert len(set(ids)) == 20, ids
            for gid in ids:
                m = shape.match(gid)
                assert m and len(gid) <= 64, gid
                # the counter is the same in both runs: the secret part is not
                key = m.group(3)
                if key in first:
                    assert first[key] != m.group(4), (first[key], gid)
                elif run == 0:
                    first[key] = m.group(4)
            assert len({shape.match(g).group(4) for g in ids}) == 20, ids
            a.close()
    assert first


def test_group_list_lists_every_group():
    """group.list holds every group of the caller while they fit a frame."""
    n = 200
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        a = srv.login("alice")
        first = a.next_id
        a.send_raw(b"".join(rptest.frame({"op": "group.create", "id": first + i, "name": "G",
                                          "group": "grp%03d" % i}) for i in range(n)))
        a.next_id += n
        for i in range(n):
            expect_ok(a.reply(first + i, 30))
        r = expect_ok(a.request("group.list"))
        assert [g["group"] for g in r["groups"]] == ["grp%03d" % i for i in range(n)]
        assert r["more"] is False
        a.close()


def test_group_list_pages():
    """Groups that do not fit one frame come in pages, in group id order:
    "more" says that some follow, "after" (the last id received) gives them."""
    n = 400
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000",
                                "--max-frame", "8192"]) as srv:
        a = srv.login("alice")
        first = a.next_id
        a.send_raw(b"".join(rptest.frame({"op": "group.create", "id": first + i, "name": "N%d" % i,
                                          "group": "pg%03d" % i}) for i in range(n)))
        a.next_id += n
        for i in range(n):
            expect_ok(a.reply(first + i, 30))
        r = expect_ok(a.request("group.list"))
        got = r["groups"]
        assert 5 <= len(got) < n and r["more"] is True, (len(got), r["more"])
        pages = 1
        while r["more"]:
            r = expect_ok(a.request("group.list", after=got[-1]["group"]))
            assert r["groups"], r
            got += r["groups"]
            pages += 1
        assert [(g["group"], g["name"], g["role"]) for g in got] == \
            [("pg%03d" % i, "N%d" % i, "owner") for i in range(n)]
        assert pages >= 2
        r = expect_ok(a.request("group.list", after="pg399"))
        assert (r["groups"], r["more"]) == ([], False)
        expect_error(a.request("group.list", after=5), "bad_request")
        a.close()

def test_friend_list_pages():
    """Friends and requests that do not fit one frame come in pages, together
    in id order: "more" and "next" say that some follow, "after" gives them."""
    n = 120
    with Server(shards=2, args=["--max-frame", "8192"]) as srv:
        hub = srv.login("fhub")
        note = "n" * 200
        for i in range(n):
            c = srv.login("fr%03d" % i)
            expect_ok(c.request("friend.request", user="fhub", note=note))
            c.close()
        for i in range(n):  # the hub's side is written after the requester's ok
            assert hub.push("friend", timeout=10)["event"] == "request"
        first = hub.next_id
        hub.send_raw(b"".join(rptest.frame({"op": "friend.accept", "id": first + i,
                                            "user": "fr%03d" % (2 * i)}) for i in range(n // 2)))
        hub.next_id += n // 2
        for i in range(n // 2):
            expect_ok(hub.reply(first + i, 30))
        friends, requests, order, pages = [], [], [], 0
        r = expect_ok(hub.request("friend.list"))
        assert r["more"] is True and len(r["friends"]) + len(r["requests"]) < n, r
        while True:
            pages += 1
            friends += [f["user"] for f in r["friends"]]
            requests += [q["from"] for q in r["requests"]]
            assert all(q["note"] == note for q in r["requests"]), r
            order += sorted([f["user"] for f in r["friends"]] + [q["from"] for q in r["requests"]])
            if not r["more"]:
                assert "next" not in r, r
                break
            assert r["next"] == order[-1], (r["next"], order[-1])
            r = expect_ok(hub.request("friend.list", after=r["next"]))
        assert pages >= 3, pages
        assert order == ["fr%03d" % i for i in range(n)], order
        assert friends == ["fr%03d" % i for i in range(0, n, 2)], friends
        assert requests == ["fr%03d" % i for i in range(1, n, 2)], requests
        r = expect_ok(hub.request("friend.list", after="fr999"))
        assert (r["friends"], r["requests"], r["more"]) == ([], [], False), r
        expect_error(hub.request("friend.list", after=5), "bad_request")
        hub.close()


def catchup(srv, user, device):
    """A resume session and the pushes of its catch-up, up to synced."""
    c = srv.login(user, device, resume=True)
    got = []
    while True:
        p = c.push(timeout=10)
        if p["op"] == "synced":
            return c, got
        got.append(p)


def member_gone_offline(srv, groups=("g",)):
    """owner creates the groups with ann; ann's device d1 acks their create
    events and goes offline. Returns the owner's session."""
    o, _ = catchup(srv, "owner", "d1")
    a, _ = catchup(srv, "ann", "d1")
    for g in groups:
        expect_ok(o.request("group.create", name=g.upper(), group=g, members=["ann"]))
    for _ in groups:
        p = a.push("msg")
        a.ack(p["conv"], p["seq"])
    a.ping()
    a.close()
    time.sleep(0.3)
    return o


def test_removed_while_offline_gets_the_removal_event():
    """A member removed while offline gets, at its next login, what it missed
    up to the event that removed it and nothing after it: by a kick, a
    dismiss, and (the user loaded meanwhile) on a second device; acked, the
    event does not come again; a member again, the group is as any other."""
    with Server(shards=2) as srv:
        o = member_gone_offline(srv, ("g", "h"))
        before = expect_ok(o.send_message(group="g", body="before the kick"))["seq"]
        expect_ok(o.request("group.kick", group="g", users=["ann"]))
        expect_ok(o.send_message(group="g", body="after the kick"))
        expect_ok(o.send_message(group="h", body="before the dismiss"))
        expect_ok(o.request("group.dismiss", group="h"))
        a, got = catchup(srv, "ann", "d1")
        seen = [(p["conv"], p["seq"], p["type"]) for p in got]
        assert sorted(seen) == sorted([("g:g", before, "text"), ("g:g", before + 1, "event"),
                                       ("g:h", 2, "text"), ("g:h", 3, "event")]), seen
        kinds = {(p["conv"], p["data"]["kind"]) for p in got if p["type"] == "event"}
        assert kinds == {("g:g", "kick"), ("g:h", "dismiss")}, kinds
        expect_error(a.request("history", conv="g:g"), "forbidden")
        assert all(c["conv"] not in ("g:g", "g:h") for c in expect_ok(a.request("sync"))["convs"])
        # a second device of the same (loaded) user gets them too, from its own cursor
        b, got = catchup(srv, "ann", "d2")
        assert {(p["conv"], p["data"]["kind"]) for p in got if p["type"] == "event"} >= kinds
        for p in got:
            b.ack(p["conv"], p["seq"])
        for p in got:
            a.ack(p["conv"], p["seq"])
        a.ping()
        b.ping()
        a.close()
        b.close()
        time.sleep(0.3)
        # acked: not again, also after a restart
        srv.restart()
        a, got = catchup(srv, "ann", "d1")
        assert [p for p in got if p["conv"] in ("g:g", "g:h")] == [], got
        a.close()
        # removed while online with another device offline: that device gets it later
        o, _ = catchup(srv, "owner", "d1")
        expect_ok(o.request("group.invite", group="g", users=["ann"]))
        a, got = catchup(srv, "ann", "d1")
        join = [p for p in got if p["conv"] == "g:g"]
        assert join and join[-1]["data"]["kind"] == "invite", join
        for p in got:
            a.ack(p["conv"], p["seq"])
        a.ping()
        expect_ok(o.request("group.kick", group="g", users=["ann"]))
        kick = event(a, "kick")
        a.ack(kick["conv"], kick["seq"])
        a.ping()
        c, got = catchup(srv, "ann", "d3")
        g = [(p["seq"], p["type"]) for p in got if p["conv"] == "g:g"]
        assert g and g[-1] == (kick["seq"], "event"), g
        # both spans of membership, nothing of the time between them
        out = range(before + 2, join[-1]["seq"])
        assert [seq for seq, _ in g] == sorted(seq for seq, _ in g), g
        assert not [seq for seq, _ in g if seq in out], (g, list(out))
        assert (before + 1, "event") in g and (join[-1]["seq"], "event") in g, g
        for x in (a, c, o):
            x.close()

def test_removal_event_past_the_catchup_limit():
    """Kicked while offline, then the group goes on for more than
    catchup_limit entries: the device still gets the kick event (its catch-up
    of the group ends there, not at the group's end)."""
    with Server(shards=2, args=["--catchup-limit", "5"]) as srv:
        o = member_gone_offline(srv)  # g created at seq 1, acked
        expect_ok(o.send_message(group="g", body="before"))
        expect_ok(o.request("group.kick", group="g", users=["ann"]))
        for i in range(8):
            expect_ok(o.send_message(group="g", body="after %d" % i))
        a, got = catchup(srv, "ann", "d1")
        assert [(p["seq"], p["type"]) for p in got] == [(2, "text"), (3, "event")], got
        assert got[1]["data"]["kind"] == "kick"
        a.close()
        o.close()

def test_catchup_limit_counts_every_span_of_a_group():
    """catchup_limit bounds a conversation's catch-up as a whole, also when the
    device was removed and invited back while offline: the newest entries."""
    with Server(shards=2, args=["--catchup-limit", "2"]) as srv:
        own = srv.login("owner", "o1")
        expect_ok(own.request("group.create", group="team", name="Team", members=["bob"]))
        expect_ok(own.send_message(group="team", body="m2"))
        expect_ok(own.request("group.kick", group="team", users=["bob"]))
        expect_ok(own.request("group.invite", group="team", users=["bob"]))
        expect_ok(own.send_message(group="team", body="m5"))
        expect_ok(own.send_message(group="team", body="m6"))
        _, got = catchup(srv, "bob", "phone")
        assert [p["seq"] for p in got if p.get("conv") == "g:team"] == [5, 6], got


def test_kicked_and_invited_again_while_offline():
    """Kicked and invited back while a device was offline: its catch-up brings
    what it missed up to the kick, then the group from the invite on, in seq
    order; also after a restart."""
    with Server(shards=2) as srv:
        o = member_gone_offline(srv)  # g created at seq 1, acked
        expect_ok(o.send_message(group="g", body="missed"))             # 2
        expect_ok(o.request("group.kick", group="g", users=["ann"]))    # 3
        expect_ok(o.request("group.invite", group="g", users=["ann"]))  # 4
        expect_ok(o.send_message(group="g", body="after"))              # 5
        want = [(2, "text"), (3, "event"), (4, "event"), (5, "text")]
        a, got = catchup(srv, "ann", "d1")
        assert [(p["seq"], p["type"]) for p in got if p["conv"] == "g:g"] == want, got
        a.close()
        o.close()
        time.sleep(0.3)
        srv.restart()
        b, got = catchup(srv, "ann", "d2")  # a new device: from where ann joined first
        assert [(p["seq"], p["type"]) for p in got if p["conv"] == "g:g"] == \
            [(1, "event")] + want, got
        b.close()

def test_kicked_twice_and_invited_back_while_offline():
    """Two removals and two invitations while a device was offline: every
    span of membership arrives, each up to its removal, in seq order; also
    after a restart, and on a new device from where the user first joined."""
    with Server(shards=2) as srv:
        o = member_gone_offline(srv)  # g created at seq 1, acked
        expect_ok(o.send_message(group="g", body="missed"))             # 2
        expect_ok(o.request("group.kick", group="g", users=["ann"]))    # 3
        expect_ok(o.request("group.invite", group="g", users=["ann"]))  # 4
        expect_ok(o.send_message(group="g", body="second"))             # 5
        expect_ok(o.request("group.kick", group="g", users=["ann"]))    # 6
        expect_ok(o.request("group.invite", group="g", users=["ann"]))  # 7
        expect_ok(o.send_message(group="g", body="after"))              # 8
        a, got = catchup(srv, "ann", "d1")
        assert [p["seq"] for p in got if p["conv"] == "g:g"] == [2, 3, 4, 5, 6, 7, 8], got
        a.close()
        o.close()
        time.sleep(0.3)
        srv.restart()
        b, got = catchup(srv, "ann", "d2")
        assert [p["seq"] for p in got if p["conv"] == "g:g"] == list(range(1, 9)), got
        b.close()


if __name__ == "__main__":
    rptest.main()
