"""
Slow consumers (PROTOCOL §4 bye slow, §8 outbound bound; ARCHITECTURE "bounded
memory").

N clients that never read (small receive buffers, so the kernel absorbs little)
are members of a group that receives M messages. Checked:
- the server's resident memory stays under baseline + N x outbound_limit x 2 +
  SLACK_MB (RocksDB memtables and allocator slack); without the bound every
  slow client would hold all M messages;
- every slow client gets {"op":"bye","reason":"slow"}, then the close, and every
  frame before it is well formed with strictly increasing seqs;
- on reconnect each gets a catch-up that ends at the group's last seq and is
  contiguous, then synced; a sample of them reads the whole log with history
  and has every entry 1..last_seq with the bodies that were sent.
And a regression: an overflow in the middle of the fan-out to one user's
several devices (the closing session was freed while the fan-out walked the
session list).

Sizes: RP_SIZE_SLOW_CLIENTS (200; soak 1000), RP_SIZE_SLOW_MESSAGES (4000;
soak 100000), RP_SIZE_SLOW_BODY bytes (256).
"""

import resource
import socket
import struct
import threading
import time

import msgpack

import rptest
from rptest import Client, Server, expect_ok, frame

import reltools

CLIENTS = reltools.size("slow_clients", 200, 1000)
MESSAGES = reltools.size("slow_messages", 4000, 100000)
BODY = reltools.size("slow_body", 256, 256)
OUTBOUND = 64 * 1024
SLACK_MB = reltools.size("slow_slack_mb", 96, 160)
GROUP = "slowg"
SAMPLE = 5


def _frames(data):
    """Decode a byte stream of frames; returns (frames, leftover bytes)."""
    out, i = [], 0
    while len(data) - i >= 4:
        n = struct.unpack(">I", data[i:i + 4])[0]
        if len(data) - i - 4 < n:
            break
        out.append(msgpack.unpackb(data[i + 4:i + 4 + n], raw=False))
        i += 4 + n
    return out, data[i:]


def _publish(srv, n, body):
    """n group sends, pipelined with a window; returns the last seq."""
    c = Client(srv, timeout=60.0)
    expect_ok(c.hello("pub", "p", resume=False))
    window, sent, done, last = 256, 0, 0, 0
    first_id = c.next_id
    while done < n:
        while sent < n and sent - done < window:
            c.send({"op": "send", "id": first_id + sent, "group": GROUP, "cmid": "m%d" % sent,
                    "type": "text", "body": body % sent})
            sent += 1
        r = c.reply(first_id + done, timeout=60.0)
        assert r.get("op") == "ok", r
        last = max(last, r["seq"])
        done += 1
    c.close()
    return last


