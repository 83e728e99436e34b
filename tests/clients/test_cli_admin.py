"""
`ringpush stats` and `ringpush admin ...` against a live ringpushd's admin
port (PROTOCOL §7): the summary's numbers are checked against /metrics read
directly (connections per shard, hellos by outcome, frames and bytes,
storage commits, commit latency quantiles worked out here from the
buckets), every way of giving the admin key, the refusals (no key: usage, a
wrong key: the server's 401, a closed port), and the admin wrappers (send on
behalf, presence, kick, backup) through what the server then does.
"""

import json
import os
import re
import shutil
import tempfile

import rptest
from rptest import Server, expect_ok

from test_cli import cli, _require_cli


# Server.wait_ready waits for the admin port too.
AdminServer = Server


def admin_args(srv, *more, key=True):
    a = ["--admin-host", srv.host, "--admin-port", srv.admin_port]
    if key:
        a += ["--admin-key", srv.admin_key]
    return a + list(more)


def parse_prom(text):
    """{(name, frozenset(labels)): value} of a Prometheus text (the simple form ringpushd writes)."""
    out = {}
    pat = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = pat.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(prom, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in prom.items() if n == name and want <= ls)


def quantile(prom, hist, q):
    """histogram_quantile over every label but le, as Prometheus computes it."""
    buckets = {}
    for (n, ls), v in prom.items():
        if n == hist + "_bucket":
            le = dict(ls)["le"]
            b = float("inf") if le == "+Inf" else float(le)
            buckets[b] = buckets.get(b, 0) + v
    bounds = sorted(buckets)
    count = buckets[float("inf")]
    rank = q * count
    prev_b, prev_c = 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return bounds[-2] if len(bounds) > 1 else 0.0
            return prev_b + (b - prev_b) * (rank - prev_c) / (buckets[b] - prev_c)
        prev_b, prev_c = b, buckets[b]
    raise AssertionError("no bucket holds rank %r" % rank)


def summary(stdout):
    """{label: rest of line} of the stats output (label = text before two spaces)."""
    out = {}
    for line in stdout.splitlines()[1:]:
        label, _, rest = line.partition("  ")
        out[label.strip()] = rest.strip()
    return out


def scrape(srv):
    status, text = srv.admin("GET", "/metrics")
    assert status == 200, (status, text)
    return parse_prom(text)


STABLE = ("ringpush_connections", "ringpush_hellos_total", "ringpush_frames_total",
          "ringpush_bytes_total", "ringpush_storage_groups_total",
          "ringpush_storage_commit_seconds_bucket")


def stable_view(prom):
    return {k: v for k, v in prom.items() if k[0] in STABLE}


def test_stats_help_and_refusals():
    _require_cli()
    out = cli("stats", "--help", check=0).stdout
    assert out.startswith("usage: ringpush stats") and "--admin-port" in out, out
    assert "stats" in cli("--help", check=0).stdout
    p = cli("stats", "--admin-port", rptest.free_ports(1)[0], check=2)
    assert "admin key" in p.stderr, p.stderr
    cli("stats", "extra", "--admin-key", "k", check=2)
    port = rptest.free_ports(1)[0]
    p = cli("stats", "--admin-port", port, "--admin-key", "k", check=1)
    assert "refused" in p.stderr.lower(), p.stderr
    with AdminServer(shards=2) as srv:
        p = cli("stats", *admin_args(srv, key=False), "--admin-key", "wrong", check=1)
        assert "401" in p.stderr and "unauthorized" in p.stderr, p.stderr


