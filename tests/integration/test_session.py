"""
Session layer of the wire protocol (PROTOCOL §1, §3, §4) against a live ringpushd:
hello, ping, tokens, malformed frames, fragmentation, replacement, device limit,
timeouts and graceful shutdown.
"""

import hashlib
import hmac
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time

import msgpack

import rptest
from rptest import Client, Server, expect_error, expect_ok, frame, raw_frame


def test_hello_ok_fields():
    with Server(shards=2) as srv:
        c = Client(srv)
        before = rptest.now_ms()
        r = c.hello("alice", "phone")
        after = rptest.now_ms()
        expect_ok(r)
        assert r["id"] == 1
        assert r["user"] == "alice" and r["device"] == "phone", r
        assert isinstance(r["heartbeat_ms"], int) and r["heartbeat_ms"] == 30000, r
        assert isinstance(r["server_time"], int), r
        assert before - 2000 <= r["server_time"] <= after + 2000, (before, r, after)
        assert r["max_frame"] == 65536, r
        assert isinstance(r["shard"], int) and 0 <= r["shard"] < 2, r
        # A fresh user with resume: catch-up is empty, then synced.
        assert c.push("synced")["op"] == "synced"
        c.ping()


def test_hello_reports_configured_limits():
    with Server(shards=1, args=["--heartbeat", "7", "--max-frame", "9000"]) as srv:
        r = expect_ok(Client(srv).hello("bob", "d1", resume=False))
        assert r["heartbeat_ms"] == 7000, r
        assert r["max_frame"] == 9000, r
        assert r["shard"] == 0, r


