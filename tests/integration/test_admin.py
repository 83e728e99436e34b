"""
Admin HTTP API (PROTOCOL §7) against a live ringpushd: /healthz, the bearer key
on every other endpoint (401 and no effect), 404, 400 and 413 paths, bounded
heads and bodies, keep-alive and pipelining on one connection, a slow client
closed after the request timeout while others are served, /metrics as
Prometheus text, and POST /v1/backup with a restore from the checkpoint.
"""

import json
import os
import shutil
import socket
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families

import rptest
from rptest import Server, expect_ok

REQUEST_TIMEOUT = 5.0  # ADMIN_REQUEST_MS: a request must arrive whole within this


# Server.wait_ready waits for the admin port too.
AdminServer = Server


# ---------------------------------------------------------------------------
# A raw HTTP/1.1 client, for what http.client will not do (pipelining,
# trickling bytes, oversized heads) and to read several responses on one socket.


class Raw:
    def __init__(self, srv, timeout=10.0):
        self.sock = socket.create_connection((srv.host, srv.admin_port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("admin server closed the connection")
        self.buf += data

    def response(self, to_head=False):
        """(status, headers dict lower-case, body bytes) of the next response;
        to_head: a response to HEAD (no body whatever Content-Length says)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        headers = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if to_head else int(headers["content-length"])
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, timeout):
        """True once the server closes (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()


def req(method, path, key=None, body=None, extra=""):
    head = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
    if key is not None:
        head += "Authorization: Bearer %s\r\n" % key
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    return head.encode() + extra.encode() + b"\r\n" + data


def expect_error_body(status, body, want_status, want_code):
    assert status == want_status, (status, body)
    assert isinstance(body, dict), body
    assert body.get("code") == want_code, body
    assert isinstance(body.get("msg"), str) and body["msg"], body


def metrics(srv):
    status, text = srv.admin("GET", "/metrics")
    assert status == 200, (status, text)
    assert isinstance(text, str), text
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError("no sample %s%r in %s" % (name, labels, family))


def settle(srv, shards):
    """Wait until no client connection is open (sessions ended before a stop)."""
    rptest.wait_until(lambda: sum(
        sample(metrics(srv), "ringpush_connections", "ringpush_connections", shard=str(i))
        for i in range(shards)) == 0, what="client connections closed")


# ---------------------------------------------------------------------------


def test_healthz_without_key():
    with AdminServer(shards=2) as srv:
        status, body = srv.admin("GET", "/healthz", key="")
        assert status == 200 and body == {"status": "ok"}, (status, body)
        status, body = srv.admin("GET", "/healthz", key="wrong")
        assert status == 200, (status, body)


def test_missing_or_wrong_key_401_and_nothing_happens():
    with AdminServer(shards=2) as srv:
        target = os.path.join(tempfile.mkdtemp(prefix="rptest-bk-"), "snap")
        try:
            for key in ("", "wrong", srv.admin_key + "x", srv.admin_key[:-1]):
                for method, path, body in (("GET", "/metrics", None),
                                           ("POST", "/v1/backup", {"dir": target}),
                                           ("POST", "/v1/messages", {"from": "a", "to": "b"}),
                                           ("GET", "/v1/users/alice", None),
                                           ("POST", "/v1/users/alice/kick", None),
                                           ("GET", "/no/such/path", None)):
                    status, resp = srv.admin(method, path, body=body, key=key)
                    expect_error_body(status, resp, 401, "unauthorized")
            assert not os.path.exists(target), "a refused backup left a checkpoint"
            # Another scheme carrying the right key is refused too.
            r = Raw(srv)
            r.send("GET /metrics HTTP/1.1\r\nAuthorization: Basic %s\r\n\r\n" % srv.admin_key)
            status, headers, body = r.response()
            assert status == 401 and headers.get("www-authenticate") == "Bearer", headers
            r.close()
            # A refused request leaves the connection usable, and counts.
            fams = metrics(srv)
            assert sample(fams, "ringpush_admin_requests", "ringpush_admin_requests_total",
                          result="unauthorized") >= 25
        finally:
            shutil.rmtree(os.path.dirname(target), ignore_errors=True)


def test_a_wrong_key_is_refused_before_the_body():
    """A request with a wrong or missing key is answered 401 as soon as its
    head is read: the server does not wait for (nor keep) its body. With
    the right key the same head waits for the body."""
    with AdminServer(shards=1) as srv:
        for auth in ("", "Authorization: Bearer wrong\r\n"):
            r = Raw(srv)
            r.send(("POST /v1/messages HTTP/1.1\r\n%sContent-Type: application/json\r\n"
                    "Content-Length: 150000\r\n\r\n" % auth).encode() + b"{" + b" " * 1000)
            status, headers, body = r.response()
            expect_error_body(status, json.loads(body), 401, "unauthorized")
            assert headers["connection"] == "close", headers
            r.close()
        r = Raw(srv)
        r.send(("POST /v1/messages HTTP/1.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Length: 20\r\n\r\n" % srv.admin_key).encode())
        time.sleep(0.3)
        r.send(b'{"from":"a"}        ')  # the body, later: a bad request, not a 401
        status, headers, body = r.response()
        expect_error_body(status, json.loads(body), 400, "bad_request")
        r.close()
        assert srv.admin("GET", "/healthz")[0] == 200


def test_not_found():
    with AdminServer(shards=1) as srv:
        for method, path in (("GET", "/"), ("GET", "/v1/nothing"), ("POST", "/metrics"),
                             ("GET", "/v1/backup"), ("GET", "/v1/users/bad%20id"),
                             ("POST", "/v1/users/alice/kick/now")):
            status, body = srv.admin(method, path)
            expect_error_body(status, body, 404, "not_found")


def test_bad_requests_400():
    with AdminServer(shards=1) as srv:
        for body in ({}, {"dir": "relative/path"}, {"dir": 5}, ["x"]):
            status, resp = srv.admin("POST", "/v1/backup", body=body)
            expect_error_body(status, resp, 400, "bad_request")
        bad_messages = [
            {"to": "b", "type": "text", "body": "x", "cmid": "c"},
            {"from": "a", "type": "text", "body": "x", "cmid": "c"},
            {"from": "a", "to": "b", "group": "g", "type": "text", "body": "x", "cmid": "c"},
            {"from": "a", "to": "b", "type": "event", "body": "x", "cmid": "c"},
            {"from": "a", "to": "b", "type": "x" * 17, "body": "x", "cmid": "c"},
            {"from": "a", "to": "b", "type": "text", "body": 3, "cmid": "c"},
            {"from": "a", "to": "b", "type": "text", "body": "x", "cmid": "c" * 65},
            {"from": "a b", "to": "b", "type": "text", "body": "x", "cmid": "c"},
        ]
        for body in bad_messages:
            status, resp = srv.admin("POST", "/v1/messages", body=body)
            expect_error_body(status, resp, 400, "bad_request")
        # A name twice (parsers disagree on which counts), or too many members.
        twice = (b'{"from":"alice","from":"mallory","to":"b","type":"text","body":"x",'
                 b'"cmid":"dup-name"}')
        many = json.dumps(dict({"from": "a", "to": "b", "type": "text", "body": "x",
                                "cmid": "many"}, **{"k%d" % i: i for i in range(64)})).encode()
        for raw in (twice, many):
            r = Raw(srv)
            r.send(req("POST", "/v1/messages", srv.admin_key, body=raw))
            status, _, body = r.response()
            expect_error_body(status, json.loads(body), 400, "bad_request")
            r.close()
        # Not JSON at all, an escape that is no character, not an object,
        # something after the object: each says which.
        for raw, why in ((b"{not json", "not valid JSON"),
                         (b'{"from":"a","to":"b","type":"text","body":"\\ud800","cmid":"s"}',
                          "lone surrogate"),
                         (b'["x"]', "not a JSON object"),
                         (b'{"dir":"/tmp"} {}', "data after the JSON object")):
            r = Raw(srv)
            r.send(req("POST", "/v1/messages", srv.admin_key, body=raw))
            status, _, body = r.response()
            resp = json.loads(body)
            expect_error_body(status, resp, 400, "bad_request")
            assert why in resp.get("msg", ""), (raw, resp)
            r.close()
        # Not HTTP: 400, then the connection is closed.
        r = Raw(srv)
        r.send(b"HELLO THERE\r\n\r\n")
        status, headers, body = r.response()
        expect_error_body(status, json.loads(body), 400, "bad_request")
        assert headers["connection"] == "close", headers
        assert r.closed(5.0), "connection left open after a malformed request"
        r.close()


# The admin HTTP body bound with the default max_body (32 KiB): 6 x max_body + 16 KiB.
HTTP_BODY_MAX = 6 * 32768 + 16384


def test_body_over_limit_413():
    with AdminServer(shards=1) as srv:
        # Declared over the bound: refused from the head, the body is never read.
        big = json.dumps({"dir": "/tmp/" + "a" * HTTP_BODY_MAX}).encode()
        r = Raw(srv)
        r.send(req("POST", "/v1/backup", srv.admin_key, body=big))
        status, headers, body = r.response()
        expect_error_body(status, json.loads(body), 413, "too_large")
        assert headers["connection"] == "close", headers
        assert r.closed(5.0)
        r.close()
        # Through http.client as well (it sends the whole body first).
        status, resp = srv.admin("POST", "/v1/messages",
                                 body={"from": "a", "to": "b", "type": "text",
                                       "body": "x" * HTTP_BODY_MAX, "cmid": "c"})
        expect_error_body(status, resp, 413, "too_large")
        # Chunked, growing past the bound.
        r = Raw(srv)
        chunk = b"x" * 40000
        r.send(b"POST /v1/messages HTTP/1.1\r\nAuthorization: Bearer " + srv.admin_key.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(HTTP_BODY_MAX // len(chunk) + 1):
            r.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        status, _, body = r.response()
        expect_error_body(status, json.loads(body), 413, "too_large")
        r.close()
        # A message body over max_body (but within the HTTP bound) is too large too.
        status, resp = srv.admin("POST", "/v1/messages",
                                 body={"from": "a", "to": "b", "type": "text",
                                       "body": "x" * 40000, "cmid": "c"})
        expect_error_body(status, resp, 413, "too_large")
        # Just under the HTTP bound is read whole (and then judged on content).
        status, resp = srv.admin("POST", "/v1/backup",
                                 body={"dir": "rel/" + "a" * (HTTP_BODY_MAX - 100)})
        expect_error_body(status, resp, 400, "bad_request")
        # The server still serves.
        assert srv.admin("GET", "/healthz")[0] == 200


def test_a_body_of_max_body_bytes_fits_however_json_escapes_it():
    """A send's body of max_body bytes is accepted whatever its characters
    cost in JSON: control characters (\\u0001, 6 bytes each) and non-ASCII
    ones written as \\uXXXX escapes; the push carries the same bytes."""
    with AdminServer(shards=1) as srv:
        b = srv.login("esc-b", "d", resume=False)
        bodies = ["\u0001" * 32768, "\u00e9" * 16384, "\u20ac" * 10922, "\U0001f600" * 8192]
        for i, text in enumerate(bodies):
            assert len(text.encode()) <= 32768
            status, resp = srv.admin("POST", "/v1/messages",
                                     body={"from": "esc-a", "to": "esc-b", "type": "text",
                                           "body": text, "cmid": "e%d" % i})
            assert status == 200, (i, status, resp)
            p = b.push("msg")
            got = p["body"].decode() if isinstance(p["body"], bytes) else p["body"]
            assert got == text, i
        status, resp = srv.admin("POST", "/v1/messages",
                                 body={"from": "esc-a", "to": "esc-b", "type": "text",
                                       "body": "\u0001" * 32769, "cmid": "over"})
        expect_error_body(status, resp, 413, "too_large")


def test_head_over_limit_413():
    with AdminServer(shards=1) as srv:
        r = Raw(srv)
        r.send(req("GET", "/metrics", srv.admin_key, extra="X-Pad: %s\r\n" % ("p" * 9000)))
        status, headers, body = r.response()
        expect_error_body(status, json.loads(body), 413, "too_large")
        assert r.closed(5.0)
        r.close()
        # A head just under 8 KiB is fine.
        r = Raw(srv)
        r.send(req("GET", "/healthz", extra="X-Pad: %s\r\n" % ("p" * 8000)))
        status, _, _ = r.response()
        assert status == 200
        r.close()


def test_keep_alive_and_pipelining():
    with AdminServer(shards=2) as srv:
        r = Raw(srv)
        key = srv.admin_key
        # Several requests one after another on one connection.
        for i in range(5):
            r.send(req("GET", "/healthz"))
            status, headers, body = r.response()
            assert status == 200 and headers["connection"] == "keep-alive", (i, headers)
        r.send(req("GET", "/metrics", key))
        status, headers, body = r.response()
        assert status == 200 and headers["content-type"].startswith("text/plain"), headers
        r.send(req("GET", "/metrics", "bad"))
        assert r.response()[0] == 401
        r.send(req("GET", "/nowhere", key))
        assert r.response()[0] == 404
        r.send(req("POST", "/v1/backup", key, body={"dir": "x"}))
        assert r.response()[0] == 400
        # Pipelined: three requests in one write, answered in order.
        r.send(req("GET", "/healthz") + req("GET", "/nope", key) + req("GET", "/metrics", key))
        assert r.response()[0] == 200
        assert r.response()[0] == 404
        assert r.response()[0] == 200
        # HEAD: the head of the GET response, no body, pipelined with a GET.
        r.send(req("HEAD", "/healthz") + req("HEAD", "/metrics", key) + req("GET", "/healthz"))
        status, headers, body = r.response(to_head=True)
        assert status == 200 and int(headers["content-length"]) > 0 and body == b"", headers
        status, headers, _ = r.response(to_head=True)
        assert status == 200 and headers["content-type"].startswith("text/plain"), headers
        status, _, body = r.response()
        assert status == 200 and b"ok" in body
        # an error answer after a HEAD has its body
        r2 = Raw(srv)
        r2.send(req("HEAD", "/healthz"))
        assert r2.response(to_head=True)[0] == 200
        r2.send(b"NOT HTTP\r\n\r\n")
        status, _, body = r2.response()
        expect_error_body(status, json.loads(body), 400, "bad_request")
        r2.close()
        # Connection: close is honoured.
        r.send(req("GET", "/healthz", extra="Connection: close\r\n"))
        status, headers, _ = r.response()
        assert status == 200 and headers["connection"] == "close", headers
        assert r.closed(5.0)
        r.close()


class LowFdServer(AdminServer):
    """A server with room for only a few descriptors."""

    def command(self):
        return ["prlimit", "--nofile=48:48"] + super().command()


def test_accept_out_of_descriptors_pauses():
    """Out of descriptors, accepting pauses until the next tick instead of
    failing again and again at once; it resumes when descriptors come back."""
    with LowFdServer(shards=1) as srv:
        socks = []
        for _ in range(40):
            try:
                socks.append(socket.create_connection((srv.host, srv.admin_port), timeout=1))
            except OSError:
                break
        time.sleep(1.0)
        lines = srv.stderr_text().count("admin_accept_")
        assert 1 <= lines <= 10, "%d accept failure lines in 1 s" % lines
        for s in socks:
            s.close()

        def healthy():
            try:
                r = Raw(srv, timeout=1)
                r.send("GET /healthz HTTP/1.1\r\n\r\n")
                ok = r.response()[0] == 200
                r.close()
                return ok
            except OSError:
                return False
        rptest.wait_until(healthy, timeout=10.0, what="/healthz after the descriptors came back")


ADMIN_MAX_CONNS = 64


def test_accepts_minus_closes_is_the_connections_open():
    """A connection handed to its home shard is not counted closed by the
    shard that accepted it: over all shards, accepts - closes = open."""
    with AdminServer(shards=2) as srv:
        def counts():
            fams = metrics(srv)
            total = lambda fam, name, **kw: sum(
                sample(fams, fam, name, shard=str(i), **kw) for i in range(2))
            return (total("ringpush_accepts", "ringpush_accepts_total"),
                    total("ringpush_closes", "ringpush_closes_total"),
                    total("ringpush_connections", "ringpush_connections"),
                    total("ringpush_handoffs", "ringpush_handoffs_total", dir="out"))
        # Which shard accepts a connection is the kernel's choice (a hash of
        # its addresses): log in until one has been handed over, so the test
        # never depends on that draw.
        conns = []
        while len(conns) < 12 or counts()[3] == 0:
            assert len(conns) < 64, "64 logins and no handoff"
            conns.append(srv.login("hc%02d" % len(conns)))
        for c in conns[:5]:
            c.close()
        want = len(conns) - 5
        rptest.wait_until(lambda: counts()[2] == want, what="%d connections open" % want)
        accepts, closes, open_, handoffs = counts()
        assert handoffs > 0, "no connection was handed over: nothing tested"
        assert accepts - closes == open_ == want, (accepts, closes, open_, handoffs)
        for c in conns[5:]:
            c.close()


def test_full_table_closes_the_longest_idle_connection():
    """With all 64 slots taken, a new connection is served in the place of the
    connection idle the longest; connections inside a request are kept; when
    every one is inside a request, a new one is closed at once."""
    with AdminServer(shards=1) as srv:
        # 2 idle after a request (the first the oldest), 62 in the middle of one
        idle = []
        for _ in range(2):
            r = Raw(srv, timeout=5)
            r.send(req("GET", "/healthz"))
            assert r.response()[0] == 200
            idle.append(r)
            time.sleep(0.3)  # the deadlines (last activity + 15 s) differ by more than a tick
        # the first one (in the lower slot) is used again: the second is now idle the longest
        idle[0].send(req("GET", "/healthz"))
        assert idle[0].response()[0] == 200
        idle.reverse()
        time.sleep(0.3)
        busy = []
        for _ in range(ADMIN_MAX_CONNS - 2):
            r = Raw(srv, timeout=5)
            r.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head is not complete
            busy.append(r)
        time.sleep(0.3)

        def served():
            r = Raw(srv, timeout=5)
            try:
                r.send(req("GET", "/healthz"))
                return r.response()[0] == 200, r
            except (EOFError, OSError):
                return False, r
        ok, newer = served()
        assert ok, "a new connection was not served with the table full of idle ones"
        assert idle[0].closed(2.0), "the longest idle connection was not the one closed"
        assert not idle[1].closed(0.3), "a connection idle for less time was closed"
        ok, newest = served()
        assert ok, "the second new connection was not served"
        assert idle[1].closed(2.0)
        for r in busy[:3]:  # inside a request: still answered
            r.send("\r\n")
            assert r.response()[0] == 200
            r.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        newer.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        newest.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        # every slot inside a request now: a new connection is closed at once
        late = Raw(srv, timeout=5)
        assert late.closed(2.0), "a connection past a table of busy ones was kept"
        for r in idle + busy + [newer, newest, late]:
            r.close()
        time.sleep(0.3)  # the server sees the closes
        fams = metrics(srv)
        assert sample(fams, "ringpush_admin_idle_closed", "ringpush_admin_idle_closed_total") == 2


def test_expect_100_continue():
    """A client that waits for "100 Continue" before its body gets it at once."""
    with AdminServer(shards=1) as srv:
        body = json.dumps({"dir": "relative"}).encode()
        r = Raw(srv, timeout=0.5)
        r.send(("POST /v1/backup HTTP/1.1\r\nAuthorization: Bearer %s\r\n"
                "Expect: 100-continue\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (srv.admin_key, len(body))).encode())
        status, _, _ = r.response(to_head=True)  # within 0.5 s, or the read times out
        assert status == 100
        r.send(body)
        status, _, resp = r.response()
        expect_error_body(status, json.loads(resp), 400, "bad_request")
        r.close()


def test_slow_client_closed_others_served():
    with AdminServer(shards=2) as srv:
        slow = Raw(srv)
        never = Raw(srv)
        never.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        t0 = time.monotonic()
        closed_at = None
        data = req("GET", "/metrics", srv.admin_key)
        i = 0
        # Trickle one byte every 0.25 s: the whole request would take ~15 s.
        while time.monotonic() - t0 < REQUEST_TIMEOUT + 4:
            try:
                slow.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            i += 1
            assert i < len(data), "the slow request completed before the timeout"
            # Others are served meanwhile.
            if i % 4 == 0:
                assert srv.admin("GET", "/healthz")[0] == 200
            if slow.closed(0.25):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "slow client still connected after %.1fs" % (
            time.monotonic() - t0)
        took = closed_at - t0
        assert REQUEST_TIMEOUT - 0.5 <= took <= REQUEST_TIMEOUT + 2.0, took
        assert never.closed(3.0), "client that never finished its head still connected"
        slow.close()
        never.close()
        fams = metrics(srv)
        assert sample(fams, "ringpush_admin_timeouts", "ringpush_admin_timeouts_total") >= 2


def test_metrics_prometheus_text():
    with AdminServer(shards=2) as srv:
        c = srv.login("mallory", "d1")
        c.ping()
        bad = rptest.Client(srv)
        r = bad.hello("eve", token=rptest.token("eve", bad_signature=True))
        assert r.get("op") == "error", r
        fams = metrics(srv)
        for name in ("ringpush_shards", "ringpush_connections", "ringpush_accepts",
                     "ringpush_hellos", "ringpush_frames", "ringpush_bytes", "ringpush_bye_slow",
                     "ringpush_rate_limited", "ringpush_xcore_full", "ringpush_xcore_ring_depth",
                     "ringpush_storage_groups", "ringpush_storage_commit_seconds",
                     "ringpush_storage_group_batches", "ringpush_admin_requests",
                     "ringpush_backups"):
            assert name in fams, "missing family %s (have %s)" % (name, sorted(fams))
        assert fams["ringpush_connections"].type == "gauge"
        assert fams["ringpush_hellos"].type == "counter"
        assert fams["ringpush_storage_commit_seconds"].type == "histogram"
        assert sample(fams, "ringpush_shards", "ringpush_shards") == 2
        conns = sum(sample(fams, "ringpush_connections", "ringpush_connections", shard=str(i))
                    for i in range(2))
        assert conns >= 1, conns
        ok = sum(sample(fams, "ringpush_hellos", "ringpush_hellos_total", shard=str(i),
                        outcome="ok") for i in range(2))
        unauth = sum(sample(fams, "ringpush_hellos", "ringpush_hellos_total", shard=str(i),
                            outcome="unauthorized") for i in range(2))
        assert ok >= 1 and unauth >= 1, (ok, unauth)
        frames_in = sum(sample(fams, "ringpush_frames", "ringpush_frames_total", shard=str(i),
                               dir="in") for i in range(2))
        assert frames_in >= 2, frames_in
        # One ring per ordered pair of shards.
        depths = [s for s in fams["ringpush_xcore_ring_depth"].samples]
        assert len(depths) == 4, depths
        # Histogram buckets are cumulative and end in +Inf == _count.
        h = fams["ringpush_storage_commit_seconds"].samples
        buckets = [s for s in h if s.name.endswith("_bucket")]
        assert buckets[-1].labels["le"] == "+Inf"
        vals = [s.value for s in buckets]
        assert vals == sorted(vals), vals
        count = [s.value for s in h if s.name.endswith("_count")][0]
        assert count == vals[-1]
        c.close()
        bad.close()
        settle(srv, 2)


def test_metrics_count_entries_deliveries_and_latency():
    with AdminServer(shards=2) as srv:
        a, b1, b2 = srv.login("ann", "d1"), srv.login("ben", "d1"), srv.login("ben", "d2")
        for i in range(3):
            expect_ok(a.request("send", to="ben", cmid="m%d" % i, type="text", body="hi"))
        for c in (b1, b2):
            for _ in range(3):
                c.push("msg")
        late = rptest.Client(srv)
        expect_ok(late.hello("ben", "d3", resume=True))  # a catch-up of 3 entries
        assert [late.push("msg")["seq"] for _ in range(3)] == [1, 2, 3]
        late.push("synced")
        fams = metrics(srv)
        def total(fam, name, **labels):
            return sum(sample(fams, fam, name, shard=str(i), **labels) for i in range(2))
        assert total("ringpush_entries", "ringpush_entries_total") == 3
        # 3 entries to 2 live devices, then 3 more in the catch-up
        assert total("ringpush_deliveries", "ringpush_deliveries_total") == 9
        assert total("ringpush_push_latency_seconds", "ringpush_push_latency_seconds_count") >= 3
        assert total("ringpush_catchup_entries", "ringpush_catchup_entries_sum") >= 3
        # a handful of logins stays far below the read slots
        assert total("ringpush_login_reads_waiting", "ringpush_login_reads_waiting") == 0
        assert total("ringpush_login_reads_waited", "ringpush_login_reads_waited_total") == 0
        # entries between users with no session push nothing: no push latency
        pushes = total("ringpush_push_latency_seconds", "ringpush_push_latency_seconds_count")
        for i in range(5):
            status, resp = srv.admin("POST", "/v1/messages", body={
                "from": "zed", "to": "yul", "type": "text", "body": "x", "cmid": "o%d" % i})
            assert status == 200, (status, resp)
        fams = metrics(srv)
        assert total("ringpush_entries", "ringpush_entries_total") == 8
        assert total("ringpush_push_latency_seconds",
                     "ringpush_push_latency_seconds_count") == pushes
        for c in (a, b1, b2, late):
            c.close()
        settle(srv, 2)


def test_backup_and_restore():
    work = tempfile.mkdtemp(prefix="rptest-bk-")
    target = os.path.join(work, "snap")
    try:
        with AdminServer(shards=2) as srv:
            a = srv.login("alice", "d1")
            sent = expect_ok(a.send_message(to="bob", body="kept across restore", cmid="bk-1"))
            status, body = srv.admin("POST", "/v1/backup", body={"dir": target})
            assert status == 200, (status, body)
            assert body["dir"] == target and isinstance(body["ms"], (int, float)), body
            assert os.path.isfile(os.path.join(target, "CURRENT")), os.listdir(target)
            # The same dir again: it exists.
            status, body = srv.admin("POST", "/v1/backup", body={"dir": target})
            expect_error_body(status, body, 409, "conflict")
            # A parent that does not exist.
            status, body = srv.admin("POST", "/v1/backup",
                                     body={"dir": os.path.join(work, "no", "such")})
            expect_error_body(status, body, 400, "bad_request")
            fams = metrics(srv)
            assert sample(fams, "ringpush_backups", "ringpush_backups_total", result="ok") == 1
            # the two refused requests were no failed backups
            assert sample(fams, "ringpush_backups", "ringpush_backups_total",
                          result="failed") == 0
            a.close()
            settle(srv, 2)
        # Restore: a server started on the checkpoint directory.
        with AdminServer(shards=3, data=target) as srv2:
            assert srv2.admin("GET", "/healthz")[0] == 200
            b = srv2.login("bob", "d1")
            r = expect_ok(b.request("history", conv=sent["conv"]))
            bodies = [m["body"] for m in r["msgs"]]
            assert "kept across restore" in bodies, r
            b.close()
            settle(srv2, 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_presence_send_and_kick():
    with AdminServer(shards=2) as srv:
        a = srv.login("alice", "phone")
        status, body = srv.admin("GET", "/v1/users/alice")
        assert (status, body) == (200, {"online": True, "devices": ["phone"]}), (status, body)
        status, body = srv.admin("GET", "/v1/users/nobody")
        assert (status, body) == (200, {"online": False, "devices": []}), (status, body)
        msg = {"from": "svc", "to": "alice", "type": "text", "body": "hi", "cmid": "m1"}
        status, sent = srv.admin("POST", "/v1/messages", body=msg)
        assert status == 200 and sent["conv"] == "d:alice:svc" and sent["seq"] == 1, sent
        assert isinstance(sent["ts"], int) and "dup" not in sent, sent
        p = a.push("msg", timeout=5)
        assert (p["conv"], p["seq"], p["from"], p["body"]) == ("d:alice:svc", 1, "svc", "hi"), p
        # The same cmid again: nothing appended, the original answer with dup.
        status, again = srv.admin("POST", "/v1/messages", body=msg)
        assert status == 200 and again == dict(sent, dup=True), again
        a.no_push(0.5, op="msg")
        # A group that does not exist.
        status, body = srv.admin("POST", "/v1/messages",
                                 body={"from": "svc", "group": "nogroup", "type": "text",
                                       "body": "hi", "cmid": "m2"})
        expect_error_body(status, body, 404, "not_found")
        # Kick: bye kicked, then closed; presence follows.
        status, body = srv.admin("POST", "/v1/users/alice/kick")
        assert (status, body) == (200, {"kicked": 1}), (status, body)
        assert a.push("bye", timeout=5)["reason"] == "kicked"
        assert a.closed(5.0)
        rptest.wait_until(lambda: srv.admin("GET", "/v1/users/alice")[1].get("online") is False,
                          what="alice offline after the kick")
        status, body = srv.admin("POST", "/v1/users/alice/kick")
        assert (status, body) == (200, {"kicked": 0}), (status, body)
        settle(srv, 2)


if __name__ == "__main__":
    rptest.main()
