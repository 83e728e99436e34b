"""
The `ringpush` command-line client against a live ringpushd: token minting
(every way of giving the secret), logging in with it, `tail` printing pushes
as JSON lines, and failures reported with the documented exit codes
(0 success, 1 error reply or connection failure, 2 usage).
"""

import json
import os
import signal
import subprocess
import tempfile
import time

import rptest
from rptest import Client, Server, expect_ok


def cli(*args, env=None, timeout=20, check=None, stdin=None):
    """Run the CLI; returns CompletedProcess (text). check: the expected exit code."""
    e = dict(os.environ)
    e.pop("RINGPUSH_SECRET", None)
    e.update(env or {})
    p = subprocess.run([rptest.cli_binary()] + [str(a) for a in args], env=e, timeout=timeout,
                       capture_output=True, text=True, input=stdin)
    if check is not None:
        assert p.returncode == check, "exit %d (wanted %d)\nstdout: %s\nstderr: %s" % (
            p.returncode, check, p.stdout, p.stderr)
    return p


def srv_args(srv, *more):
    return ["--host", srv.host, "--port", srv.port, "--secret", srv.secret] + list(more)


def _require_cli():
    if not os.access(rptest.cli_binary(), os.X_OK):
        raise rptest.Skip("CLI not built: %s" % rptest.cli_binary())


def test_help_and_usage():
    _require_cli()
    out = cli("--help", check=0).stdout
    for cmd in ("token", "send", "tail", "history", "sync", "group", "friend", "chat"):
        assert cmd in out, (cmd, out)
        sub = cli(cmd, "--help", check=0).stdout
        assert sub.startswith("usage: ringpush " + cmd), sub
    cli(check=2)
    cli("frobnicate", check=2)
    cli("send", "alice", check=2)  # missing arguments
    cli("token", "alice", "--ttl", "soon", "--secret", "x", check=2)


def test_token_secret_sources():
    _require_cli()
    t = cli("token", "alice", "--secret", "s3cret", "--ttl", "120", check=0).stdout.strip()
    claims = rptest.token_claims(t, "s3cret")
    assert claims["sub"] == "alice", claims
    assert abs(claims["exp"] - (time.time() + 120)) < 5, claims
    with tempfile.NamedTemporaryFile("w", suffix=".secret") as f:
        f.write("from-file\n")  # the trailing newline is not part of the secret
        f.flush()
        t = cli("token", "bob", "--secret-file", f.name, check=0).stdout.strip()
        assert rptest.token_claims(t, "from-file")["sub"] == "bob"
    t = cli("token", "carol", env={"RINGPUSH_SECRET": "from-env"}, check=0).stdout.strip()
    assert rptest.token_claims(t, "from-env")["sub"] == "carol"
    claims = rptest.token_claims(t, "from-env")
    assert abs(claims["exp"] - (time.time() + 3600)) < 5, claims  # default ttl
    p = cli("token", "dave", check=2)
    assert "secret" in p.stderr
    cli("token", "bad user", "--secret", "x", check=1)
    cli("token", "alice", "--secret-file", "/nonexistent/secret", check=1)


def test_cli_token_logs_in():
    _require_cli()
    with Server(shards=2) as srv:
        t = cli("token", "erin", "--secret", srv.secret, check=0).stdout.strip()
        c = Client(srv)
        r = expect_ok(c.hello("erin", "d1", token=t, resume=False))
        assert r["user"] == "erin"
        # minted with another secret: refused
        t = cli("token", "erin", "--secret", "other", check=0).stdout.strip()
        rptest.expect_error(Client(srv).hello("erin", "d2", token=t), "unauthorized")


