"""
Isolation between users (PROTOCOL §5, §6, §7): a user cannot read another's
direct history, ack / read / recall in a conversation they are not in, send as
someone else, or see a group after being removed; the admin port refuses a
missing or wrong key and does nothing then; secrets are compared in constant
time (checked in the source: the comparisons of a token signature and of the
admin key go through CRYPTO_memcmp, never memcmp / strcmp).
"""

import os
import re

import rptest
from rptest import Server, expect_error, expect_ok

import reltools

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_direct_history_and_cursors_of_others():
    with Server(shards=2, env=reltools.server_env()) as srv:
        a, b, eve = srv.login("ann", "d"), srv.login("ben", "d"), srv.login("eve", "d")
        r = expect_ok(a.send_message(to="ben", body="private"))
        conv, seq = r["conv"], r["seq"]
        b.push("msg")
        expect_error(eve.request("history", conv=conv), "forbidden")
        expect_error(eve.request("history", conv=conv, after=0), "forbidden")
        # read / recall outside one's conversations: refused (docs/protocol.md
        # answers not_found for a conversation the user is not in)
        for op in ("read", "recall"):
            rep = eve.request(op, conv=conv, seq=seq)
            assert rep.get("op") == "error" and rep["code"] in ("forbidden", "not_found"), \
                (op, rep)
        eve.ack(conv, seq)  # no reply, and no effect
        eve.ping()
        assert conv not in reltools.sync_convs(eve), "eve sees %s after an ack" % conv
        # nothing reached the members because of eve
        a.no_push(0.3)
        b.no_push(0.3)
        # the entry is intact: not recalled, read cursor of ben untouched
        h = expect_ok(b.request("history", conv=conv))["msgs"]
        assert [(m["type"], m["body"]) for m in h] == [("text", "private")], h
        assert reltools.sync_convs(b)[conv]["read_seq"] == 0


def test_no_spoofed_sender():
    with Server(shards=2, env=reltools.server_env()) as srv:
        a, b = srv.login("amy", "d"), srv.login("bob", "d")
        # extra keys naming another sender or device are ignored
        r = expect_ok(a.send_message(to="bob", body="hi", **{"from": "carl", "dev": "x",
                                                                "user": "carl"}))
        p = b.push("msg")
        assert p["from"] == "amy" and p["dev"] == "d", p
        h = expect_ok(b.request("history", conv=r["conv"]))["msgs"]
        assert h[0]["from"] == "amy", h
        # a token for amy cannot claim another user in hello
        c = rptest.Client(srv)
        r = c.request("hello", token=srv.token("amy"), device="d2", user="carl", sub="carl",
                      resume=False)
        assert expect_ok(r)["user"] == "amy", r


def test_removed_member_sees_nothing_more():
    with Server(shards=2, env=reltools.server_env()) as srv:
        own, m, x = srv.login("gown", "d"), srv.login("gmem", "d"), srv.login("gout", "d")
        expect_ok(own.request("group.create", name="g", group="iso", members=["gmem", "gout"]))
        m.drain(0.3)
        x.drain(0.3)
        expect_ok(own.send_message(group="iso", body="before"))
        x.push("msg")
        m.push("msg")
        expect_ok(own.request("group.kick", group="iso", users=["gout"]))
        ev = x.push("msg")
        assert ev["type"] == "event" and ev["data"]["kind"] == "kick", ev
        kick_seq = ev["seq"]
        r = expect_ok(own.send_message(group="iso", body="after"))
        x.no_push(0.5, op="msg")
        expect_error(x.send_message(group="iso", body="still here?"), "forbidden")
        h = x.request("history", conv="g:iso")
        if h.get("op") == "ok":
            assert all(e["seq"] <= kick_seq for e in h["msgs"]), \
                "a removed member reads entries after the removal: %r" % (h["msgs"],)
        else:
            expect_error(h, "forbidden")
        h = x.request("history", conv="g:iso", after=kick_seq)
        if h.get("op") == "ok":
            assert not h["msgs"], h
        for op, extra in (("read", {"conv": "g:iso", "seq": r["seq"]}),
                          ("recall", {"conv": "g:iso", "seq": r["seq"]}),
                          ("group.members", {"group": "iso"}),
                          ("group.invite", {"group": "iso", "users": ["gout"]}),
                          ("group.nick", {"group": "iso", "nick": "back"})):
            rep = x.request(op, extra)
            assert rep.get("op") == "error" and rep["code"] in ("forbidden", "not_found"), \
                (op, rep)
        m.drain(0.3)
        # the member who stayed got "after"; nothing from the removed one
        got = expect_ok(m.request("history", conv="g:iso", after=kick_seq))["msgs"]
        assert [e["body"] for e in got if e["type"] == "text"] == ["after"], got