def test_slow_consumers():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CLIENTS + 4096), hard))
    # catchup_limit x entry size stays under the outbound bound here (see
    # test_catchup_larger_than_outbound_limit for when it does not).
    args = ["--outbound-limit", str(OUTBOUND), "--rate-limit", "1000000", "--rate-burst",
            "1000000", "--catchup-limit", "100"]
    users = ["slow%04d" % i for i in range(CLIENTS)]
    body = "%08d" + "b" * (BODY - 8)
    with Server(shards=2, args=args, env=reltools.server_env()) as srv:
        owner = srv.login("pub", "setup")
        expect_ok(owner.request("group.create", name="slow", group=GROUP))
        for i in range(0, CLIENTS, 500):
            expect_ok(owner.request("group.invite", group=GROUP, users=users[i:i + 500],
                                    _timeout=60.0))
        owner.close()
        socks = []
        for i, u in enumerate(users):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.bind(("127.0.0.%d" % (2 + i % 8), 0))
            s.connect((srv.host, srv.port))
            s.sendall(frame({"op": "hello", "id": 1, "token": srv.token(u), "device": "d",
                             "resume": False}))
            socks.append(s)
        time.sleep(1.0)
        base = reltools.settle_rss(srv, 0.5)
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], reltools.rss_kb(srv))
                except OSError:
                    return
                time.sleep(0.1)
        t = threading.Thread(target=sample)
        t.start()
        t0 = time.monotonic()
        try:
            last_seq = _publish(srv, MESSAGES, body)
        finally:
            stop.set()
            t.join()
        elapsed = time.monotonic() - t0
        bound_kb = base + CLIENTS * OUTBOUND * 2 // 1024 + SLACK_MB * 1024
        unbounded_mb = CLIENTS * MESSAGES * (BODY + 60) / 1e6
        print("  %d messages to %d slow members in %.1fs; rss %d -> peak %d MiB "
              "(bound %d MiB; unbounded queues would hold %.0f MB)" % (
                  MESSAGES, CLIENTS, elapsed, base // 1024, peak[0] // 1024, bound_kb // 1024,
                  unbounded_mb), flush=True)
        assert peak[0] <= bound_kb, "server rss peaked at %d MiB, bound %d MiB" % (
            peak[0] // 1024, bound_kb // 1024)

        # Now read what each got: frames, then bye slow, then the close.
        no_bye = []
        for u, s in zip(users, socks):
            s.settimeout(20.0)
            data = b""
            try:
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    data += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            frames, rest = _frames(data)
            assert not rest, "%s: a partial frame before the close (%d bytes)" % (u, len(rest))
            assert frames and frames[0].get("op") == "ok", (u, frames[:1])
            seqs = [f["seq"] for f in frames if f.get("op") == "msg" and f["conv"] == "g:" + GROUP]
            assert all(a < b for a, b in zip(seqs, seqs[1:])), "%s: seqs not increasing" % u
            if frames[-1] != {"op": "bye", "reason": "slow"}:
                no_bye.append((u, len(seqs), frames[-1]))
            s.close()
        assert not no_bye, "%d slow clients without bye slow, e.g. %r" % (len(no_bye),
                                                                            no_bye[:3])

        # Reconnect: catch-up ends at last_seq, contiguous; a sample reads it all.
        for i, u in enumerate(users):
            c = Client(srv, timeout=30.0)
            expect_ok(c.hello(u, "d", resume=True))
            got, frames = reltools.catchup(c)
            seqs = got.get("g:" + GROUP, [])
            assert seqs and seqs[-1] == last_seq and seqs == list(range(seqs[0], last_seq + 1)), \
                "%s: catch-up %r..%r, last_seq %d" % (u, seqs[:1], seqs[-1:], last_seq)
            if i < SAMPLE:
                entries = reltools.history_all(c, "g:" + GROUP)
                msgs = [e for e in entries if e["type"] == "text"]
                assert [e["seq"] for e in entries] == list(range(entries[0]["seq"],
                                                                 last_seq + 1)), u
                assert len(msgs) == MESSAGES, "%s: %d of %d messages" % (u, len(msgs), MESSAGES)
                assert [m["body"] for m in msgs] == [body % k for k in range(MESSAGES)], u
            c.close()


def test_catchup_larger_than_outbound_limit():
    # A client that reads promptly must be able to resume even when its
    # catch-up (up to catchup_limit entries of up to max_body bytes: 200 x
    # 32 KiB by default, more than the default 4 MiB outbound bound) is larger
    # than the outbound bound. Here: 200 entries of 1 KiB against 64 KiB.
    args = ["--outbound-limit", "65536", "--catchup-limit", "200"]
    with Server(shards=2, args=args, env=reltools.server_env()) as srv:
        a = srv.login("cua", "d")
        for i in range(200):
            expect_ok(a.send_message(to="cub", body="%04d" % i + "c" * 1020))
        for attempt in range(3):
            c = Client(srv, timeout=30.0)
            expect_ok(c.hello("cub", "d", resume=True))
            try:
                got, _ = reltools.catchup(c)
            except rptest.ConnectionClosed as e:
                raise AssertionError("attempt %d: %s" % (attempt, e))
            c.close()
            assert got[reltools.direct_conv("cua", "cub")] == list(range(1, 201)), got


def test_overflow_while_pushing_to_several_devices():
    # A push that overflows one device's queue closes that connection in the
    # middle of the fan-out to the user's devices; the fan-out must go on with
    # the others (and the server must stay up). The body is larger than the
    # queue bound, so every device of the recipient overflows on this entry.
    with Server(shards=2, args=["--outbound-limit", "1024"], env=reltools.server_env()) as srv:
        a = srv.login("ova", "d")
        devs = [srv.login("ovb", "d%d" % i) for i in range(3)]
        expect_ok(a.send_message(to="ovb", body="z" * 1500))
        for d in devs:
            assert d.push("bye", timeout=10.0) == {"op": "bye", "reason": "slow"}
            assert d.closed(5.0)
        assert reltools.alive(srv), "ringpushd died:\n" + srv.stderr_tail(30)
        expect_ok(a.send_message(to="ovc", body="still up"))


def test_overflow_with_a_long_write_in_flight():
    # Pushes pipelined by a fast sender queue many frames per loop pass, so
    # the write in flight when the queue overflows holds many of them. The
    # overflow may drop only what is not in that write: the client then reads
    # well-formed frames, its seqs contiguous, and the bye last.
    args = ["--outbound-limit", "65536", "--rate-limit", "1000000", "--rate-burst", "1000000"]
    with Server(shards=1, args=args, env=reltools.server_env()) as srv:
        owner = srv.login("lwa", "d")
        expect_ok(owner.request("group.create", name="lw", group="lw", members=["lwb"]))
        first = expect_ok(owner.request("group.info", group="lw"))["last_seq"]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((srv.host, srv.port))
        s.sendall(frame({"op": "hello", "id": 1, "token": srv.token("lwb"), "device": "d",
                         "resume": False}))
        window, sent, done, n = 16, 0, 0, 6000
        first_id = owner.next_id
        while done < n:
            while sent < n and sent - done < window:
                owner.send({"op": "send", "id": first_id + sent, "group": "lw",
                            "cmid": "lw%d" % sent, "type": "text",
                            "body": "%04d" % sent + "w" * 1020})
                sent += 1
            expect_ok(owner.reply(first_id + done, timeout=60.0))
            done += 1
        data = b""
        s.settimeout(20.0)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        frames, rest = _frames(data)
        assert rest == b"", "%d bytes of a partial frame at the end" % len(rest)
        assert frames[0].get("op") == "ok", frames[0]
        assert frames[-1] == {"op": "bye", "reason": "slow"}, frames[-3:]
        msgs = [f for f in frames if f.get("op") == "msg"]
        seqs = [f["seq"] for f in msgs]
        assert seqs == list(range(first + 1, first + 1 + len(seqs))), seqs[:3] + seqs[-3:]
        assert 0 < len(seqs) < n, len(seqs)
        for f in msgs:
            assert f["body"] == "%04d" % (f["seq"] - first - 1) + "w" * 1020, f["seq"]
        assert reltools.alive(srv), "ringpushd died:\n" + srv.stderr_tail(30)


if __name__ == "__main__":
    rptest.main(timeout=1800)