def _tail(srv, user, *more):
    e = dict(os.environ)
    e.pop("RINGPUSH_SECRET", None)
    return subprocess.Popen([rptest.cli_binary(), "tail", user] + [str(a) for a in
                            srv_args(srv, *more)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)


def _lines(proc, timeout=10):
    out, err = proc.communicate(timeout=timeout)
    return [json.loads(l) for l in out.splitlines() if l.strip()], err


def test_tail_synced_then_bye_replaced():
    _require_cli()
    with Server(shards=2) as srv:
        tail = _tail(srv, "frank", "--device", "laptop")
        # the tail's session is live once a replacement can bump it
        first = tail.stdout.readline()
        assert json.loads(first) == {"op": "synced"}, first
        c = Client(srv)
        expect_ok(c.hello("frank", "laptop", resume=False))
        lines, err = _lines(tail)
        assert lines == [{"op": "bye", "reason": "replaced"}], (lines, err)
        assert tail.returncode == 0, (tail.returncode, err)


def test_tail_keeps_session_alive():
    _require_cli()
    with Server(shards=1, args=["--heartbeat", "1", "--idle-timeout", "2"]) as srv:
        tail = _tail(srv, "kim")
        assert json.loads(tail.stdout.readline()) == {"op": "synced"}
        silent = srv.login("kim", "other")
        time.sleep(5)  # well past the idle timeout: only the pinging tail survives
        assert silent.closed(0.5), "a silent session was not closed"
        assert tail.poll() is None, "tail lost its session"
        expect_ok(Client(srv).hello("kim", "cli", resume=False))
        lines, err = _lines(tail)
        assert lines == [{"op": "bye", "reason": "replaced"}], (lines, err)


def test_tail_bye_shutdown():
    _require_cli()
    srv = Server(shards=2)
    with srv:
        tail = _tail(srv, "gina")
        first = tail.stdout.readline()
        assert json.loads(first) == {"op": "synced"}, first
        assert srv.stop(signal.SIGTERM, timeout=5) == 0
        lines, err = _lines(tail)
        assert lines == [{"op": "bye", "reason": "shutdown"}], (lines, err)
        assert tail.returncode == 0


def test_tail_connection_lost_exits_1():
    """A server that dies (no bye) is a connection failure: exit status 1."""
    _require_cli()
    srv = Server(shards=1)
    with srv:
        tail = _tail(srv, "gwen")
        assert json.loads(tail.stdout.readline()) == {"op": "synced"}
        srv.stop(signal.SIGKILL, timeout=5)
        lines, err = _lines(tail)
        assert lines == [], (lines, err)
        assert tail.returncode == 1 and "receive" in err, (tail.returncode, err)


def test_sync_and_group_list_print_every_page():
    """A list longer than one frame comes in pages; the CLI prints all of it."""
    _require_cli()
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000",
                                "--max-frame", "8192"]) as srv:
        a = srv.login("ivy")
        first = a.next_id
        reqs = [{"op": "send", "id": first + i, "to": "p%03d" % i, "cmid": "m%d" % i,
                 "type": "text", "body": "x"} for i in range(300)]
        reqs += [{"op": "group.create", "id": first + 300 + i, "name": "G%d" % i,
                  "group": "cg%03d" % i} for i in range(300)]
        a.send_raw(b"".join(rptest.frame(r) for r in reqs))
        a.next_id += len(reqs)
        for i in range(len(reqs)):
            expect_ok(a.reply(first + i, 30))
        # one page is not all of it, or the paging would go untested
        r = expect_ok(a.request("sync"))
        assert r["more"] is True and len(r["convs"]) < 600, r
        r = expect_ok(a.request("group.list"))
        assert r["more"] is True and len(r["groups"]) < 300, r
        a.close()

        rows = [json.loads(l) for l in cli("sync", "ivy", *srv_args(srv), check=0).stdout.splitlines()]
        want = {"d:ivy:p%03d" % i for i in range(300)} | {"g:cg%03d" % i for i in range(300)}
        assert sorted(r["conv"] for r in rows) == sorted(want), rows
        ts = [r["last_ts"] for r in rows]
        assert ts == sorted(ts, reverse=True), ts

        rows = [json.loads(l) for l in
                cli("group", "list", "ivy", *srv_args(srv), check=0).stdout.splitlines()]
        assert [(r["group"], r["name"], r["role"]) for r in rows] == \
            [("cg%03d" % i, "G%d" % i, "owner") for i in range(300)], rows


def test_cli_failures():
    _require_cli()
    with Server(shards=2) as srv:
        p = cli("sync", "hank", "--host", srv.host, "--port", srv.port, "--secret", "wrong",
                check=1)
        assert "unauthorized" in p.stderr, p.stderr
        p = cli("sync", "hank", *srv_args(srv, "--device", "bad device"), check=1)
        assert "bad_request" in p.stderr, p.stderr
    port = rptest.free_ports(1)[0]
    p = cli("sync", "hank", "--port", port, "--secret", "x", check=1)
    assert "connect" in p.stderr, p.stderr


if __name__ == "__main__":
    rptest.main()
