"""
WebSocket transport (PROTOCOL §1): the upgrade on the client port, one msgpack
map per binary message, text -> close 1003, oversize -> close 1009, pings
answered, fragmented messages and control frames between fragments, unmasked
client frames refused, many messages in one read, the handoff to the home
shard, and a WebSocket client talking to a TCP client.

The client here is written by hand on purpose: the tests need to send frames
that a well-behaved library never would.
"""

import base64
import hashlib
import os
import socket
import struct
import time

import msgpack

import rptest
from rptest import Client, Server

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode, payload, fin=True, mask=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WS:
    def __init__(self, srv, path="/ws", timeout=5.0, headers=None, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", srv.port))
        self.buf = b""
        self.key = base64.b64encode(os.urandom(16)).decode()
        hdrs = headers if headers is not None else {
            "Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": self.key, "Sec-WebSocket-Version": "13"}
        req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in hdrs.items())
        self.sock.sendall((req + "\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status_line = head.split(b"\r\n")[0].decode()
        self.headers = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.next_id = 1

    @property
    def status(self):
        return int(self.status_line.split()[1])

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(ws_frame(2, msgpack.packb(obj, use_bin_type=True)))

    def request(self, op, **fields):
        rid = self.next_id
        self.next_id += 1
        self.send(dict(op=op, id=rid, **fields))
        while True:
            m = self.recv()
            if m.get("id") == rid:
                return m

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise rptest.ConnectionClosed()
            self.buf += d

    def frame(self):
        """The next frame: (opcode, fin, payload)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "server frames must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def recv(self):
        op, fin, payload = self.frame()
        assert op == 2 and fin, "expected one binary message, got opcode %d" % op
        return msgpack.unpackb(payload, raw=False)

    def close_code(self):
        """Read until a close frame; return its status code."""
        while True:
            op, _, payload = self.frame()
            if op == 8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None

    def hello(self, srv, user, device="w1", resume=False):
        return self.request("hello", token=srv.token(user), device=device, resume=resume)


def test_upgrade_and_hello():
    with Server(shards=2) as srv:
        ws = WS(srv)
        assert ws.status == 101, ws.status_line
        want = base64.b64encode(hashlib.sha1(ws.key.encode() + GUID).digest()).decode()
        assert ws.headers["sec-websocket-accept"] == want
        assert ws.request("ping")["op"] == "pong"
        for user in ["ana", "ben", "cai", "dov"]:
            w = WS(srv)
            r = w.hello(srv, user)
            assert r["op"] == "ok" and r["user"] == user, r
            assert w.request("ping")["op"] == "pong"


def test_other_gets_are_refused():
    with Server(shards=1) as srv:
        assert WS(srv, path="/other").status == 404
        assert WS(srv, headers={"Host": "x"}).status == 400
        bad = {"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": "short", "Sec-WebSocket-Version": "13"}
        assert WS(srv, headers=bad).status == 400
        # the server keeps serving
        Client(srv).ping()


def _too_large_then_close(srv, pieces):
    c = Client(srv)
    for p in pieces:
        c.send_raw(p)
        time.sleep(0.05)
    f = c.recv(3)
    rptest.expect_error(f, "too_large")
    assert "id" not in f, f
    assert c.closed(3), "connection stays open"


def test_first_four_bytes_decide_the_transport():
    # PROTOCOL §1: only "GET " as the first four bytes is HTTP; any other
    # first bytes are a length prefix (here far over max_frame).
    with Server(shards=1, args=["--hello-timeout", "30"]) as srv:
        for first in (b"G\x00\x00\x01", b"GEX\x00", b"Ge\x00\x00", b"GET\x00", b"POST /ws "):
            _too_large_then_close(srv, [first + b"\x00" * 8])
        # the first bytes arriving one at a time, or a few at a time
        _too_large_then_close(srv, [b"G", b"E", b"T", b"!", b"\x00" * 8])
        _too_large_then_close(srv, [b"GE", b"t /ws"])
        _too_large_then_close(srv, [b"G", b"\x00\x00\x01"])
        # a real upgrade whose "GET " comes in pieces is still HTTP
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
        for piece in (req[:1], req[1:3], req[3:4], req[4:]):
            s.sendall(piece)
            time.sleep(0.05)
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(4096)
            assert d, head
            head += d
        assert head.startswith(b"HTTP/1.1 101 "), head
        s.close()


def test_text_message_closes_1003():
    with Server(shards=1) as srv:
        ws = WS(srv)
        ws.send_raw(ws_frame(1, b"hello"))
        assert ws.close_code() == 1003


def test_oversize_closes_1009():
    with Server(shards=1, args=["--max-frame", "8192"]) as srv:
        ws = WS(srv)
        ws.send_raw(ws_frame(2, b"\x80" * 9000))
        assert ws.close_code() == 1009


def test_unmasked_client_frame_refused():
    with Server(shards=1) as srv:
        ws = WS(srv)
        ws.send_raw(ws_frame(2, msgpack.packb({"op": "ping", "id": 1}), mask=False))
        assert ws.close_code() == 1002


def test_protocol_errors_close_1002():
    # RFC 6455 §7.4.1: a frame that breaks the framing rules is answered
    # with close 1002 (protocol error), not a close without a status.
    bad = {
        "ping over 125 bytes": ws_frame(9, b"x" * 126),
        "fragmented ping": ws_frame(9, b"x", fin=False),
        "length 2^63": bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 2 ** 63) + b"\0" * 4,
        "16-bit length under 126": bytes([0x82, 0x80 | 126]) + struct.pack(">H", 5) +
        b"\0" * 4 + b"\x81\xa0\xa0\x80\x80",
        "close with a 1-byte body": ws_frame(8, b"\x03"),
        "reserved opcode": ws_frame(3, b"x"),
    }
    with Server(shards=1) as srv:
        for name, data in bad.items():
            ws = WS(srv)
            ws.send_raw(data)
            assert ws.close_code() == 1002, name
        # also after a message answered in the same read
        ws = WS(srv)
        ws.send_raw(ws_frame(2, msgpack.packb({"op": "ping", "id": 4})) + ws_frame(9, b"x" * 126))
        assert ws.recv() == {"op": "pong", "id": 4}
        assert ws.close_code() == 1002
        # an empty close is echoed empty (no status to give back), as before
        ws = WS(srv)
        ws.send_raw(ws_frame(8, b""))
        assert ws.close_code() is None
        Client(srv).ping()


def test_no_subprotocol_is_selected():
    # PROTOCOL names no subprotocol: one offered is not echoed (RFC 6455
    # §4.2.2: the server selects none), the upgrade still succeeds.
    with Server(shards=1) as srv:
        key = base64.b64encode(os.urandom(16)).decode()
        ws = WS(srv, headers={"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade",
                              "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
                              "Sec-WebSocket-Protocol": "ringpush.v1, chat"})
        assert ws.status == 101, ws.status_line
        assert "sec-websocket-protocol" not in ws.headers, ws.headers
        assert ws.request("ping")["op"] == "pong"


def test_ping_and_fragments_with_control_frames_between():
    with Server(shards=1) as srv:
        ws = WS(srv)
        ws.send_raw(ws_frame(9, b"are you there"))
        op, fin, payload = ws.frame()
        assert op == 10 and payload == b"are you there"
        msg = msgpack.packb({"op": "ping", "id": 7})
        ws.send_raw(ws_frame(2, msg[:3], fin=False) + ws_frame(9, b"mid") +
                    ws_frame(0, msg[3:5], fin=False) + ws_frame(0, msg[5:], fin=True))
        op, _, payload = ws.frame()
        assert op == 10 and payload == b"mid"
        assert ws.recv() == {"op": "pong", "id": 7}


def test_many_messages_in_one_write_and_byte_by_byte():
    with Server(shards=2) as srv:
        ws = WS(srv)
        data = ws_frame(2, msgpack.packb({"op": "hello", "id": 1, "token": srv.token("eva"),
                                          "device": "w1", "resume": False}))
        data += b"".join(ws_frame(2, msgpack.packb({"op": "ping", "id": i})) for i in range(2, 60))
        ws.send_raw(data)
        assert ws.recv()["op"] == "ok"
        for i in range(2, 60):
            assert ws.recv() == {"op": "pong", "id": i}
        ws2 = WS(srv)
        for b in ws_frame(2, msgpack.packb({"op": "ping", "id": 99})):
            ws2.send_raw(bytes([b]))
        assert ws2.recv() == {"op": "pong", "id": 99}


def test_bad_frame_inside_websocket():
    with Server(shards=1) as srv:
        ws = WS(srv)
        ws.send_raw(ws_frame(2, b"\xdd\x97\x00\x00\x00"))
        m = ws.recv()
        assert m["op"] == "error" and m["code"] == "bad_frame", m


def test_abrupt_close_keeps_server_up():
    with Server(shards=2) as srv:
        for _ in range(20):
            ws = WS(srv)
            ws.send_raw(ws_frame(2, msgpack.packb({"op": "ping", "id": 1}))[:5])
            ws.sock.close()
        ws = WS(srv)
        assert ws.hello(srv, "fay")["op"] == "ok"


def test_websocket_pings_keep_a_session_alive():
    # A WebSocket ping is a complete frame from the client: activity, so the
    # idle timeout does not close a connection that only pings at that level.
    with Server(shards=1, args=["--heartbeat", "1", "--idle-timeout", "2"]) as srv:
        ws = WS(srv)
        assert ws.hello(srv, "hal")["op"] == "ok"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            ws.send_raw(ws_frame(9, b"k"))
            op, _, payload = ws.frame()
            assert op == 10 and payload == b"k", (op, payload)
            time.sleep(0.5)
        assert ws.request("ping")["op"] == "pong"


def test_pings_of_a_client_that_does_not_read_are_bounded():
    # Pongs count against outbound_limit like every frame: a client that
    # pings and never reads gets bye slow and the close, not an ever-growing
    # queue of pongs.
    limit = 64 * 1024
    with Server(shards=1, args=["--outbound-limit", str(limit)]) as srv:
        ws = WS(srv, rcvbuf=4096, timeout=5.0)
        assert ws.hello(srv, "ida")["op"] == "ok"
        pings = ws_frame(9, b"p" * 125) * 512
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                ws.send_raw(pings)
                sent += len(pings)
        except (ConnectionError, socket.timeout):
            pass  # closed, or no longer read: the server gave up on it
        # without the bound the server reads pings as fast as they come
        assert sent < 32 * 1024 * 1024, sent
        # and the connection ends: a close frame, the end of the stream, or
        # a reset (the server closed with pings unread), never a timeout
        ws.sock.settimeout(60.0)
        try:
            while ws.frame()[0] != 8:
                pass
        except (rptest.ConnectionClosed, ConnectionError):
            pass
        other = WS(srv)
        assert other.hello(srv, "jon")["op"] == "ok"
        assert other.request("ping")["op"] == "pong"


def test_shutdown_sends_bye_then_close():
    srv = Server(shards=2)
    srv.start()
    try:
        ws = WS(srv)
        ws.hello(srv, "gus")
        srv.send_signal(15)
        m = ws.recv()
        assert m == {"op": "bye", "reason": "shutdown"}, m
        assert ws.close_code() in (1000, 1001)
        assert srv.stop() == 0
    finally:
        srv.cleanup()


def handoffs_out(srv):
    status, text = srv.admin("GET", "/metrics")
    assert status == 200, status
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('ringpush_handoffs_total{') and 'dir="out"' in line)


def test_requests_right_behind_the_hello_survive_the_handoff():
    """A client that writes its hello and 240 KB of sends in one go, over
    TCP and WebSocket, on a shard that is not its user's home: all of it
    goes over to the home shard and every request is answered, as when the
    home shard accepted it (also with receive buffers of 1 MiB, where one
    read takes everything)."""
    for args in ([], ["--recv-buffer-size", "1048576", "--recv-buffers", "16"]):
        with Server(shards=2, args=args) as srv:
            handed = {"tcp": 0, "ws": 0}
            for t in range(80):  # until both went over twice (about half of them do)
                if min(handed.values()) >= 2:
                    break
                user = "lo%d" % t
                msgs = [dict(op="hello", id=1, token=srv.token(user), device="d", resume=False)]
                msgs += [dict(op="send", id=100 + i, to="peer", cmid="m%d" % i, type="text",
                              body="x" * 30000) for i in range(8)]
                before = handoffs_out(srv)
                if t % 2:
                    c = WS(srv, timeout=10)
                    c.send_raw(b"".join(ws_frame(2, msgpack.packb(m, use_bin_type=True))
                                        for m in msgs))
                else:
                    c = Client(srv, timeout=10)
                    c.send_raw(b"".join(rptest.frame(m) for m in msgs))
                got = {}
                while len(got) < len(msgs):
                    m = c.recv()
                    if "id" in m:
                        got[m["id"]] = m["op"]
                assert set(got.values()) == {"ok"}, (args, t, got)
                c.sock.close()
                handed["ws" if t % 2 else "tcp"] += handoffs_out(srv) - before > 0
            assert min(handed.values()) >= 2, ("too few handoffs: nothing tested", handed)


def test_pipelined_queries_wait_in_order():
    """Over WebSocket too, a session's queries past 8 in flight hold the
    connection's later messages in order: 300 history pages and a sync in
    one write, every one answered, the sync among the last 8."""
    with Server(shards=2, args=["--rate-limit", "100000", "--rate-burst", "100000"]) as srv:
        c = srv.login("qa", "d", resume=False)
        for i in range(20):
            assert c.send_message(to="qb", body="m%d" % i)["op"] == "ok"
        c.close()
        ws = WS(srv)
        assert ws.hello(srv, "qa", device="w")["op"] == "ok"
        msgs = b"".join(ws_frame(2, msgpack.packb({"op": "history", "id": 100 + k,
                                                   "conv": "d:qa:qb", "limit": 50}))
                        for k in range(300))
        ws.send_raw(msgs + ws_frame(2, msgpack.packb({"op": "sync", "id": 99})))
        ids = []
        while len(ids) < 301:
            m = ws.recv()
            if "id" in m:
                assert m["op"] == "ok", m
                ids.append(m["id"])
        assert sorted(ids) == [99] + list(range(100, 400))
        assert ids.index(99) >= 300 - 8, ids.index(99)


if __name__ == "__main__":
    rptest.main()
