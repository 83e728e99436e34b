"""
Group fan-out against a live ringpushd: a group of 2,000 members, every member
online on its own connection (several client processes), gets every message
of a sender exactly once and in order. fanout_10k.py runs the same with
10,000 members and prints timings.
"""

import asyncio
import multiprocessing
import os
import struct
import sys
import time

import rptest
from rptest import Server, expect_ok, frame, decode_frame_payload

GROUP = "big"
CONV = "g:" + GROUP


async def _read(reader):
    n = struct.unpack(">I", await reader.readexactly(4))[0]
    return decode_frame_payload(await reader.readexactly(n))


async def _member(host, port, user, tok, nmsgs, ready, go, deadline, out, sem):
    async with sem:  # a bounded number of logins in progress
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(frame({"op": "hello", "id": 1, "token": tok, "device": "d",
                            "resume": False}))
        r = await _read(reader)
    if r.get("op") != "ok":
        out[user] = ("hello refused: %r" % (r,), [], 0.0)
        writer.close()
        ready()
        return
    ready()
    await go.wait()
    seqs, last_at = [], 0.0
    try:
        while len(seqs) < nmsgs:
            left = deadline() - time.time()
            if left <= 0:
                break
            f = await asyncio.wait_for(_read(reader), left)
            if f.get("op") == "msg" and f.get("conv") == CONV:
                seqs.append(f["seq"])
                last_at = time.time()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        out[user] = ("%r" % (e,), seqs, last_at)
        writer.close()
        return
    out[user] = (None, seqs, last_at)
    writer.close()


def _worker(host, port, users, secret, nmsgs, ready_q, go_ev, done_q, timeout):
    async def run():
        out = {}
        go = asyncio.Event()
        loop = asyncio.get_running_loop()
        count = [0]
        end = [time.time() + timeout]

        def ready():
            count[0] += 1
            if count[0] == len(users):
                ready_q.put(len(users))

        async def wait_go():
            await loop.run_in_executor(None, go_ev.wait, timeout)
            end[0] = time.time() + timeout
            go.set()

        sem = asyncio.Semaphore(200)

        async def one(u):
            await _member(host, port, u, rptest.token(u, secret=secret), nmsgs, ready, go,
                          lambda: end[0], out, sem)

        await asyncio.gather(wait_go(), *(one(u) for u in users))
        return out

    try:
        out = asyncio.run(run())
    except BaseException as e:  # report, never hang the parent
        out = {u: ("worker: %r" % (e,), [], 0.0) for u in users}
        ready_q.put(len(users))
    done_q.put(out)


