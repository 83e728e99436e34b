"""
kill -9 under load (PROTOCOL §5 durability, dedup and ack cursors; ARCHITECTURE
"durable before visible", "gapless order").

Each round: sender threads send direct and group messages as fast as the server
acknowledges them and record every acknowledged (cmid -> conv, seq); receiver
threads read pushes, check that seqs strictly increase per conversation within
the session, and ack each one. At a random moment the server gets SIGKILL and
is restarted on the same data directory. Then:
- every acknowledged entry is in the log at its seq with its cmid and sender;
- every conversation's seqs are exactly 1..last_seq;
- every receiver resumes (catch-up) with no hole after its last ack;
- a send that was in flight at the crash, retried with its cmid, comes back as
  dup (of the one entry written) or as exactly one new entry;
- an acknowledged send retried comes back as dup with the same conv and seq.

Sizes: RP_SIZE_ROUNDS (5; soak 20), RP_SIZE_SENDERS (4; soak 8).
"""

import random
import threading
import time

import rptest
from rptest import Client, ConnectionClosed, Server, expect_ok

import reltools

ROUNDS = reltools.size("rounds", 5, 20)
SENDERS = reltools.size("senders", 4, 8)
RECEIVERS = 2
GROUP = "crashg"
ERRORS = (ConnectionClosed, OSError, TimeoutError, AssertionError)


