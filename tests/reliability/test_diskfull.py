"""
Disk full (PROTOCOL §5 durability; storage/storage.h "Errors").

The data directory lives on a small tmpfs (needs root; skipped otherwise). A
client sends while a filler file takes every free byte. Checked:
- while the disk is full, sends are answered `unavailable` (never ok for an
  entry that was not written, never another code), the connection stays
  usable and the server stays up;
- once the filler is removed, sends succeed again within RESUME_S seconds;
- every acknowledged entry is in the log, seqs are 1..last_seq, before and
  after a kill -9 and restart;
- a send that failed, retried with its cmid, ends as exactly one entry;
- the same with several write batches in flight (--write-pipeline 16).

Sizes: RP_SIZE_DISK_MB (400). On a much smaller disk (48 MiB) RocksDB never
leaves its background error after space returns (its recovery waits for more
free space than such a disk has): service then resumes only after a restart.
"""

import contextlib
import os
import subprocess
import tempfile
import threading
import time

import rptest
from rptest import Client, Server, expect_ok

import reltools

DISK_MB = reltools.size("disk_mb", 400, 400)
RESUME_S = 60
BODY = "f" * 2000


def _mount():
    d = tempfile.mkdtemp(prefix="rptest-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % DISK_MB, "tmpfs", d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        os.rmdir(d)
        raise rptest.Skip("cannot mount a tmpfs (root needed): %s" % r.stdout.decode().strip())
    return d


def _umount(d):
    subprocess.run(["umount", "-l", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.rmdir(d)
    except OSError:
        pass


def _fill(path):
    """Write zeros until the file system is full; returns bytes written."""
    n = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            piece = chunk[:size]
            while True:
                try:
                    f.write(piece)
                    n += size
                except OSError:
                    break
    return n


def _check_log(c, conv, acked):
    entries = reltools.history_all(c, conv)
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(1, len(seqs) + 1)), "seqs not contiguous: %r" % (seqs[:20],)
    by_seq = {e["seq"]: e for e in entries}
    lost = [(cm, s) for cm, s in acked.items() if by_seq.get(s, {}).get("cmid") != cm]
    assert not lost, "%d acknowledged entries lost, e.g. %r" % (len(lost), lost[:5])
    return entries


@contextlib.contextmanager
def _server_on_small_disk(*args):
    """A started one-shard server whose data directory is on a fresh tmpfs;
    yields (server, mount point); kills the server and unmounts afterwards."""
    mnt = _mount()
    srv = None
    try:
        srv = Server(shards=1, data=os.path.join(mnt, "data"),
                     args=["--block-cache-mb", "8", "--rate-limit", "100000",
                           "--rate-burst", "100000", *args],
                     env=reltools.server_env())
        srv.start()
        yield srv, mnt
    finally:
        if srv is not None and srv.running():
            srv.kill()
        _umount(mnt)


def _after_kill(srv, user, conv, acked):
    """kill -9, restart, check the log as user, stop cleanly; returns the entries."""
    srv.kill()
    srv.start()
    v = srv.login(user, "v")
    entries = _check_log(v, conv, acked)
    v.close()
    srv.stop()
    assert srv.returncode == 0, srv.stderr_tail()
    return entries


def test_disk_full_then_space_returns():
    with _server_on_small_disk() as (srv, mnt):
        c = srv.login("dfa", "d")
        acked, failed, codes = {}, [], {}
        n = 0

        def send():
            nonlocal n
            n += 1
            cmid = "df%d" % n
            r = c.send_message(to="dfb", body=BODY, cmid=cmid)
            if r.get("op") == "ok":
                assert not r.get("dup"), r
                acked[cmid] = r["seq"]
                return True
            codes[r.get("code")] = codes.get(r.get("code"), 0) + 1
            failed.append(cmid)
            return False

        for _ in range(200):
            assert send(), "a send failed before the disk was full: %r" % (codes,)
        filler = os.path.join(mnt, "filler")
        filled = _fill(filler)
        deadline = time.monotonic() + 60
        while not failed and time.monotonic() < deadline:
            send()
        assert failed, "%d sends after filling the disk (%d MiB), none failed" % (
            n - 200, filled >> 20)
        for _ in range(50):
            send()
        assert set(codes) == {"unavailable"}, "sends on a full disk answered %r" % (codes,)
        c.ping()
        assert reltools.alive(srv)
        full_fails = len(failed)

        os.unlink(filler)
        t0 = time.monotonic()
        while not send():
            assert time.monotonic() - t0 < RESUME_S, \
                "sends still fail %ds after space returned: %r" % (RESUME_S, codes)
            time.sleep(0.2)
        resumed = time.monotonic() - t0
        for _ in range(50):
            assert send(), "a send failed after service resumed: %r" % (codes,)
        print("  %d acked, %d refused while full (%r), resumed %.1fs after space returned" % (
            len(acked), full_fails, codes, resumed), flush=True)
        conv = reltools.direct_conv("dfa", "dfb")
        _check_log(c, conv, acked)

        # a failed send retried: exactly one entry
        retry = failed[0]
        r = expect_ok(c.send_message(to="dfb", body=BODY, cmid=retry))
        acked[retry] = r["seq"]
        c.close()
        entries = _after_kill(srv, "dfb", conv, acked)
        assert sum(1 for e in entries if e["cmid"] == retry) == 1, retry


def test_disk_full_pipelined():
    """The same with --write-pipeline 16 and four devices of one user sending
    into one conversation at once, so that several write batches are in flight
    when the disk fills: a failed batch fails the ones behind it, and the log
    keeps every acknowledged entry with seqs 1..last_seq."""
    with _server_on_small_disk("--write-pipeline", "16", "--max-devices", "10") as (srv, mnt):
        clients = [srv.login("dpa", "d%d" % i) for i in range(4)]
        lock = threading.Lock()
        acked, codes = {}, {}
        state = {"full": False, "after": 0}
        deadline = time.monotonic() + 60

        def sender(k, c):
            n = 0
            while True:
                with lock:
                    # once sends fail, 200 more (with batches failing behind one another)
                    if state["after"] >= 200 or time.monotonic() > deadline:
                        return
                n += 1
                cmid = "dp%d.%d" % (k, n)
                r = c.send_message(to="dpb", body=BODY, cmid=cmid)
                with lock:
                    if r.get("op") == "ok":
                        assert not r.get("dup"), r
                        acked[cmid] = r["seq"]
                    else:
                        codes[r.get("code")] = codes.get(r.get("code"), 0) + 1
                    if codes:
                        state["after"] += 1
                if not state["full"] and n >= 100:
                    time.sleep(0.001)

        threads = [threading.Thread(target=sender, args=(k, c)) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        filler = os.path.join(mnt, "filler")
        _fill(filler)
        with lock:
            state["full"] = True
        for t in threads:
            t.join(120)
        assert codes, "no send failed on a full disk (%d acked)" % len(acked)
        assert set(codes) == {"unavailable"}, "sends on a full disk answered %r" % (codes,)
        assert reltools.alive(srv)
        os.unlink(filler)
        c = clients[0]
        t0 = time.monotonic()
        while c.send_message(to="dpb", body=BODY, cmid="dp-resume").get("op") != "ok":
            assert time.monotonic() - t0 < RESUME_S, "sends still fail after space returned"
            time.sleep(0.2)
        status, text = srv.admin("GET", "/metrics")
        fenced = [l.split()[1] for l in text.splitlines()
                  if l.startswith("ringpush_storage_fenced_total ")] if status == 200 else []
        print("  %d acked, %r refused, %s batches failed behind a failed one" % (
            len(acked), codes, fenced[0] if fenced else "?"), flush=True)
        conv = reltools.direct_conv("dpa", "dpb")
        _check_log(c, conv, acked)
        for c in clients:
            c.close()
        _after_kill(srv, "dpb", conv, acked)


if __name__ == "__main__":
    rptest.main(timeout=600)