def test_max_frame_below_its_minimum_is_refused():
    """Below 8192 bytes a group's notice or a kick event could not fit a frame."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([rptest.server_binary(), "--max-frame", "8191", "--secret", "s",
                            "--data", d, "--port", "1"], capture_output=True, text=True,
                           timeout=20)
    assert p.returncode != 0 and "at least 8192" in p.stderr, (p.returncode, p.stderr)


def test_config_file_and_bad_settings():
    """--config=FILE is read like --config FILE; settings that cannot hold
    (an unknown log level, times or rates past their bounds, a secret from
    the environment too long to keep) stop the server at start."""
    with tempfile.TemporaryDirectory() as d:
        ini = os.path.join(d, "ringpushd.ini")
        with open(ini, "w") as f:
            f.write("heartbeat = 7\n")
        with Server(shards=1, args=["--config=" + ini]) as srv:
            r = expect_ok(Client(srv).hello("cfg", "d1", resume=False))
            assert r["heartbeat_ms"] == 7000, r
        base = [rptest.server_binary(), "--data", os.path.join(d, "data"), "--port", "1"]
        for extra, env, said in (
                (["--secret", "s", "--log-level", "bogus"], {}, "log-level"),
                (["--secret", "s", "--heartbeat", "5000000"], {}, "heartbeat"),
                (["--secret", "s", "--rate-burst", "4294968"], {}, "rate-burst"),
                (["--config", os.path.join(d, "missing.ini")], {}, "cannot read config"),
                ([], {"RINGPUSH_SECRET": "x" * 300}, "RINGPUSH_SECRET is too long")):
            e = dict(os.environ)
            e.update(env)
            p = subprocess.run(base + extra, capture_output=True, text=True, timeout=20, env=e)
            assert p.returncode != 0 and said in p.stderr, (extra, p.returncode, p.stderr)


def test_resume_false_no_synced():
    with Server(shards=2) as srv:
        c = Client(srv)
        expect_ok(c.hello("carol", "d1", resume=False))
        c.no_push(0.5, op="synced")


def test_ping_before_and_after_hello():
    with Server(shards=2) as srv:
        c = Client(srv)
        for _ in range(3):
            r = c.request("ping")
            assert r == {"op": "pong", "id": r["id"]}, r
        expect_ok(c.hello("dave", "d1", resume=False))
        r = c.request("ping", _id=4242)
        assert r["op"] == "pong" and r["id"] == 4242, r


def test_ping_with_a_bad_id_before_hello_is_bad_request():
    # ping is served before hello, so a ping with a mistyped id is a bad
    # ping (PROTOCOL §2: wrong type -> bad_request), as after hello.
    with Server(shards=1) as srv:
        c = Client(srv)
        for bad in ("x", -1, 2 ** 32, None, 1.5, b"\x01"):
            c.send({"op": "ping", "id": bad})
            r = c.recv(3)
            expect_error(r, "bad_request")
            assert "id" not in r, r
        c.send({"op": "ping"})
        expect_error(c.recv(3), "bad_request")
        # a hello with a bad id is a bad hello (not fatal), not "hello first"
        c.send({"op": "hello", "id": "1", "token": srv.token("kim"), "device": "d1"})
        expect_error(c.recv(3), "bad_request")
        c.ping()
        expect_ok(c.hello("kim", "d1", resume=False))


def test_ops_before_hello_unauthorized():
    with Server(shards=2) as srv:
        c = Client(srv)
        for op, fields in [("sync", {}), ("send", {"to": "bob", "cmid": "x", "type": "text",
                                                     "body": "hi"}),
                           ("history", {"conv": "d:a:b"}), ("group.list", {}),
                           ("friend.list", {}), ("nosuchop", {})]:
            r = c.request(op, fields)
            expect_error(r, "unauthorized", rid=r.get("id"))
            assert r.get("id") == c.next_id - 1, r
        # not fatal: the connection is still usable and can log in
        c.ping()
        expect_ok(c.hello("erin", "d1", resume=False))
        # the send above had no effect: nothing to catch up on for bob
        b = Client(srv)
        expect_ok(b.hello("bob", "d1"))
        p = b.push()
        assert p["op"] == "synced", p


def _signed(header, claims, secret):
    """A token over the exact JSON texts given, signed with HS256."""
    signing_input = rptest.b64url(header) + "." + rptest.b64url(claims)
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + rptest.b64url(mac)


def _bad_tokens(srv):
    good = srv.token("mallory")
    h, b, s = good.split(".")
    now = int(time.time())
    hs256 = '{"alg":"HS256","typ":"JWT"}'
    return {
        "alg none": rptest.token("mallory", alg="none", secret=srv.secret),
        "alg HS512": rptest.token("mallory", alg="HS512", secret=srv.secret),
        "alg HS256 header lie": rptest.token("mallory", alg="HS512", secret=srv.secret,
                                             header={"alg": "HS256"}),
        "bad signature": rptest.token("mallory", secret=srv.secret, bad_signature=True),
        "wrong secret": rptest.token("mallory", secret=srv.secret + "x"),
        "expired": rptest.token("mallory", secret=srv.secret, exp=time.time() - 60),
        "missing sub": rptest.token("mallory", secret=srv.secret, omit=("sub",)),
        "missing exp": rptest.token("mallory", secret=srv.secret, omit=("exp",)),
        "sub not a string": rptest.token("mallory", secret=srv.secret, claims={"sub": 12}),
        "exp not a number": rptest.token("mallory", secret=srv.secret, claims={"exp": "soon"}),
        "malformed text": "not-a-jwt",
        "empty": "",
        "sub with NUL": rptest.token("mallory", secret=srv.secret,
                                     claims={"sub": "mallory\u0000alice"}),
        "nbf ahead": rptest.token("mallory", secret=srv.secret, claims={"nbf": now + 600}),
        "nbf not a number": rptest.token("mallory", secret=srv.secret, claims={"nbf": "now"}),
        "duplicate sub": _signed(hs256, '{"sub":"mallory","sub":"carol","exp":%d}' % (now + 600),
                                 srv.secret),
        "duplicate alg": _signed('{"alg":"HS256","alg":"none"}',
                                 '{"sub":"mallory","exp":%d}' % (now + 600), srv.secret),
        "claims with trailing data": _signed(hs256, '{"sub":"mallory","exp":%d}{}' % (now + 600),
                                             srv.secret),
        "two parts": h + "." + b,
        "four parts": good + ".x",
        "garbage base64": "!!!.@@@.###",
        "truncated signature": h + "." + b + "." + s[:10],
    }


def test_bad_tokens_unauthorized_then_close():
    with Server(shards=2) as srv:
        for name, tok in _bad_tokens(srv).items():
            c = Client(srv)
            r = c.hello("mallory", "d1", token=tok)
            try:
                expect_error(r, "unauthorized")
                assert r.get("id") == 1, r
                assert c.closed(3), "connection stays open"
            except AssertionError as e:
                raise AssertionError("%s: %s" % (name, e))
            c.close()
        # the server is still fine
        expect_ok(Client(srv).hello("mallory", "d1", resume=False))


def test_token_time_claims():
    """Fractional NumericDates are accepted, and so is an nbf that has passed or
    lies within the server's few seconds of leeway."""
    with Server(shards=2) as srv:
        now = time.time()
        for name, claims in {
            "fractional exp": {"exp": now + 600.5},
            "nbf passed": {"nbf": now - 60.25},
            "nbf within leeway": {"nbf": int(now) + 2},
        }.items():
            c = Client(srv)
            r = c.hello("oscar", "d1", token=srv.token("oscar", claims=claims), resume=False)
            try:
                r = expect_ok(r)
                assert r["user"] == "oscar", r
            except AssertionError as e:
                raise AssertionError("%s: %s" % (name, e))
            c.close()


