"""
Helpers shared by the reliability tests (tests/reliability/test_*.py).

Sizes: every test has a small size for ctest and a large one for scripts/soak.
size(small, large) picks the large one when RP_SOAK=1 is set in the
environment, and RP_SIZE_<NAME> overrides a single size by name.

Memory: rss_kb(srv) is the server's resident set (VmRSS). Under
AddressSanitizer freed memory sits in a quarantine before it is reused, which
would hide or fake growth, so server_env() keeps that quarantine small; the
bound each test states is on top of it.
"""

import os
import socket
import time

import rptest
from rptest import ConnectionClosed

# A small quarantine so that RSS tracks live memory; leak checking stays on.
ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16:malloc_context_size=8"


def soak():
    return os.environ.get("RP_SOAK", "") not in ("", "0")


def size(name, small, large):
    """The size called name: RP_SIZE_<NAME> if set, else large under RP_SOAK, else small."""
    v = os.environ.get("RP_SIZE_" + name.upper())
    if v:
        return type(small)(v)
    return large if soak() else small


def server_env():
    return {"ASAN_OPTIONS": os.environ.get("RP_SERVER_ASAN_OPTIONS", ASAN_OPTIONS)}


def rss_kb(srv):
    """VmRSS of the running server process, in KiB."""
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % srv.proc.pid)


def settle_rss(srv, seconds=1.0):
    """RSS after the server has had a moment to free what closing connections held."""
    time.sleep(seconds)
    return rss_kb(srv)


def catchup(c, timeout=30.0):
    """After a hello with resume: every msg push up to synced, as a dict
    conv -> [seq, ...] in arrival order, and the list of msg frames."""
    per_conv, frames, others = {}, [], []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no synced within %.0fs" % timeout)
        try:
            p = c.push(timeout=left)
        except ConnectionClosed:
            raise ConnectionClosed("closed after %d catch-up entries, before synced; "
                                   "other pushes: %r" % (len(frames), others))
        if p.get("op") not in ("msg", "synced"):
            others.append(p)
        if p.get("op") == "synced":
            return per_conv, frames
        if p.get("op") == "msg":
            per_conv.setdefault(p["conv"], []).append(p["seq"])
            frames.append(p)


def history_all(c, conv, page=200):
    """Every entry of conv, ascending, read with history/after pages."""
    out, after = [], 0
    while True:
        r = rptest.expect_ok(c.request("history", conv=conv, after=after, limit=page,
                                       _timeout=30.0))
        msgs = r["msgs"]
        out.extend(msgs)
        if not r["more"] or not msgs:
            return out
        after = msgs[-1]["seq"]


def sync_convs(c):
    r = rptest.expect_ok(c.request("sync", _timeout=30.0))
    return {x["conv"]: x for x in r["convs"]}


def direct_conv(a, b):
    lo, hi = (a, b) if a.encode() <= b.encode() else (b, a)
    return "d:%s:%s" % (lo, hi)


def alive(srv):
    """The server still runs and answers a fresh connection's ping."""
    if not srv.running():
        return False
    try:
        c = rptest.Client(srv, timeout=10.0)
        c.ping()
        c.close()
        return True
    except (OSError, ConnectionClosed, TimeoutError):
        return False


def wait_closed(sock, timeout):
    """True if the peer closes (EOF or reset) within timeout; everything read is discarded."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