def test_admin_port_refuses_missing_or_wrong_key():
    with Server(shards=2, env=reltools.server_env()) as srv:
        status, _ = srv.admin("GET", "/healthz", key="")
        assert status == 200, status
        victim = srv.login("vic", "d")
        almost = srv.admin_key[:-1] + chr(ord(srv.admin_key[-1]) ^ 1)
        for key in ("", "wrong", almost, srv.admin_key + "x", srv.admin_key[:-1]):
            for method, path, body in (
                    ("POST", "/v1/messages", {"from": "mallory", "to": "vic", "type": "text",
                                              "body": "x", "cmid": "adm1"}),
                    ("POST", "/v1/users/vic/kick", None),
                    ("GET", "/v1/users/vic", None),
                    ("GET", "/metrics", None)):
                status, resp = srv.admin(method, path, body, key=key)
                assert status == 401, (key, method, path, status, resp)
        victim.no_push(0.5)  # not kicked, no message
        victim.ping()
        status, resp = srv.admin("POST", "/v1/messages", {"from": "mallory", "to": "vic",
                                                          "type": "text", "body": "ok",
                                                          "cmid": "adm2"})
        if status == 503:
            # the refusals are what this test is about; the send on behalf
            # that proves the right key works is not served by this build
            print("  note: POST /v1/messages with the right key: %r" % (resp,))
            return
        assert status == 200, (status, resp)
        assert victim.push("msg")["body"] == "ok"


def _calls(text, fn):
    return [m.start() for m in re.finditer(r"\b%s\s*\(" % fn, text)]


def test_secret_comparisons_constant_time():
    # The token signature (protocol/jwt.c) and the admin key (engine/admin/)
    # are compared with CRYPTO_memcmp; no variable-time comparison touches them.
    files = {"protocol/jwt.c": ("sig", "mac", "signature", "hmac", "secret")}
    admin = os.path.join(SRC, "engine", "admin")
    if os.path.isdir(admin):
        for f in sorted(os.listdir(admin)):
            if f.endswith(".c"):
                files["engine/admin/" + f] = ("key", "bearer", "auth", "token", "digest")
    found_ct = set()
    bad = []
    for rel, words in files.items():
        path = os.path.join(SRC, rel)
        if not os.path.exists(path):
            continue
        text = open(path).read()
        if _calls(text, "CRYPTO_memcmp"):
            found_ct.add(rel)
        for lineno, line in enumerate(text.splitlines(), 1):
            if re.search(r"\b(memcmp|strcmp|strncmp|strcasecmp|bcmp)\s*\(", line) and \
                    any(w in line.lower() for w in words):
                bad.append("%s:%d: %s" % (rel, lineno, line.strip()))
    assert not bad, "variable-time comparison of a secret:\n" + "\n".join(bad)
    assert "protocol/jwt.c" in found_ct, "protocol/jwt.c compares signatures without CRYPTO_memcmp"
    if os.path.isdir(admin):
        assert any(f.startswith("engine/admin/") for f in found_ct), \
            "engine/admin compares the key without CRYPTO_memcmp"


if __name__ == "__main__":
    rptest.main(timeout=300)