def test_hello_bad_request_not_fatal():
    with Server(shards=2) as srv:
        tok = srv.token("frank")
        cases = {
            "missing token": {"device": "d1"},
            "missing device": {"token": tok},
            "token not a string": {"token": 12345, "device": "d1"},
            "device not a string": {"token": tok, "device": 7},
            "resume not a bool": {"token": tok, "device": "d1", "resume": "yes"},
            "device too long": {"token": tok, "device": "d" * 33},
            "device empty": {"token": tok, "device": ""},
            "device bad char": {"token": tok, "device": "bad device"},
        }
        c = Client(srv)
        for name, fields in cases.items():
            r = c.request("hello", fields)
            try:
                expect_error(r, "bad_request", rid=c.next_id - 1)
            except AssertionError as e:
                raise AssertionError("%s: %s" % (name, e))
            c.ping()
        # still usable, and a device id of exactly 32 bytes is fine
        r = expect_ok(c.hello("frank", "D" * 32, resume=False))
        assert r["device"] == "D" * 32


def _fatal(srv, payload, code):
    c = Client(srv)
    c.send_raw(payload)
    f = c.recv(5)
    expect_error(f, code)
    assert "id" not in f, "a frame-level error carries no id: %r" % (f,)
    assert c.closed(3), "connection stays open after %s" % code
    c.close()


def test_zero_length_frame():
    with Server(shards=2) as srv:
        _fatal(srv, b"\0\0\0\0", "bad_frame")
        c = srv.login("gina")  # after hello too
        c.send_raw(b"\0\0\0\0")
        expect_error(c.recv(5), "bad_frame")
        assert c.closed(3)


def test_too_large():
    with Server(shards=2, args=["--max-frame", "8192"]) as srv:
        _fatal(srv, struct.pack(">I", 8193), "too_large")
        _fatal(srv, struct.pack(">I", 0xFFFFFFFF), "too_large")
        # exactly max_frame is accepted (a ping padded with an unknown key)
        c = Client(srv)
        sizes = {len(msgpack.packb({"op": "ping", "id": 9, "pad": "x" * n})): n
                 for n in range(8100, 8200)}
        data = msgpack.packb({"op": "ping", "id": 9, "pad": "x" * sizes[8192]})
        c.send_raw(raw_frame(data))
        r = c.recv(5)
        assert r == {"op": "pong", "id": 9}, r


def test_not_a_map_bad_frame():
    with Server(shards=2) as srv:
        for obj in ([1, 2, 3], 42, "ping", None, b"\x01\x02"):
            _fatal(srv, raw_frame(msgpack.packb(obj, use_bin_type=True)), "bad_frame")


def test_trailing_and_truncated_bad_frame():
    with Server(shards=2) as srv:
        ping = msgpack.packb({"op": "ping", "id": 1})
        _fatal(srv, raw_frame(ping + b"\xc0"), "bad_frame")  # trailing nil
        _fatal(srv, raw_frame(ping + ping), "bad_frame")  # two maps in one frame
        _fatal(srv, raw_frame(ping[:-1]), "bad_frame")  # truncated map
        _fatal(srv, raw_frame(b"\x81\xa1a"), "bad_frame")  # key without value
        _fatal(srv, raw_frame(b"\xc1"), "bad_frame")  # never-used type byte


def test_amplification_input():
    with Server(shards=2) as srv:
        bystander = srv.login("henry")
        # array32 announcing 2^31+ elements in a 5-byte frame
        _fatal(srv, raw_frame(b"\xdd\x97\x00\x00\x00"), "bad_frame")
        _fatal(srv, raw_frame(b"\xdf\xff\xff\xff\xff"), "bad_frame")  # map32, same idea
        _fatal(srv, raw_frame(b"\xdb\xff\xff\xff\xff"), "bad_frame")  # str32 past the end
        bystander.ping()
        expect_ok(Client(srv).hello("henry", "d2", resume=False))


