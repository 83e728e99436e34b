"""
`ringpush chat` used as a person would: two terminals under tmux, alice's and
bob's, each running `ringpush chat <me> <peer>`. Lines are typed with
`tmux send-keys`; what each person sees is read with `tmux capture-pane -p`.
Checks that each screen shows the conversation in the order it happened
(one's own lines after the prompt, the peer's as "<peer>: text"), that a
message arriving while a line is half typed is printed above it and the
half-typed line is kept (and sent whole), that backspace and Ctrl-U edit the
line as at a shell, that another conversation's message is shown with its id
and does not take the read marks, that the
sender is told when the peer has seen a message, that /recall shows on the
peer's screen, and that Ctrl-D leaves with exit status 0. Skips (77) when
tmux is not installed.
"""

import os
import re
import shutil
import tempfile
import subprocess
import time

import rptest
from rptest import Server

from test_cli import _require_cli


class Tmux:
    """A private tmux server (its own socket) holding one window per person."""

    def __init__(self):
        self.sock = "rptest-chat-%d" % os.getpid()
        # Each command writes its exit status to a file as it ends: tmux itself
        # now and then leaves an exited pane process unreaped for a long time
        # (a zombie, so the pane never reads as dead), which is tmux's business,
        # not what this test is about.
        self.statdir = tempfile.mkdtemp(prefix="rptest-tmux-")
        self.env = dict(os.environ, TERM="xterm-256color")
        self.env.pop("TMUX", None)
        self.env.pop("RINGPUSH_SECRET", None)

    def run(self, *args, check=True):
        p = subprocess.run(["tmux", "-L", self.sock] + list(args), env=self.env,
                           capture_output=True, text=True, timeout=10)
        if check:
            assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    def start(self, name, argv):
        cmd = " ".join("'%s'" % a.replace("'", "'\\''") for a in argv)
        cmd = "%s; echo $? > %s/%s.status" % (cmd, self.statdir, name)
        if name == "alice":
            self.run("new-session", "-d", "-s", "chat", "-n", name, "-x", "100", "-y", "40", cmd)
            self.run("set-option", "-g", "remain-on-exit", "on")
        else:
            self.run("new-window", "-d", "-t", "chat", "-n", name, cmd)

    def type(self, name, text):
        self.run("send-keys", "-t", "chat:" + name, "-l", text)
        self.run("send-keys", "-t", "chat:" + name, "Enter")

    def key(self, name, key):
        self.run("send-keys", "-t", "chat:" + name, key)

    def screen(self, name):
        return self.run("capture-pane", "-p", "-J", "-t", "chat:" + name)

    def wait_screen(self, name, pred, what, timeout=10.0):
        try:
            return rptest.wait_until(lambda: pred(self.screen(name)), timeout=timeout,
                                     what=what)
        except AssertionError:
            raise AssertionError("%s; %s's screen:\n%s" % (what, name, self.screen(name)))

    def dead_status(self, name):
        try:
            with open(os.path.join(self.statdir, name + ".status")) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text else None

    def kill(self):
        self.run("kill-server", check=False)
        shutil.rmtree(self.statdir, ignore_errors=True)


def chat_lines(screen):
    """The conversation lines of a screen: "<user>: text" and "<user>> text"
    (one's own typed line after the prompt), in screen order."""
    return [l.rstrip() for l in screen.splitlines()
            if re.match(r"^(alice|bob)(: |> )\S", l)]


def test_two_terminals():
    _require_cli()
    if not shutil.which("tmux"):
        raise rptest.Skip("tmux is not installed")
    t = Tmux()
    with Server(shards=2) as srv:
        try:
            base = [rptest.cli_binary(), "chat"]
            conn = ["--host", srv.host, "--port", str(srv.port), "--secret", srv.secret,
                    "--device", "term"]
            t.start("alice", base + ["alice", "bob"] + conn)
            t.start("bob", base + ["bob", "alice"] + conn)
            for me, peer in (("alice", "bob"), ("bob", "alice")):
                t.wait_screen(me, lambda s, me=me, peer=peer: "-- %s, chatting with %s" % (me, peer)
                              in s and re.search(r"^%s> $" % me, s, re.M),
                              "%s's banner and prompt" % me)

            # another conversation of bob's speaks first: shown with its id, and
            # bob's read marks still go to the chat's conversation ("seen by" below)
            carl = srv.login("carl", "d1")
            rptest.expect_ok(carl.request("group.create", group="gx", name="X",
                                          members=["bob"]))
            rptest.expect_ok(carl.send_message(group="gx", body="in group"))
            t.wait_screen("bob", lambda s: "[g:gx] carl: in group" in s,
                          "the group's line, marked as another conversation's")

            # bob starts typing; alice's message arrives meanwhile; he fixes a typo
            # (backspace), and an abandoned draft (Ctrl-U) is never sent.
            t.run("send-keys", "-t", "chat:bob", "-l", "scrap this")
            t.key("bob", "C-u")
            t.run("send-keys", "-t", "chat:bob", "-l", "hello alz")
            t.wait_screen("bob", lambda s: re.search(r"^bob> hello alz$", s, re.M),
                          "bob's half-typed line")
            t.type("alice", "hi bob")
            t.wait_screen("bob", lambda s: re.search(
                r"^alice: hi bob\n(?:-- .*\n)*bob> hello alz$", s, re.M),
                "alice's line above bob's half-typed one, which is drawn again")
            t.key("bob", "BSpace")
            t.type("bob", "ice")
            t.wait_screen("alice", lambda s: "bob: hello alice" in s, "alice to see bob's line")
            assert "scrap" not in t.screen("alice"), t.screen("alice")

            script = [("alice", "hi bob"), ("bob", "hello alice"),
                      ("alice", "how are you?"), ("bob", "fine, thanks: \"quotes\" & all"),
                      ("bob", "and you?"), ("alice", "well")]
            for who, text in script[2:]:
                peer = "bob" if who == "alice" else "alice"
                t.type(who, text)
                t.wait_screen(peer, lambda s, who=who, text=text: "%s: %s" % (who, text) in s,
                              "%s to see %r from %s" % (peer, text, who))

            want = {}
            for me in ("alice", "bob"):
                want[me] = ["%s%s %s" % (who, ">" if who == me else ":", text)
                            for who, text in script]
                got = chat_lines(t.screen(me))
                assert got == want[me], "%s's screen:\n%s\nwanted:\n%s" % (
                    me, "\n".join(got), "\n".join(want[me]))

            # bob's terminal showed "well": alice is told he has seen it.
            t.wait_screen("alice", lambda s: s.rstrip().splitlines()[-2:].count(
                "-- seen by bob") or "-- seen by bob" in s.split("alice> well")[-1],
                "alice to see that bob has read her last message")
            # alice takes it back: bob's screen says so.
            t.type("alice", "/recall")
            t.wait_screen("alice", lambda s: "-- recalled" in s, "alice's recall confirmed")
            t.wait_screen("bob", lambda s: re.search(r"\* alice recalled message #\d+", s),
                          "bob to see the recall")
            for me in ("alice", "bob"):
                t.key(me, "C-d")
            for me in ("alice", "bob"):
                try:
                    rptest.wait_until(lambda me=me: t.dead_status(me) is not None,
                                      timeout=15.0, what="%s's chat to exit" % me)
                except AssertionError as e:
                    raise AssertionError("%s; screen:\n%s" % (e, t.screen(me)))
                assert t.dead_status(me) == 0, (me, t.dead_status(me), t.screen(me))
        finally:
            t.kill()


if __name__ == "__main__":
    rptest.main()
