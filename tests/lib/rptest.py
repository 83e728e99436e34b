"""
rptest: the library every Python test of ringpush is written with.

A test file defines functions named test_* and ends with

    if __name__ == "__main__":
        rptest.main()

main() runs them in the order they are defined, prints PASS/FAIL/SKIP for each,
then the line "N passed, N failed" (", N skipped" when some were skipped), and
exits 0 (all passed), 1 (any failed) or 77 (nothing ran: the server binary is
missing, or every test skipped itself).

Pieces:
  Server    one ringpushd process on free ports with its own data directory
  token()   mint JWTs, good ones and deliberately bad ones
  Client    one blocking TCP connection speaking length-prefixed msgpack frames
  swarm()   many connections at once, from several worker processes running asyncio

Environment (set by ctest through rp_pytest): RINGPUSHD is the server binary,
RINGPUSH_BUILD the build directory. Bodies keep their msgpack type: a str body
decodes to str, a bin body to bytes.
"""

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack

SECRET = "rptest-secret-5b1f0c2e9a7d"
ADMIN_KEY = "rptest-admin-7c3e91"
DEFAULT_MAX_FRAME = 65536


class Skip(Exception):
    """Raise from a test to report it as skipped (with the reason as message)."""


class ConnectionClosed(Exception):
    """The server closed the connection while a reply or push was awaited."""


def build_dir():
    return os.environ.get("RINGPUSH_BUILD", "")


def server_binary():
    return os.environ.get("RINGPUSHD") or os.path.join(build_dir(), "engine", "ringpushd")


def cli_binary():
    return os.path.join(build_dir(), "clients", "c", "ringpush")


def now_ms():
    return int(time.time() * 1000)