def test_deeply_nested_values_are_no_bad_frame():
    # PROTOCOL §2: unknown keys are ignored; only bytes that are not exactly
    # one map are bad_frame. Nesting is not limited (docs/protocol.md §2.1).
    with Server(shards=1) as srv:
        c = Client(srv)
        for depth in (31, 32, 33, 100, 5000):
            p = b"\x83\xa2op\xa4ping\xa2id" + msgpack.packb(depth) + b"\xa5extra" + \
                b"\x91" * depth + b"\xc0"
            if depth <= 100:  # msgpack-python itself stops somewhere below 5000
                assert msgpack.unpackb(p)["op"] == "ping"
            c.send_raw(raw_frame(p))
            assert c.recv(3) == {"op": "pong", "id": depth}
        # as the value of a known key it is just the wrong type: not fatal
        expect_ok(c.hello("lou", "d1", resume=False))
        p = b"\x83\xa2op\xa7history\xa2id\x09\xa4conv" + b"\x91" * 40 + b"\xc0"
        c.send_raw(raw_frame(p))
        expect_error(c.recv(3), "bad_request", 9)
        c.ping()


def test_byte_by_byte():
    with Server(shards=2) as srv:
        c = Client(srv)
        data = frame({"op": "hello", "id": 1, "token": srv.token("ivan"), "device": "d1",
                      "resume": False}) + frame({"op": "ping", "id": 2})
        for i in range(len(data)):
            c.send_raw(data[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.002)
        expect_ok(c.reply(1))
        assert c.reply(2)["op"] == "pong"


def test_many_frames_one_write():
    with Server(shards=2) as srv:
        c = Client(srv)
        data = frame({"op": "ping", "id": 1000})
        data += frame({"op": "hello", "id": 1001, "token": srv.token("judy"), "device": "d1",
                       "resume": False})
        data += b"".join(frame({"op": "ping", "id": i}) for i in range(1, 151))
        c.send_raw(data)
        assert c.recv()["id"] == 1000
        expect_ok(c.recv())
        for i in range(1, 151):
            r = c.recv()
            assert r == {"op": "pong", "id": i}, (i, r)


def test_pushes_held_past_the_bound_during_a_login_answer_the_hello_first():
    """Pushes that arrive while a user's state loads wait for the session,
    up to half of outbound_limit; past it the session ends with bye slow.
    The hello is answered first (ok, then the bye), and the close counts in
    ringpush_bye_slow_total."""
    args = ["--durability", "none", "--rate-limit", "1000000", "--rate-burst", "1000000",
            "--outbound-limit", "262144"]
    with Server(shards=1, args=args) as srv:
        c = srv.login("big", "d0")
        ids = []
        for i in range(3000):  # a slow load: one read per conversation
            rid = c.new_id()
            c.send({"op": "send", "id": rid, "to": "p%d" % i, "cmid": "c%d" % i, "type": "text",
                    "body": "x"})
            ids.append(rid)
        for rid in ids:
            expect_ok(c.reply(rid, timeout=60))
        c.close()
        snd = srv.login("p1", "dd")
        slow = 0
        for trial in range(10):  # until one went past the bound
            if slow:
                break
            time.sleep(1)  # big's state is dropped once its last session is gone
            big = Client(srv, timeout=10)
            big.send({"op": "hello", "id": 1, "token": srv.token("big"), "device": "phone",
                      "resume": False})
            for k in range(12):
                snd.send({"op": "send", "id": 1000 + trial * 100 + k, "to": "big",
                          "cmid": "t%d-%d" % (trial, k), "type": "text", "body": "y" * 30000})
            first = big.recv(timeout=30)
            assert first.get("op") == "ok" and first.get("id") == 1, first
            while True:
                try:
                    f = big.recv(timeout=2)
                except TimeoutError:
                    break
                except rptest.ConnectionClosed:
                    break
                if f.get("op") == "bye":
                    assert f.get("reason") == "slow", f
                    slow += 1
                    break
            big.close()
            for k in range(12):
                expect_ok(snd.reply(1000 + trial * 100 + k, timeout=10))
        assert slow > 0, "no session went past the bound: nothing tested"
        status, text = srv.admin("GET", "/metrics")
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("ringpush_bye_slow_total{"))
        assert counted == slow, (counted, slow)


