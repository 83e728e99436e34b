"""
Many concurrent connections (5,000, from several client processes and source
addresses) against ringpushd with 2 and with 4 shards: every one says hello and
answers a ping while all are open, every device of a user is handed to the
same home shard, and every shard is home to some users.
"""

import collections
import socket
import time

import rptest
from rptest import Client, Server

CONNECTIONS = 5000
DEVICES_PER_USER = 5
SOURCES = ["127.0.0.%d" % i for i in range(2, 10)]


def _logins(prefix, n=CONNECTIONS, devices=DEVICES_PER_USER):
    return [("%s%04d" % (prefix, i // devices), "dev%d" % (i % devices)) for i in range(n)]


def _check(results, shards):
    failures = [r for r in results if r is None or r["error"] or
                not r["hello"] or r["hello"].get("op") != "ok" or not r["pong"]]
    assert not failures, "%d of %d connections failed, e.g. %r" % (
        len(failures), len(results), failures[:3])
    per_user = collections.defaultdict(set)
    for r in results:
        h = r["hello"]
        assert h["user"] == r["user"] and h["device"] == r["device"], h
        assert isinstance(h.get("shard"), int) and 0 <= h["shard"] < shards, h
        per_user[r["user"]].add(h["shard"])
    split = {u: s for u, s in per_user.items() if len(s) != 1}
    assert not split, "devices of one user on several shards: %r" % (list(split.items())[:5],)
    homes = collections.Counter(next(iter(s)) for s in per_user.values())
    assert set(homes) == set(range(shards)), "shards without users: %r" % (homes,)
    return homes


def _run(shards, prefix):
    with Server(shards=shards, start_timeout=60) as srv:
        t0 = time.monotonic()
        results = rptest.swarm(srv, _logins(prefix), workers=4, sources=SOURCES, timeout=100)
        homes = _check(results, shards)
        print("  %d shards: %d connections in %.1fs, users per shard %s" % (
            shards, len(results), time.monotonic() - t0, dict(sorted(homes.items()))))
        # the server is still responsive once they are gone
        c = Client(srv)
        rptest.expect_ok(c.hello(prefix + "0000", "dev0", resume=False))
        c.ping()


def test_5000_connections_2_shards():
    _run(2, "two")


def test_5000_connections_4_shards():
    _run(4, "four")


def test_devices_of_one_user_same_shard_sequential():
    # The same property, one connection at a time, with live pings on every device.
    with Server(shards=4) as srv:
        for u in range(8):
            user = "seq%d" % u
            conns = [srv.login(user, "d%d" % d) for d in range(4)]
            shards = set()
            for c in conns:
                c.ping()
            for d in range(4):
                c = Client(srv)
                r = rptest.expect_ok(c.hello(user, "d%d" % d, resume=False))
                shards.add(r["shard"])
                conns[d].push("bye")
                conns[d] = c
            assert len(shards) == 1, (user, shards)

def test_full_connection_table_pauses_accepting():
    """With the shard's connection table full, accepting pauses until the
    next tick rather than failing again at once, and resumes once a
    connection closes: the queued client is then served."""
    with Server(shards=1, args=["--max-conns", "8"]) as srv:
        held = []
        for i in range(8):
            c = Client(srv)
            rptest.expect_ok(c.hello("full%d" % i, "d", resume=False))
            held.append(c)
        queued = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(4)]
        time.sleep(2.5)
        lines = srv.stderr_text().count("accept_paused")
        assert 1 <= lines <= 6, "%d accept_paused lines in 2.5 s" % lines
        for s in queued:
            s.close()
        held.pop().close()

        def served():
            # at the edge of a full table a connection may still be refused
            # (closed at once); a client reconnects, as clients do
            try:
                late = Client(srv)
                rptest.expect_ok(late.hello("late", "d", resume=False))
                late.ping()
                late.close()
                return True
            except (rptest.ConnectionClosed, OSError):
                return False
        rptest.wait_until(served, timeout=10.0, what="a client served after one closed")


if __name__ == "__main__":
    rptest.main(timeout=180)
