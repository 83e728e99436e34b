"""
The `ringpush` CLI's messaging commands against a live ringpushd (PROTOCOL
§5-6): send, tail (pushes and acks), history, sync, groups, friends and the
interactive chat, each checked through what the server returns or pushes.
"""

import json
import os
import signal
import subprocess

import rptest
from rptest import Client, Server, expect_ok

from test_cli import cli, srv_args, _require_cli


def jlines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def run(srv, *args, check=0, stdin=None):
    p = cli(*(list(args) + srv_args(srv)), check=check, stdin=stdin)
    return jlines(p.stdout) if check == 0 else p


def tail_proc(srv, user, *more):
    e = dict(os.environ)
    e.pop("RINGPUSH_SECRET", None)
    p = subprocess.Popen([rptest.cli_binary(), "tail", user] +
                         [str(a) for a in srv_args(srv, *more)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    first = json.loads(p.stdout.readline() or "null")
    assert first == {"op": "synced"}, first
    return p


def test_send_tail_ack_history_sync():
    _require_cli()
    with Server(shards=2) as srv:
        tail = tail_proc(srv, "bob", "--count", "3")  # synced + 2 messages
        r = run(srv, "send", "alice", "bob", "hello bob")
        assert len(r) == 1 and r[0]["conv"] == "d:alice:bob" and r[0]["seq"] == 1, r
        assert isinstance(r[0]["ts"], int)
        r = run(srv, "send", "alice", "bob", "AB", "--bin", "--type", "file", "--cmid", "c2")
        assert r[0]["seq"] == 2, r
        out, err = tail.communicate(timeout=10)
        assert tail.returncode == 0, err
        msgs = jlines(out)
        assert [m["seq"] for m in msgs] == [1, 2], msgs
        assert msgs[0]["op"] == "msg" and msgs[0]["from"] == "alice" and msgs[0]["dev"] == "cli"
        assert msgs[0]["body"] == "hello bob" and msgs[0]["type"] == "text", msgs[0]
        assert msgs[1]["body"] == {"$bin": "4142"} and msgs[1]["cmid"] == "c2", msgs[1]

        # the same cmid again: a duplicate, nothing new appended
        r = run(srv, "send", "alice", "bob", "AB", "--bin", "--type", "file", "--cmid", "c2")
        assert r[0]["seq"] == 2 and r[0].get("dup") is True, r

        # tail acked both: a new session of the same device gets nothing to catch up
        c = Client(srv)
        expect_ok(c.hello("bob", "cli", resume=True))
        assert c.push()["op"] == "synced"
        c.close()

        h = run(srv, "history", "alice", "d:alice:bob")
        assert [m["seq"] for m in h[:-1]] == [1, 2] and h[-1] == {"more": False}, h
        h = run(srv, "history", "bob", "d:alice:bob", "--before", "2", "--limit", "1")
        assert [m["seq"] for m in h[:-1]] == [1], h

        s = run(srv, "sync", "bob")
        assert len(s) == 1 and s[0]["conv"] == "d:alice:bob" and s[0]["last_seq"] == 2, s
        assert s[0]["ack_seq"] == 2 and s[0]["unread"] == 2, s


def test_send_errors():
    _require_cli()
    with Server(shards=2) as srv:
        p = run(srv, "send", "alice", "--group", "nosuchgroup", "hi", check=1)
        assert "not_found" in p.stderr, p.stderr
        p = run(srv, "send", "alice", "bob", "hi", "--type", "event", check=1)
        assert "bad_request" in p.stderr, p.stderr


def test_groups():
    _require_cli()
    with Server(shards=2) as srv:
        r = run(srv, "group", "create", "alice", "team", "bob", "carol", "--id", "team1")
        assert r == [{"group": "team1", "conv": "g:team1", "seq": 1}], r
        r = run(srv, "group", "info", "bob", "team1")[0]
        assert r["owner"] == "alice" and r["name"] == "team" and r["count"] == 3, r
        r = run(srv, "group", "members", "alice", "team1")[0]
        assert sorted(m["user"] for m in r["members"]) == ["alice", "bob", "carol"], r
        roles = {m["user"]: m["role"] for m in r["members"]}
        assert roles == {"alice": "owner", "bob": "member", "carol": "member"}, roles
        r = run(srv, "group", "list", "carol")
        assert [(g["group"], g["role"]) for g in r] == [("team1", "member")], r
        r = run(srv, "send", "bob", "--group", "team1", "hi team")[0]
        assert r["conv"] == "g:team1", r
        run(srv, "group", "invite", "alice", "team1", "dave")
        run(srv, "group", "kick", "alice", "team1", "carol")
        p = run(srv, "send", "carol", "--group", "team1", "still here?", check=1)
        assert "forbidden" in p.stderr, p.stderr
        p = run(srv, "group", "leave", "alice", "team1", check=1)
        assert "forbidden" in p.stderr, p.stderr
        run(srv, "group", "leave", "dave", "team1")
        r = run(srv, "group", "info", "alice", "team1")[0]
        assert r["count"] == 2, r
        run(srv, "group", "dismiss", "alice", "team1")
        p = run(srv, "send", "alice", "--group", "team1", "hello?", check=1)
        assert "not_found" in p.stderr, p.stderr


def _friend_list(srv, user, pred):
    """friend list of user once pred holds: the caller's ok follows its own side,
    the peer's side is written right after (docs/protocol.md, Friends)."""
    box = {}

    def ok():
        rows = run(srv, "friend", "list", user)
        box["r"] = {"friends": [r for r in rows if "user" in r],
                    "requests": [r for r in rows if "from" in r]}
        return pred(box["r"])

    rptest.wait_until(ok, timeout=10, what="friend list of %s" % user)
    return box["r"]


def test_friends():
    _require_cli()
    with Server(shards=2) as srv:
        run(srv, "friend", "request", "erin", "frank", "--note", "hi, it's erin")
        r = _friend_list(srv, "frank", lambda r: r["requests"])
        assert [q["from"] for q in r["requests"]] == ["erin"], r
        assert r["requests"][0]["note"] == "hi, it's erin", r
        run(srv, "friend", "accept", "frank", "erin")
        for me, peer in (("erin", "frank"), ("frank", "erin")):
            r = _friend_list(srv, me, lambda r: r["friends"])
            assert [f["user"] for f in r["friends"]] == [peer], r
        run(srv, "friend", "remove", "erin", "frank")
        _friend_list(srv, "frank", lambda r: r["friends"] == [])


def test_chat_lines_are_sent():
    _require_cli()
    with Server(shards=2) as srv:
        bob = srv.login("bob", "phone")
        p = cli("chat", "alice", "bob", "--no-resume", *srv_args(srv), stdin="one\n\ntwo\n",
                check=0)
        got = [bob.push("msg") for _ in range(2)]
        assert [m["body"] for m in got] == ["one", "two"], got
        assert [m["seq"] for m in got] == [1, 2], got
        assert all(m["from"] == "alice" and m["conv"] == "d:alice:bob" for m in got), got
        assert "error" not in p.stderr, p.stderr


def chat_proc(srv, me, peer):
    e = dict(os.environ)
    e.pop("RINGPUSH_SECRET", None)
    return subprocess.Popen([rptest.cli_binary(), "chat", me, peer, "--no-resume"] +
                            [str(a) for a in srv_args(srv)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def test_chat_ends_0_on_bye_and_1_on_a_lost_connection():
    """A chat whose server says bye (a shutdown) ends with status 0; one whose
    connection drops without a bye (the server killed) is a connection
    failure, status 1, like tail."""
    _require_cli()
    for sig, want in ((signal.SIGTERM, 0), (signal.SIGKILL, 1)):
        srv = Server(shards=1)
        with srv:
            bob = srv.login("bob", "phone")
            chat = chat_proc(srv, "alice", "bob")
            chat.stdin.write("hello\n")
            chat.stdin.flush()
            assert bob.push("msg")["body"] == "hello"  # the chat's session is up
            srv.stop(sig, timeout=5)
            chat.wait(timeout=10)  # with its input still open: ended by the server alone
            out, err = chat.communicate(timeout=10)
            assert chat.returncode == want, (sig, chat.returncode, out, err)
            assert want == 0 or "receive" in err, err


if __name__ == "__main__":
    rptest.main()