class Ledger:
    """What the clients were told, shared by all threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # (sender, cmid) -> (conv, seq)
        self.pending = {}  # (sender, cmid) -> request fields, sent but not answered
        self.last_ack = {}  # (receiver, conv) -> highest seq acked
        self.faults = []  # in-session violations seen by receivers

    def fault(self, text):
        with self.lock:
            self.faults.append(text)


def sender(srv, user, ledger, stop, rnd):
    try:
        c = Client(srv, timeout=10.0)
        expect_ok(c.hello(user, "s", resume=False))
    except ERRORS:
        return
    n = 0
    while not stop.is_set():
        n += 1
        cmid = "%s-r%d-%d" % (user, rnd, n)
        if n % 3 == 0:
            fields = {"group": GROUP}
        else:
            fields = {"to": "rcv%d" % (n % RECEIVERS)}
        fields.update(cmid=cmid, type="text", body="m %s" % cmid)
        with ledger.lock:
            ledger.pending[(user, cmid)] = fields
        try:
            r = c.request("send", fields, _timeout=10.0)
        except ERRORS:
            return  # the server is gone: this cmid stays pending
        if r.get("op") != "ok":
            ledger.fault("send %s answered %r" % (cmid, r))
            return
        with ledger.lock:
            del ledger.pending[(user, cmid)]
            ledger.acked[(user, cmid)] = (r["conv"], r["seq"])
    c.close()


def receiver(c, user, ledger, stop):
    """Read pushes until the connection dies; ack each msg."""
    last = {}
    while not stop.is_set():
        try:
            p = c.push(timeout=0.5)
        except TimeoutError:
            continue
        except ERRORS:
            return
        if p.get("op") != "msg":
            continue
        conv, seq = p["conv"], p["seq"]
        if seq <= last.get(conv, 0):
            ledger.fault("%s got %s seq %d after %d in one session" % (user, conv, seq,
                                                                       last[conv]))
        last[conv] = seq
        try:
            c.ack(conv, seq)
        except ERRORS:
            return
        with ledger.lock:
            key = (user, conv)
            ledger.last_ack[key] = max(ledger.last_ack.get(key, 0), seq)


def resume_receiver(srv, user, ledger):
    """Reconnect with resume and check the catch-up against the last ack."""
    c = Client(srv, timeout=30.0)
    expect_ok(c.hello(user, "r", resume=True))
    got, _ = reltools.catchup(c)
    convs = reltools.sync_convs(c)
    for conv, info in convs.items():
        last_seq = info["last_seq"]
        acked = ledger.last_ack.get((user, conv), 0)
        seqs = got.get(conv, [])
        if seqs:
            assert seqs == list(range(seqs[0], last_seq + 1)), \
                "%s catch-up of %s not contiguous up to %d: %r" % (user, conv, last_seq, seqs)
        if last_seq > acked:
            assert seqs and seqs[0] <= acked + 1, \
                "%s resumed %s with a hole: last ack %d, last_seq %d, catch-up starts %r" % (
                    user, conv, acked, last_seq, seqs[:1])
    return c


def verify_log(srv, ledger, senders):
    """Every acked entry present, seqs contiguous; returns {conv: entries}."""
    v = Client(srv, timeout=30.0)
    expect_ok(v.hello(senders[0], "verify", resume=False))
    convs = {reltools.direct_conv(s, "rcv%d" % i) for s in senders for i in range(RECEIVERS)}
    convs.add("g:" + GROUP)
    logs = {}
    readers = {senders[0]: v}
    for conv in sorted(convs):
        if conv.startswith("d:"):
            owner = [s for s in senders if s in conv.split(":")[1:]][0]
            if owner not in readers:
                readers[owner] = Client(srv, timeout=30.0)
                expect_ok(readers[owner].hello(owner, "verify", resume=False))
            c = readers[owner]
        else:
            c = v
        entries = reltools.history_all(c, conv)
        seqs = [e["seq"] for e in entries]
        assert seqs == list(range(1, len(seqs) + 1)), \
            "%s: seqs not 1..%d: %r" % (conv, len(seqs), seqs[:50])
        logs[conv] = entries
    by_seq = {conv: {e["seq"]: e for e in es} for conv, es in logs.items()}
    lost = []
    for (user, cmid), (conv, seq) in ledger.acked.items():
        e = by_seq.get(conv, {}).get(seq)
        if not e or e["cmid"] != cmid or e["from"] != user:
            lost.append((user, cmid, conv, seq, e))
    assert not lost, "%d acknowledged entries lost or wrong, e.g. %r" % (len(lost), lost[:3])
    for c in readers.values():
        c.close()
    return logs


def retry_pending(srv, ledger, logs):
    """Retry every in-flight send; each must end as exactly one entry."""
    clients = {}
    for (user, cmid), fields in sorted(ledger.pending.items()):
        if user not in clients:
            clients[user] = Client(srv, timeout=30.0)
            expect_ok(clients[user].hello(user, "retry", resume=False))
        r = expect_ok(clients[user].request("send", fields, _timeout=30.0))
        conv, seq = r["conv"], r["seq"]
        before = [e for e in logs.get(conv, []) if e["from"] == user and e["cmid"] == cmid]
        if r.get("dup"):
            assert len(before) == 1 and before[0]["seq"] == seq, \
                "retried %s: dup of seq %d but the log had %r" % (cmid, seq, before)
        else:
            assert not before, "retried %s: new entry %d although the log had %r" % (
                cmid, seq, before)
        entries = reltools.history_all(clients[user], conv)
        mine = [e for e in entries if e["from"] == user and e["cmid"] == cmid]
        assert len(mine) == 1 and mine[0]["seq"] == seq, \
            "retried %s: %d entries with that cmid: %r" % (cmid, len(mine), mine)
        ledger.acked[(user, cmid)] = (conv, seq)
    ledger.pending.clear()
    # A sample of acknowledged sends retried: dup, same place.
    sample = random.sample(sorted(ledger.acked.items()), min(20, len(ledger.acked)))
    for (user, cmid), (conv, seq) in sample:
        if user not in clients:
            clients[user] = Client(srv, timeout=30.0)
            expect_ok(clients[user].hello(user, "retry", resume=False))
        to = {"group": GROUP} if conv.startswith("g:") else {
            "to": [u for u in conv.split(":")[1:] if u != user][0]}
        r = expect_ok(clients[user].request("send", dict(to, cmid=cmid, type="text",
                                                         body="m %s" % cmid), _timeout=30.0))
        assert r.get("dup") is True and (r["conv"], r["seq"]) == (conv, seq), \
            "acked %s at %s/%d, retried: %r" % (cmid, conv, seq, r)
    for c in clients.values():
        c.close()


def test_kill9_under_load():
    senders = ["snd%d" % i for i in range(SENDERS)]
    receivers = ["rcv%d" % i for i in range(RECEIVERS)]
    # A catch-up limit above anything a round writes, so that a resume shows
    # every entry after the cursor and a hole cannot hide behind the limit.
    args = ["--catchup-limit", "1000000", "--rate-limit", "100000", "--rate-burst", "100000"]
    ledger = Ledger()
    rng = random.Random(1234)
    with Server(shards=2, args=args, env=reltools.server_env()) as srv:
        owner = srv.login(senders[0], "setup")
        expect_ok(owner.request("group.create", name="crash", group=GROUP,
                                members=senders[1:] + receivers))
        owner.close()
        rcv = {u: srv.login(u, "r", resume=False) for u in receivers}
        total = 0
        for rnd in range(ROUNDS):
            stop = threading.Event()
            threads = [threading.Thread(target=receiver, args=(rcv[u], u, ledger, stop))
                       for u in receivers]
            threads += [threading.Thread(target=sender, args=(srv, s, ledger, stop, rnd))
                        for s in senders]
            for t in threads:
                t.start()
            time.sleep(0.5 + rng.random())
            before = len(ledger.acked)
            srv.kill()
            stop.set()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a client thread hangs"
            assert not ledger.faults, ledger.faults[:5]
            assert len(ledger.acked) > total, "round %d: nothing was acknowledged" % rnd
            srv.start()
            logs = verify_log(srv, ledger, senders)
            pending = len(ledger.pending)
            retry_pending(srv, ledger, logs)
            rcv = {u: resume_receiver(srv, u, ledger) for u in receivers}
            print("  round %d: %d acked (+%d), %d in flight at the kill, %d entries" % (
                rnd, len(ledger.acked), before - total, pending,
                sum(len(es) for es in logs.values())), flush=True)
            total = len(ledger.acked)
        for c in rcv.values():
            c.close()


def test_sigterm_right_after_traffic():
    # A graceful stop while a write (a message, the read and ack cursors it
    # moves) is still staged or in flight must neither leak what the write's
    # completion would free (LeakSanitizer fails the exit status) nor hang.
    rounds = reltools.size("term_rounds", 10, 40)
    with Server(shards=2, env=reltools.server_env()) as srv:
        for i in range(rounds):
            a, b = srv.login("ta", "d"), srv.login("tb", "d")
            r = expect_ok(a.send_message(to="tb", body="x%d" % i))
            b.ack(r["conv"], b.push("msg")["seq"])
            # one more send whose write is still on its way when the signal lands
            a.send({"op": "send", "id": 99, "to": "tb", "cmid": "late%d" % i, "type": "text",
                    "body": "y"})
            rc = srv.stop()
            assert rc == 0, "round %d: ringpushd exited with %r after SIGTERM:\n%s" % (
                i, rc, srv.stderr_tail(30))
            a.close()
            b.close()
            srv.start()


if __name__ == "__main__":
    rptest.main(timeout=900)
