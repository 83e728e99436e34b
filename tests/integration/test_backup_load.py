"""
A backup taken under load restores into a server that serves every
acknowledged entry (PROTOCOL §5 durability, §7 backup; docs/operations.md
"Backup and restore").

Several senders send continuously, direct messages and into one shared
group, recording every acknowledged (conv, seq, body). Mid-stream the test
notes how many acks it has received, then POSTs /v1/backup; the senders go
on while the checkpoint is taken and a while after. A new server started on
the checkpoint directory (with another shard count) must serve, through
history, every entry acknowledged before the backup request was sent, with
the same body and msgpack type; every conversation's seqs must be
contiguous from 1; and what it serves must be a prefix of what was
acknowledged (no entry with a body other than the one acked for its seq).
"""

import os
import shutil
import tempfile
import threading
import time

import rptest
from rptest import Server, expect_ok

SENDERS = 4
PEERS = 3
GROUP = "bkload"
RUN_BEFORE = 1.5  # seconds of load before the backup request
RUN_AFTER = 1.0  # and after its answer
MAX_PER_SENDER = 3000  # a bound on each sender's loop, whatever the timing


# Server.wait_ready waits for the admin port too.
AdminServer = Server


class Acks:
    """Every acknowledged entry, in the order the acks arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []  # (conv, seq, body)
        self.errors = []

    def add(self, conv, seq, body):
        with self.lock:
            self.entries.append((conv, seq, body))

    def count(self):
        with self.lock:
            return len(self.entries)


def sender(srv, i, stop, acks):
    user = "s%d" % i
    try:
        c = srv.login(user, "load")
        n = 0
        while not stop.is_set() and n < MAX_PER_SENDER:
            # Every 4th message into the shared group, the rest to a peer; every
            # 5th body as bin, so that the restore must keep the msgpack type.
            body = "%s-%d" % (user, n)
            if n % 5 == 4:
                body = body.encode()
            target = {"group": GROUP} if n % 4 == 3 else {"to": "r%d" % (n % PEERS)}
            r = c.send_message(body=body, cmid="%s-%d" % (user, n), **target)
            if r.get("op") == "error" and r.get("code") == "rate_limited":
                time.sleep(0.02)
                continue  # the same cmid next time round: n does not move
            expect_ok(r)
            acks.add(r["conv"], r["seq"], body)
            n += 1
        c.close()
    except BaseException as e:  # reported by the main thread
        acks.errors.append("sender %s: %r" % (user, e))


def read_all(srv, user, conv):
    """Every entry of conv that user may read, via history pages, as {seq: msg}."""
    c = srv.login(user, "reader")
    out, after = {}, 0
    try:
        while True:
            r = expect_ok(c.request("history", conv=conv, after=after, limit=200))
            for m in r["msgs"]:
                assert m["seq"] not in out, ("seq twice in history", conv, m["seq"])
                out[m["seq"]] = m
            if not r["more"]:
                return out
            after = r["msgs"][-1]["seq"]
    finally:
        c.close()


def settle(srv, shards):
    def open_conns():
        status, text = srv.admin("GET", "/metrics")
        assert status == 200, (status, text)
        return sum(float(l.split()[-1]) for l in text.splitlines()
                   if l.startswith("ringpush_connections{"))
    rptest.wait_until(lambda: open_conns() == 0, what="client connections closed")


def test_backup_under_load_restores_acked_entries():
    work = tempfile.mkdtemp(prefix="rptest-bkload-")
    target = os.path.join(work, "snap")
    acks = Acks()
    try:
        with AdminServer(shards=2) as srv:
            owner = srv.login("s0", "setup")
            members = ["s%d" % i for i in range(1, SENDERS)]
            expect_ok(owner.request("group.create", name="load", group=GROUP, members=members))
            owner.close()

            stop = threading.Event()
            threads = [threading.Thread(target=sender, args=(srv, i, stop, acks))
                       for i in range(SENDERS)]
            for t in threads:
                t.start()
            try:
                time.sleep(RUN_BEFORE)
                # Everything acknowledged up to here was durable before the
                # request left, so the checkpoint must hold it.
                with acks.lock:
                    before = list(acks.entries)
                status, body = srv.admin("POST", "/v1/backup", body={"dir": target},
                                         timeout=60.0)
                at_answer = acks.count()
                time.sleep(RUN_AFTER)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            assert not acks.errors, acks.errors
            assert status == 200 and body.get("dir") == target, (status, body)
            assert len(before) >= 20, "too little load before the backup: %d" % len(before)
            assert acks.count() > at_answer, "the senders stopped during the backup"
            settle(srv, 2)

        acked = {}  # (conv, seq) -> body, over the whole run
        for conv, seq, b in acks.entries:
            assert (conv, seq) not in acked, ("a seq acknowledged twice", conv, seq)
            acked[(conv, seq)] = b
        convs = sorted({conv for conv, _, _ in acks.entries})
        reader = {conv: ("s0" if conv.startswith("g:") else conv.split(":")[2]) for conv in convs}

        with AdminServer(shards=3, data=target) as srv2:
            served = {conv: read_all(srv2, reader[conv], conv) for conv in convs}
            settle(srv2, 3)

        for conv in convs:
            seqs = sorted(served[conv])
            assert seqs == list(range(1, len(seqs) + 1)), (conv, "holes", seqs[:5], seqs[-5:])
        missing = [(conv, seq) for conv, seq, _ in before if seq not in served[conv]]
        assert not missing, "acknowledged before the backup but not restored: %r" % missing[:10]
        for conv, seq, b in before:
            got = served[conv][seq]["body"]
            assert got == b and type(got) is type(b), (conv, seq, got, b)
        # Whatever else was restored is what was acknowledged for that seq (the
        # group's creation event aside, which no sender acked).
        for conv in convs:
            for seq, m in served[conv].items():
                if m["type"] == "event":
                    continue
                if (conv, seq) in acked:
                    assert m["body"] == acked[(conv, seq)], (conv, seq, m, acked[(conv, seq)])
        restored = sum(len(v) for v in served.values())
        print("acked %d (%d before the backup), restored %d entries in %d conversations"
              % (len(acked), len(before), restored, len(convs)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    rptest.main()