def test_replacement():
    with Server(shards=2) as srv:
        old = srv.login("kate", "laptop")
        other = srv.login("kate", "phone")
        new = Client(srv)
        expect_ok(new.hello("kate", "laptop", resume=False))
        bye = old.push("bye", timeout=5)
        assert bye == {"op": "bye", "reason": "replaced"}, bye
        assert old.closed(3)
        new.ping()
        other.ping()  # another device of the same user is untouched


def test_max_devices_conflict():
    with Server(shards=2, args=["--max-devices", "2"]) as srv:
        a = srv.login("leo", "d1")
        b = srv.login("leo", "d2")
        c = Client(srv)
        r = c.hello("leo", "d3", resume=False)
        expect_error(r, "conflict", rid=1)
        assert c.closed(3)
        a.ping()
        b.ping()
        # replacing an existing device does not count as a new one
        a2 = srv.login("leo", "d1")
        assert a.push("bye")["reason"] == "replaced"
        a2.ping()
        # another user is not affected
        srv.login("mia", "d1")
        srv.login("mia", "d2")
        # after one device leaves, a new one fits
        b.close()
        d3 = rptest.wait_until(lambda: _try_login(srv, "leo", "d3"), 5, 0.1, "a free device slot")
        d3.ping()


def _try_login(srv, user, device):
    c = Client(srv)
    r = c.hello(user, device, resume=False)
    if r.get("op") == "ok":
        return c
    c.close()
    return None


def test_hello_timeout():
    with Server(shards=2, args=["--hello-timeout", "1", "--idle-timeout", "60"]) as srv:
        silent = Client(srv)
        pinger = Client(srv)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4 and not pinger.eof:
            try:
                pinger.request("ping", _timeout=1)
            except rptest.ConnectionClosed:
                break
            time.sleep(0.2)
        assert pinger.closed(0.5), "pings do not stand in for a hello"
        assert silent.closed(3)
        assert time.monotonic() - t0 < 5
        # a connection that logs in in time stays
        c = srv.login("nina")
        time.sleep(1.5)
        c.ping()


def test_timeouts_are_never_early():
    """The hello and idle timeouts close a connection after their time, never
    before (the server's clock ticks by whole seconds)."""
    with Server(shards=1, args=["--hello-timeout", "1", "--heartbeat", "1",
                                "--idle-timeout", "1"]) as srv:
        for _ in range(3):
            t0 = time.monotonic()
            c = Client(srv)
            assert c.closed(4)
            dt = time.monotonic() - t0
            assert 1.0 <= dt < 3.0, dt
            time.sleep(0.3)  # another phase of the second
        for _ in range(2):
            c = srv.login("tina", "d", resume=False)
            t0 = time.monotonic()  # after the hello's ok: the last frame was before it
            assert c.closed(4)
            dt = time.monotonic() - t0
            assert 0.95 <= dt < 3.0, dt
            time.sleep(0.3)


def test_idle_timeout():
    with Server(shards=2, args=["--heartbeat", "1", "--idle-timeout", "2"]) as srv:
        busy = srv.login("oscar", "d1")
        idle = srv.login("oscar", "d2")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            busy.ping()
            time.sleep(0.5)
        assert idle.closed(2), "idle connection still open"
        busy.ping()


def test_graceful_shutdown():
    srv = Server(shards=2)
    with srv:
        clients = [srv.login("user%d" % i, "d%d" % (i % 3)) for i in range(12)]
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGTERM, timeout=5)
        assert rc == 0, "exit code %r\n%s" % (rc, srv.stderr_tail())
        assert time.monotonic() - t0 < 5
        for c in clients:
            bye = c.push("bye", timeout=1)
            assert bye == {"op": "bye", "reason": "shutdown"}, bye
            assert c.closed(1)


def test_sigint_shutdown():
    srv = Server(shards=2)
    with srv:
        c = srv.login("paul")
        pre = Client(srv)  # connected, no hello yet
        pre.ping()
        rc = srv.stop(signal.SIGINT, timeout=5)
        assert rc == 0, "exit code %r\n%s" % (rc, srv.stderr_tail())
        assert c.push("bye", timeout=1)["reason"] == "shutdown"
        assert c.closed(1) and pre.closed(1)
        try:
            socket.create_connection((srv.host, srv.port), timeout=1).close()
            raise AssertionError("port still accepts after shutdown")
        except OSError:
            pass


if __name__ == "__main__":
    rptest.main()