def run_fanout(srv, nmembers, nmsgs, workers=4, timeout=120.0, log=None):
    """Create the group, connect every member, send nmsgs; return a report dict.
    Every member must get seqs first+1..first+nmsgs, once each, in order."""
    say = log or (lambda *_: None)
    owner = srv.login("owner", "o", resume=False)
    members = ["m%05d" % i for i in range(nmembers)]
    t0 = time.time()
    expect_ok(owner.request("group.create", group=GROUP, name="Big", members=members[:499],
                            _timeout=60))
    for i in range(499, nmembers, 500):
        expect_ok(owner.request("group.invite", group=GROUP, users=members[i:i + 500],
                                _timeout=60))
    info = expect_ok(owner.request("group.info", group=GROUP))
    assert info["count"] == nmembers + 1, info
    first = info["last_seq"]
    say("group of %d members created in %.2fs" % (nmembers + 1, time.time() - t0))
    ctx = multiprocessing.get_context("fork")
    ready_q, done_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    parts = [members[w::workers] for w in range(workers)]
    procs = [ctx.Process(target=_worker, args=(srv.host, srv.port, p, srv.secret, nmsgs,
                                                ready_q, go, done_q, timeout))
             for p in parts]
    t0 = time.time()
    for p in procs:
        p.start()
    try:
        n = 0
        while n < nmembers:
            n += ready_q.get(timeout=timeout)
        say("%d members online in %.2fs" % (nmembers, time.time() - t0))
        status, pres = srv.admin("GET", "/v1/users/" + members[-1])
        go.set()
        sent = []
        for i in range(nmsgs):
            t = time.time()
            r = expect_ok(owner.send_message(group=GROUP, body="fan %d" % i, cmid="fan%d" % i))
            sent.append((r["seq"], t, time.time()))
        out = {}
        for _ in procs:
            out.update(done_q.get(timeout=timeout + 30))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    want = list(range(first + 1, first + 1 + nmsgs))
    bad = {u: v for u, v in out.items() if v[0] or v[1] != want}
    lasts = sorted(v[2] for v in out.values() if not v[0])
    report = {
        "members": nmembers,
        "messages": nmsgs,
        "bad": len(bad) + (nmembers - len(out)),
        "examples": list(bad.items())[:3],
        "send_ok_ms": [round((b - a) * 1000, 1) for _, a, b in sent],
        "last_delivery_after_last_send_ms":
            round((lasts[-1] - sent[-1][1]) * 1000, 1) if lasts else None,
        "median_member_done_after_last_send_ms":
            round((lasts[len(lasts) // 2] - sent[-1][1]) * 1000, 1) if lasts else None,
        "pushes": sum(len(v[1]) for v in out.values()),
        "presence": (status, pres),
    }
    owner.close()
    return report


def test_group_of_2000_gets_every_message():
    with Server(shards=2) as srv:
        rep = run_fanout(srv, 2000, 5, workers=4)
        assert rep["bad"] == 0, rep["examples"]
        assert rep["pushes"] == 2000 * 5, rep


async def _leaving_run(srv, members, nmsgs):
    """Every member online; the owner sends nmsgs without waiting between
    them; odd members reset their connection on the first message. Returns
    (even members' seqs, send replies, a ping's reply after it all)."""
    sem = asyncio.Semaphore(200)

    async def login(user):
        async with sem:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(frame({"op": "hello", "id": 1, "token": srv.token(user),
                                "device": "d", "resume": False}))
            r = await asyncio.wait_for(_read(reader), 30)
            assert r.get("op") == "ok", (user, r)
            return reader, writer

    conns = await asyncio.gather(*(login(u) for u in members))
    owner_r, owner_w = await login("owner")

    async def member(i, reader, writer):
        seqs = []
        try:
            while len(seqs) < nmsgs:
                f = await asyncio.wait_for(_read(reader), 60)
                if f.get("op") == "msg" and f.get("conv") == "g:leave":
                    seqs.append(f["seq"])
                    if i % 2:
                        writer.transport.abort()  # a reset with pushes still coming
                        return None
        finally:
            writer.close()
        return seqs

    readers = [asyncio.ensure_future(member(i, r, w)) for i, (r, w) in enumerate(conns)]
    for k in range(nmsgs):
        owner_w.write(frame({"op": "send", "id": 10 + k, "group": "leave", "cmid": "l%d" % k,
                             "type": "text", "body": "leave %d" % k}))
    await owner_w.drain()
    replies = [await asyncio.wait_for(_read(owner_r), 60) for _ in range(nmsgs)]
    got = await asyncio.gather(*readers)
    # the slots of the reset connections are taken again by new sessions
    again = await asyncio.gather(*(login(u) for u in members[1::2]))
    for _, w in again:
        w.close()
    owner_w.write(frame({"op": "ping", "id": 99}))
    pong = await asyncio.wait_for(_read(owner_r), 30)
    owner_w.close()
    return [g for g in got if g is not None], replies, pong


def test_members_leaving_during_fanout():
    """One shard sends a fan-out a few connections per loop pass; connections
    reset while their pushes wait their turn must not disturb the others, nor
    the sessions that take their slots next."""
    with Server(shards=1) as srv:
        owner = srv.login("owner", "o", resume=False)
        members = ["v%04d" % i for i in range(800)]
        expect_ok(owner.request("group.create", group="leave", name="Leave",
                                members=members[:499], _timeout=60))
        expect_ok(owner.request("group.invite", group="leave", users=members[499:],
                                _timeout=60))
        first = expect_ok(owner.request("group.info", group="leave"))["last_seq"]
        owner.close()
        nmsgs = 30
        got, replies, pong = asyncio.run(_leaving_run(srv, members, nmsgs))
        assert [r.get("op") for r in replies] == ["ok"] * nmsgs, replies[:3]
        want = list(range(first + 1, first + 1 + nmsgs))
        assert len(got) == len(members) // 2
        bad = [g for g in got if g != want]
        assert not bad, bad[:3]
        assert pong.get("op") == "pong", pong
        assert srv.running()


if __name__ == "__main__":
    rptest.main()