def test_stats_matches_metrics():
    _require_cli()
    with AdminServer(shards=2) as srv:
        # Traffic to summarise: two users online (on whichever shards), one
        # refused hello, some messages (each a storage commit).
        a = srv.login("alice", "d1")
        b = srv.login("bob", "d1")
        bad = rptest.Client(srv)
        rptest.expect_error(bad.hello("mallory", "d1", token=rptest.token("mallory",
                            secret="nope")), "unauthorized")
        for i in range(20):
            expect_ok(a.send_message(to="bob", body="m%d" % i))
        rptest.wait_until(lambda: total(scrape(srv), "ringpush_connections") == 2,
                          what="the refused connection closed")
        # Numbers the CLI prints must equal a scrape taken just before and
        # after it, when those two agree (nothing moved meanwhile).
        for attempt in range(5):
            before = scrape(srv)
            p = cli("stats", *admin_args(srv), check=0)
            after = scrape(srv)
            if stable_view(before) == stable_view(after):
                break
        else:
            raise AssertionError("metrics kept moving")
        s = summary(p.stdout)
        prom = after
        assert p.stdout.startswith("ringpush at %s:%d" % (srv.host, srv.admin_port)), p.stdout
        assert s["shards"] == "2", s
        per = ", ".join("shard %d: %d" % (i, total(prom, "ringpush_connections", shard=str(i)))
                        for i in range(2))
        assert s["connections"] == "2 (%s)" % per, (s["connections"], per)
        hellos = {o: int(total(prom, "ringpush_hellos_total", outcome=o))
                  for o in ("ok", "unauthorized", "bad_request")}
        assert hellos["ok"] == 2 and hellos["unauthorized"] == 1, hellos
        assert s["hellos"] == "ok 2, unauthorized 1, bad_request 0", s["hellos"]
        assert s["frames"] == "in %d, out %d" % (total(prom, "ringpush_frames_total", dir="in"),
                                                 total(prom, "ringpush_frames_total", dir="out"))
        assert total(prom, "ringpush_frames_total", dir="in") >= 23  # 3 hellos + 20 sends
        bytes_in = int(total(prom, "ringpush_bytes_total", dir="in"))
        assert s["bytes"].startswith("in %d" % bytes_in), s["bytes"]
        commits = int(total(prom, "ringpush_storage_groups_total"))
        assert commits >= 1 and s["storage commits"] == str(commits), s
        assert s["bye slow"].startswith("0 ("), s
        assert s["rate limited"].startswith("0 ("), s
        assert s["ring depths"].startswith("max 0, total 0"), s
        m = re.match(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms \((\d+) commits\)$", s["commit latency"])
        assert m, s["commit latency"]
        count = total(prom, "ringpush_storage_commit_seconds_bucket", le="+Inf")
        assert int(m.group(3)) == count and count >= 1, (m.group(3), count)
        for got, q in ((m.group(1), 0.5), (m.group(2), 0.99)):
            want = quantile(prom, "ringpush_storage_commit_seconds", q) * 1e3
            assert abs(float(got) - want) < 0.0011, (q, got, want)
        # the other families: a histogram by its count and sum, never a sum of its buckets
        assert "_bucket" not in p.stdout, p.stdout
        assert "push_latency_seconds_count" in p.stdout, p.stdout
        for c in (a, b, bad):
            c.close()


def test_admin_key_sources():
    _require_cli()
    with AdminServer(shards=1) as srv:
        cli("stats", *admin_args(srv, key=False), env={"RINGPUSH_ADMIN_KEY": srv.admin_key},
            check=0)
        with tempfile.NamedTemporaryFile("w", suffix=".key") as f:
            f.write(srv.admin_key + "\n")
            f.flush()
            cli("stats", *admin_args(srv, key=False), "--admin-key-file", f.name, check=0)
            # the flag wins over the file and the environment
            p = cli("stats", *admin_args(srv, key=False), "--admin-key", "wrong",
                    "--admin-key-file", f.name, env={"RINGPUSH_ADMIN_KEY": srv.admin_key},
                    check=1)
            assert "401" in p.stderr, p.stderr
        cli("stats", *admin_args(srv, key=False), "--admin-key-file", "/nonexistent/key",
            check=1)


def need_chat_admin(srv):
    status, body = srv.admin("GET", "/v1/users/probe")
    assert status == 200, (status, body)


def test_admin_wrappers():
    _require_cli()
    work = tempfile.mkdtemp(prefix="rptest-cli-bk-")
    try:
        with AdminServer(shards=2) as srv:
            need_chat_admin(srv)
            a = srv.login("alice", "phone")
            p = cli("admin", "presence", "alice", *admin_args(srv), check=0)
            assert json.loads(p.stdout) == {"online": True, "devices": ["phone"]}, p.stdout
            p = cli("admin", "send", "svc", "alice", 'say "hi"\n', "--cmid", "w1",
                    *admin_args(srv), check=0)
            sent = json.loads(p.stdout)
            assert sent["conv"] == "d:alice:svc" and sent["seq"] == 1, sent
            m = a.push("msg", timeout=5)
            assert (m["from"], m["body"], m["cmid"]) == ("svc", 'say "hi"\n', "w1"), m
            p = cli("admin", "send", "svc", "--group", "nogroup", "x", *admin_args(srv), check=1)
            assert "404" in p.stderr and "not_found" in p.stderr, p.stderr
            target = os.path.join(work, "snap")
            p = cli("admin", "backup", target, *admin_args(srv), check=0)
            assert json.loads(p.stdout)["dir"] == target, p.stdout
            assert os.path.isfile(os.path.join(target, "CURRENT")), os.listdir(target)
            p = cli("admin", "backup", target, *admin_args(srv), check=1)
            assert "409" in p.stderr, p.stderr
            p = cli("admin", "kick", "alice", *admin_args(srv), check=0)
            assert json.loads(p.stdout) == {"kicked": 1}, p.stdout
            assert a.push("bye", timeout=5)["reason"] == "kicked"
            cli("admin", "frobnicate", "x", *admin_args(srv), check=2)
            cli("admin", "kick", *admin_args(srv), check=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    rptest.main()