def wait_until(pred, timeout=5.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value (which is returned) or raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Ports


def free_ports(n, host="127.0.0.1"):
    """n distinct TCP ports that were free a moment ago (bound to port 0, then released)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ---------------------------------------------------------------------------
# Server

_started_servers = []  # servers started during the current test, for failure reports


class Server:
    """One ringpushd process.

    with Server(shards=2, args=["--heartbeat", "1"]) as srv:
        c = Client(srv) ...

    data: a directory to use (kept afterwards); by default a temporary one that is
    removed when the server is stopped for the last time. stderr goes to a file
    whose tail is printed when a test fails. Leaving the with-block stops the
    server with SIGTERM and fails the test if it does not exit 0 within 10 s.
    """

    def __init__(self, shards=2, args=None, data=None, secret=SECRET, admin_key=ADMIN_KEY,
                 max_frame=None, start_timeout=60.0, env=None):
        self.shards = shards
        self.args = list(args or [])
        self.secret = secret
        self.admin_key = admin_key
        self.host = "127.0.0.1"
        self.port, self.admin_port = free_ports(2)
        self.keep_data = data is not None
        self.data = data or tempfile.mkdtemp(prefix="rptest-data-")
        self.logdir = tempfile.mkdtemp(prefix="rptest-log-")
        self.stderr_path = os.path.join(self.logdir, "stderr.log")
        self.max_frame = max_frame if max_frame is not None else _arg_value(
            self.args, "--max-frame", DEFAULT_MAX_FRAME)
        self.start_timeout = start_timeout
        self.env = env
        self.proc = None
        self.returncode = None
        self.starts = 0

    # -- lifecycle

    def command(self):
        return [server_binary(), "--bind", self.host, "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--data", self.data,
                "--secret", self.secret, "--admin-key", self.admin_key,
                "--shards", str(self.shards)] + self.args

    def start(self):
        binary = server_binary()
        if not os.access(binary, os.X_OK):
            raise Skip("server binary not found: %s" % binary)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if self.env:
            env.update(self.env)
        self.starts += 1
        err = open(self.stderr_path, "ab")
        err.write(("--- start %d: %s\n" % (self.starts, " ".join(self.command()))).encode())
        err.flush()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err, env=env)
        err.close()
        self.returncode = None
        if self not in _started_servers:
            _started_servers.append(self)
        self.wait_ready()
        return self

    def wait_ready(self):
        """Wait until the client port (and the admin port, when there is one)
        accept connections; raise if the process dies."""
        deadline = time.monotonic() + self.start_timeout
        ports = [self.port] + ([self.admin_port] if self.admin_port else [])
        while ports:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise AssertionError("ringpushd exited with %s during start-up:\n%s"
                                     % (self.returncode, self.stderr_tail()))
            try:
                socket.create_connection((self.host, ports[0]), timeout=0.5).close()
                ports.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("ringpushd did not accept on port %d within %.0fs:\n%s"
                                     % (ports[0], self.start_timeout, self.stderr_tail()))
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Send sig and wait up to timeout seconds. Returns the exit code (negative:
        killed by that signal), or None if it had to be killed after the timeout."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = None
                self.proc = None
                return None
        self.returncode = self.proc.returncode
        self.proc = None
        self._wait_port_released()
        return self.returncode

    def _wait_port_released(self, timeout=10.0):
        """The kernel tears a dead process's io_uring down asynchronously; until
        it has, the old listener (still in the SO_REUSEPORT group) may accept a
        connection and reset it. A test that starts the next server at once
        would see that as the new server's fault: wait until the port refuses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                return
            time.sleep(0.05)

    def kill(self):
        """SIGKILL: a crash, as far as the data directory can tell."""
        return self.stop(signal.SIGKILL, timeout=10.0)

    def restart(self, sig=signal.SIGTERM, args=None):
        """Stop (if running) and start again on the same data directory and ports."""
        rc = self.stop(sig) if self.running() else self.returncode
        if args is not None:
            self.args = list(args)
        self.start()
        return rc

    def cleanup(self):
        if not self.keep_data:
            shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            if self.running():
                rc = self.stop(signal.SIGTERM, timeout=10.0)
                if et is None and rc != 0:
                    raise AssertionError("ringpushd exited with %s at the end of the test:\n%s"
                                         % (rc, self.stderr_tail()))
        finally:
            self.cleanup()
        return False

    # -- diagnostics

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, lines=40):
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    # -- conveniences

    def client(self, **kw):
        return Client(self, **kw)

    def token(self, user, **kw):
        kw.setdefault("secret", self.secret)
        return token(user, **kw)

    def admin(self, method, path, body=None, key=None, timeout=10.0):
        """One admin HTTP request (PROTOCOL §7) with the server's admin key (key=""
        sends none). Returns (status, parsed JSON body, or the text when not JSON)."""
        import http.client
        conn = http.client.HTTPConnection(self.host, self.admin_port, timeout=timeout)
        headers = {}
        key = self.admin_key if key is None else key
        if key:
            headers["Authorization"] = "Bearer " + key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def login(self, user, device="d1", resume=False, **kw):
        """A connected client with a successful hello (asserted)."""
        c = Client(self, **kw)
        r = c.hello(user, device, resume=resume)
        assert r.get("op") == "ok", "hello failed: %r" % (r,)
        return c


def _arg_value(args, name, default):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return int(args[i + 1])
    return default


# ---------------------------------------------------------------------------
# Tokens


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def token(user, exp=None, secret=SECRET, alg="HS256", ttl=3600, claims=None, omit=(),
          header=None, bad_signature=False):
    """A JWT for user. exp defaults to now + ttl (seconds).

    Bad tokens for tests: alg="none" (empty signature), alg="HS512" (a correct
    signature with another algorithm), bad_signature=True, exp in the past,
    omit=("sub",) or ("exp",), claims={...} to add or override claims, header={...}
    to override header fields.
    """
    hdr = {"alg": alg, "typ": "JWT"}
    hdr.update(header or {})
    body = {"sub": user, "exp": int(time.time() + ttl) if exp is None else int(exp)}
    body.update(claims or {})
    for k in omit:
        body.pop(k, None)
    signing_input = b64url(json.dumps(hdr, separators=(",", ":"))) + "." + \
        b64url(json.dumps(body, separators=(",", ":")))
    if alg == "none":
        sig = b""
    else:
        key = secret.encode() if isinstance(secret, str) else secret
        sig = hmac.new(key, signing_input.encode(), _HASHES[alg]).digest()
    if bad_signature:
        sig = bytes([sig[0] ^ 1]) + sig[1:] if sig else b"x"
    return signing_input + "." + b64url(sig)


