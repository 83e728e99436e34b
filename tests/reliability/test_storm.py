"""
Connection storms (ARCHITECTURE "bounded memory", "connections die later").

CYCLES connect / hello / disconnect cycles from several processes and source
addresses, mixing the ways a connection can end: after the hello reply, right
after sending hello (before the reply, often mid-handoff to the home shard),
with half a frame sent, before sending anything, with a bad token, and as a
replaced device. Checked:
- every full cycle got its hello reply;
- the server's resident memory after the storm is back within STORM_SLACK_MB
  of its level after a warm-up of the same storm (no per-connection leak: 20,000
  leaked connections of even 1 KiB would show);
- the server has no connection left (metrics), still serves, and exits 0 on
  SIGTERM, which under LeakSanitizer means no leak at all.

Sizes: RP_SIZE_STORM_CYCLES (2000; soak 20000).
"""

import multiprocessing
import socket
import struct
import time

import msgpack

import rptest
from rptest import Server, frame

import reltools

CYCLES = reltools.size("storm_cycles", 2000, 20000)
WORKERS = 4
SLACK_MB = reltools.size("storm_slack_mb", 8, 8)


def _read_frame(s):
    buf = b""
    while len(buf) < 4:
        chunk = s.recv(4 - len(buf))
        if not chunk:
            return None
        buf += chunk
    n = struct.unpack(">I", buf)[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return msgpack.unpackb(body, raw=False)


def _worker(w, host, port, secret, start, count, out):
    ok = bad = 0
    errors = []
    for i in range(start, start + count):
        kind = i % 6
        user = "st%05d" % (i % 500)
        try:
            s = socket.create_connection((host, port), timeout=10.0,
                                         source_address=("127.0.0.%d" % (2 + w), 0))
        except OSError as e:
            errors.append("connect: %r" % e)
            continue
        try:
            tok = rptest.token(user, secret=secret if kind != 4 else "wrong")
            hello = frame({"op": "hello", "id": 1, "token": tok, "device": "d%d" % (i % 3),
                           "resume": i % 2 == 0})
            if kind == 0 or kind == 4 or kind == 5:
                s.sendall(hello)
                r = _read_frame(s)
                want = "error" if kind == 4 else "ok"
                if r is None or r.get("op") != want:
                    bad += 1
                    errors.append("hello %d: %r" % (kind, r))
                else:
                    ok += 1
                if kind == 5:
                    s.sendall(frame({"op": "ping", "id": 2}))
            elif kind == 1:
                s.sendall(hello)  # and leave at once
            elif kind == 2:
                s.sendall(hello[:len(hello) // 2])
            # kind 3: connect and leave
        except OSError as e:
            errors.append("cycle %d: %r" % (kind, e))
        finally:
            s.close()
    out.put((ok, bad, errors[:5]))


def _storm(srv, cycles):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    per = cycles // WORKERS
    procs = [ctx.Process(target=_worker, args=(w, srv.host, srv.port, srv.secret, w * per, per,
                                                out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    res = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    ok = sum(r[0] for r in res)
    bad = sum(r[1] for r in res)
    errors = [e for r in res for e in r[2]]
    assert bad == 0 and not errors, "%d failed hellos, errors %r" % (bad, errors[:5])
    return ok


def _open_conns(srv):
    status, text = srv.admin("GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith("ringpush_connections{") or line.startswith("ringpush_connections "):
            total += float(line.split()[-1])
    return total


def test_connection_storm():
    # A 1 MiB quarantine: freed memory is reused at once, so RSS follows live memory.
    env = {"ASAN_OPTIONS": reltools.ASAN_OPTIONS.replace("quarantine_size_mb=16",
                                                         "quarantine_size_mb=1")}
    with Server(shards=2, env=env) as srv:
        _storm(srv, CYCLES)  # warm-up: caches, slabs and allocator arenas
        base = reltools.settle_rss(srv, 2.0)
        t0 = time.monotonic()
        ok = _storm(srv, CYCLES)
        elapsed = time.monotonic() - t0
        after = reltools.settle_rss(srv, 2.0)
        left = _open_conns(srv)  # None: no admin metrics to ask
        print("  %d cycles (%d full hellos) in %.1fs; rss %d -> %d KiB (%+d KiB)" % (
            CYCLES, ok, elapsed, base, after, after - base), flush=True)
        if left is not None:
            rptest.wait_until(lambda: _open_conns(srv) == 0, timeout=15.0,
                              what="every storm connection closed (ringpush_connections 0)")
        assert after - base <= SLACK_MB * 1024, \
            "rss grew by %d KiB over %d cycles (bound %d MiB)" % (after - base, CYCLES, SLACK_MB)
        assert reltools.alive(srv)
    # leaving the with-block: SIGTERM, exit status 0 (LeakSanitizer clean)


if __name__ == "__main__":
    rptest.main(timeout=1800)