def token_claims(tok, secret=SECRET):
    """Verify an HS256 token (raises AssertionError) and return its claims."""
    h, b, s = tok.split(".")
    hdr = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    assert hdr.get("alg") == "HS256", hdr
    key = secret.encode() if isinstance(secret, str) else secret
    want = hmac.new(key, (h + "." + b).encode(), hashlib.sha256).digest()
    got = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    assert hmac.compare_digest(want, got), "bad signature"
    return json.loads(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)))


# ---------------------------------------------------------------------------
# Frames


def frame(obj):
    """Encode one frame: 4-byte big-endian length, then the msgpack bytes of obj."""
    data = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def raw_frame(payload):
    """Length-prefix arbitrary bytes (for malformed-frame tests)."""
    return struct.pack(">I", len(payload)) + payload


def decode_frame_payload(payload):
    """Decode one frame's payload; it must be exactly one msgpack map."""
    obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(obj, dict):
        raise AssertionError("server sent a frame that is not a map: %r" % (obj,))
    return obj


# ---------------------------------------------------------------------------
# Client


_cmid_counter = 0


class Client:
    """A blocking TCP client. Replies are matched by id; pushes (frames without
    an id) that arrive meanwhile are queued for push()."""

    def __init__(self, server=None, host=None, port=None, timeout=5.0, source=None,
                 max_frame=None):
        if server is not None:
            host = host or server.host
            port = port or server.port
            if max_frame is None:
                max_frame = server.max_frame
        self.server = server
        self.timeout = timeout
        self.max_frame = max_frame or DEFAULT_MAX_FRAME
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rbuf = bytearray()
        self.pushes = collections.deque()
        self.replies = {}
        self.eof = False
        self.next_id = 1
        self.user = None
        self.device = None

    # -- sending

    def send(self, obj):
        self.sock.sendall(frame(obj))

    def send_raw(self, data):
        self.sock.sendall(data)

    def new_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    # -- receiving

    def _fill(self, deadline):
        """Read more bytes; False on EOF (or reset), raise TimeoutError at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.rbuf += data
        return True

    def recv(self, timeout=None):
        """The next frame from the wire (not from the push queue). Raises
        ConnectionClosed on EOF, TimeoutError when nothing arrives in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.rbuf) >= 4:
                n = struct.unpack(">I", self.rbuf[:4])[0]
                assert 1 <= n <= self.max_frame, "server sent a frame of length %d" % n
                if len(self.rbuf) >= 4 + n:
                    payload = bytes(self.rbuf[4:4 + n])
                    del self.rbuf[:4 + n]
                    return decode_frame_payload(payload)
            if self.eof or not self._fill(deadline):
                raise ConnectionClosed("server closed the connection")

    def request(self, op, _fields=None, _timeout=None, _id=None, **fields):
        """Send {"op": op, "id": auto, **fields} and return the reply with that id
        (ok, error or pong). An error without id (a fatal one) is returned too."""
        rid = self.new_id() if _id is None else _id
        msg = {"op": op, "id": rid}
        msg.update(_fields or {})
        msg.update(fields)
        self.send(msg)
        return self.reply(rid, _timeout)

    def reply(self, rid, timeout=None):
        """The reply with id rid; replies to other ids read meanwhile are kept
        for their own reply() call, pushes are queued."""
        if rid in self.replies:
            return self.replies.pop(rid)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.recv(max(0.0, deadline - time.monotonic()))
            if "id" in f:
                if f["id"] == rid:
                    return f
                self.replies[f["id"]] = f
                continue
            if f.get("op") == "error":
                return f
            self.pushes.append(f)

    def hello(self, user, device="d1", resume=True, token=None, **extra):
        """Send hello (with a valid token for user unless token is given); returns the reply."""
        if token is None:
            secret = self.server.secret if self.server is not None else SECRET
            token = globals()["token"](user, secret=secret)
        fields = {"token": token, "device": device}
        if resume is not None:
            fields["resume"] = resume
        fields.update(extra)
        r = self.request("hello", fields)
        if r.get("op") == "ok":
            self.user, self.device = user, device
        return r

    def ping(self):
        r = self.request("ping")
        assert r.get("op") == "pong", "ping answered with %r" % (r,)
        return r

    def send_message(self, to=None, group=None, body="hello", type="text", cmid=None, **extra):
        """A send request (exactly one of to / group); cmid defaults to a fresh one.
        Returns the reply."""
        fields = {"cmid": cmid or "c%d-%d" % (os.getpid(), self.new_cmid()), "type": type,
                  "body": body}
        if to is not None:
            fields["to"] = to
        if group is not None:
            fields["group"] = group
        fields.update(extra)
        return self.request("send", fields)

    def new_cmid(self):
        global _cmid_counter
        _cmid_counter += 1
        return _cmid_counter

    def ack(self, conv, seq):
        self.send({"op": "ack", "conv": conv, "seq": seq})

    def push(self, op=None, timeout=5.0):
        """The next queued or arriving push (of that op, if given; others stay
        queued in order). Raises TimeoutError, or ConnectionClosed on EOF."""
        for i, p in enumerate(self.pushes):
            if op is None or p.get("op") == op:
                del self.pushes[i]
                return p
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError("no %s push within %.1fs (queued: %r)"
                                   % (op or "", timeout, list(self.pushes)))
            if op is None or f.get("op") == op:
                return f
            self.pushes.append(f)

    def no_push(self, timeout=0.5, op=None):
        """Assert that no push (of that op) arrives within timeout."""
        try:
            p = self.push(op, timeout)
        except (TimeoutError, ConnectionClosed):
            return
        raise AssertionError("unexpected push: %r" % (p,))

    def drain(self, timeout=0.2):
        """Everything queued or arriving within timeout."""
        out = list(self.pushes)
        self.pushes.clear()
        try:
            while True:
                out.append(self.recv(timeout))
        except (TimeoutError, ConnectionClosed):
            pass
        return out

    def closed(self, timeout=5.0):
        """True once the server has closed the connection (frames read while
        waiting are queued); False if it is still open after timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                f = self.recv(max(0.0, deadline - time.monotonic()))
                self.pushes.append(f)
            except TimeoutError:
                return False
            except ConnectionClosed:
                return True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


def expect_error(reply, code, rid=None):
    """Assert reply is an error with code (and, when given, that id)."""
    assert reply.get("op") == "error", "expected error %s, got %r" % (code, reply)
    assert reply.get("code") == code, "expected error %s, got %r" % (code, reply)
    assert isinstance(reply.get("msg"), str), "error without a msg text: %r" % (reply,)
    if rid is not None:
        assert reply.get("id") == rid, "error id %r, expected %r" % (reply.get("id"), rid)


def expect_ok(reply):
    assert reply.get("op") == "ok", "expected ok, got %r" % (reply,)
    return reply


# ---------------------------------------------------------------------------
# Many connections: swarm()


def swarm(server, logins, workers=4, sources=None, resume=False, ping=True, hold=0.0,
          connect_parallel=256, timeout=90.0):
    """Open one connection per (user, device) in logins, spread over `workers`
    processes (each running asyncio), all open at the same time: every worker
    connects and sends hello on all its connections, all workers meet at a
    barrier, then each pings every connection (when ping is true), waits `hold`
    seconds, and closes.

    sources: local addresses to connect from, round-robin (e.g. 127.0.0.2..5), to
    spread the ephemeral ports. Returns a list of dicts, one per login, in order:
    {"user", "device", "hello": reply-or-None, "pong": bool, "error": text-or-None}.
    """
    ctx = multiprocessing.get_context("fork")
    workers = max(1, min(workers, len(logins)))
    barrier = ctx.Barrier(workers)
    queue = ctx.Queue()
    parts = [list(range(i, len(logins), workers)) for i in range(workers)]
    procs = []
    for w in range(workers):
        job = [(i, logins[i][0], logins[i][1],
                token(logins[i][0], secret=server.secret),
                sources[i % len(sources)] if sources else None) for i in parts[w]]
        p = ctx.Process(target=_swarm_worker,
                        args=(w, server.host, server.port, job, resume, ping, hold,
                              connect_parallel, timeout, barrier, queue))
        p.start()
        procs.append(p)
    results = [None] * len(logins)
    got = 0
    deadline = time.monotonic() + timeout + 30
    try:
        while got < workers:
            w, part = queue.get(timeout=max(1.0, deadline - time.monotonic()))
            for i, r in part:
                results[i] = r
            got += 1
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    return results


def _swarm_worker(w, host, port, job, resume, ping, hold, parallel, timeout, barrier, queue):
    try:
        part = asyncio.run(asyncio.wait_for(
            _swarm_run(host, port, job, resume, ping, hold, parallel, barrier), timeout))
    except BaseException as e:  # report, never hang the parent
        part = [(i, {"user": u, "device": d, "hello": None, "pong": False,
                     "error": "worker %d: %r" % (w, e)}) for i, u, d, _, _ in job]
        try:
            barrier.abort()
        except Exception:
            pass
    queue.put((w, part))


async def _read_frame(reader):
    hdr = await reader.readexactly(4)
    n = struct.unpack(">I", hdr)[0]
    return decode_frame_payload(await reader.readexactly(n))


async def _read_reply(reader, rid):
    while True:
        f = await _read_frame(reader)
        if f.get("id") == rid or (f.get("op") == "error" and "id" not in f):
            return f


async def _swarm_run(host, port, job, resume, ping, hold, parallel, barrier):
    sem = asyncio.Semaphore(parallel)
    conns = {}
    results = {}

    async def login(i, user, device, tok, src):
        res = {"user": user, "device": device, "hello": None, "pong": False, "error": None}
        results[i] = res
        async with sem:
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(src, 0) if src else None)
                conns[i] = (reader, writer)
                msg = {"op": "hello", "id": 1, "token": tok, "device": device, "resume": resume}
                writer.write(frame(msg))
                res["hello"] = await _read_reply(reader, 1)
            except Exception as e:
                res["error"] = "hello: %r" % (e,)

    async def do_ping(i):
        res = results[i]
        if i not in conns or res["error"]:
            return
        reader, writer = conns[i]
        try:
            writer.write(frame({"op": "ping", "id": 2}))
            r = await _read_reply(reader, 2)
            res["pong"] = r.get("op") == "pong"
            if not res["pong"]:
                res["error"] = "ping: %r" % (r,)
        except Exception as e:
            res["error"] = "ping: %r" % (e,)

    await asyncio.gather(*(login(*j) for j in job))
    loop = asyncio.get_running_loop()
    # Bounded, so that a worker that died cannot leave this thread (and the process) hanging.
    await loop.run_in_executor(None, barrier.wait, 60.0)
    if ping:
        await asyncio.gather(*(do_ping(j[0]) for j in job))
    if hold:
        await asyncio.sleep(hold)
    for reader, writer in conns.values():
        writer.close()
    return sorted(results.items())


# ---------------------------------------------------------------------------
# Runner


def main(timeout=300):
    """Run the test_* functions of the calling script (optionally only those whose
    names contain one of the command-line arguments)."""
    mod = sys.modules["__main__"]
    tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
    wanted = sys.argv[1:]
    if wanted:
        tests = [(n, f) for n, f in tests if any(w in n for w in wanted)]
    if not os.access(server_binary(), os.X_OK):
        print("SKIP all: server binary not found: %s" % server_binary())
        print("0 passed, 0 failed, %d skipped" % len(tests))
        sys.exit(77)
    passed = failed = skipped = 0

    def on_alarm(signum, frm):
        raise TimeoutError("test exceeded %ds" % timeout)

    signal.signal(signal.SIGALRM, on_alarm)
    for name, fn in tests:
        del _started_servers[:]
        t0 = time.monotonic()
        signal.alarm(timeout)
        try:
            fn()
            status = "PASS"
        except Skip as e:
            status = "SKIP (%s)" % e
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            status = "FAIL"
            traceback.print_exc(file=sys.stdout)
            for s in _started_servers:
                print("--- ringpushd stderr (port %d), last lines:\n%s" % (s.port, s.stderr_tail()))
            for s in _started_servers:
                if s.running():
                    s.stop(signal.SIGKILL)
                s.cleanup()
        finally:
            signal.alarm(0)
        print("%s %s (%.1fs)" % (status, name, time.monotonic() - t0), flush=True)
        for s in _started_servers:
            shutil.rmtree(s.logdir, ignore_errors=True)
        if status == "PASS":
            passed += 1
        elif status == "FAIL":
            failed += 1
        else:
            skipped += 1
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line, flush=True)
    if failed:
        sys.exit(1)
    sys.exit(0 if passed else 77)
