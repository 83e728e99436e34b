"""
Live delivery under churn (PROTOCOL §4, §5): every acknowledged message
reaches every online device of its recipients.

Senders stay logged in; each sends, in turn, a direct message to its
recipient and a message to a group it shares with two recipients. The
recipients' devices come and go all the time (one or two devices, resume true
or false, often the user's only session, so its state is dropped and read
again), while other connections log in and out at once and random-bytes
connections come and go.

A device counts as online for a message when its hello `ok` had been received
before the send was written: then the entry became durable after the device's
session existed, and PROTOCOL §5 says it is pushed to it. Before closing a
device, the script waits (at most MISS_S seconds) for every such message
acknowledged by then; one that does not come is a miss, printed with its
conv, seq, user, device and timing.

Usage (by hand, or through ctest at a small size):
    PYTHONPATH=tests/lib RINGPUSHD=build/rel/engine/ringpushd \\
        python3 tests/reliability/stress_delivery.py [seconds] [pairs] [shards]
Exit 0 when nothing was missed, 1 otherwise.
"""

import asyncio
import os
import random
import struct
import sys
import time

import msgpack

import rptest
from rptest import Server

MISS_S = 5.0  # a push later than this after its ack is a miss (a loaded ASan build is slow)


def frame(obj):
    b = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(b)) + b


class Conn:
    """One asyncio client: replies by id, pushes to a list with arrival times."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.next_id = 1
        self.waiters = {}
        self.msgs = {}  # (conv, seq) -> arrival time
        self.closed = False
        self.bye = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            while True:
                hdr = await self.r.readexactly(4)
                (n,) = struct.unpack(">I", hdr)
                m = msgpack.unpackb(await self.r.readexactly(n), raw=False)
                op = m.get("op")
                if "id" in m and op in ("ok", "error", "pong") and m["id"] in self.waiters:
                    self.waiters.pop(m["id"]).set_result(m)
                elif op == "msg":
                    self.msgs[(m["conv"], m["seq"])] = time.monotonic()
                elif op == "bye":
                    self.bye = m.get("reason")
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            for f in self.waiters.values():
                if not f.done():
                    f.set_result({"op": "closed"})
            self.waiters.clear()

    async def request(self, op, timeout=30.0, **fields):
        rid = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        msg = {"op": op, "id": rid}
        msg.update(fields)
        try:
            self.w.write(frame(msg))
        except (ConnectionError, OSError):
            return {"op": "closed"}
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return {"op": "timeout"}

    def close(self):
        self.task.cancel()
        try:
            self.w.close()
        except OSError:
            pass


async def connect(srv, user, device, resume):
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    c = Conn(reader, writer)
    r = await c.request("hello", token=srv.token(user), device=device, resume=resume)
    if r.get("op") != "ok":
        c.close()
        raise RuntimeError("hello %s/%s: %r" % (user, device, r))
    return c


class Stress:
    def __init__(self, srv, pairs, seconds, seed):
        self.srv = srv
        self.pairs = pairs
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.sent = []  # (conv, seq, from, recipients, t_issue, t_ack)
        self.sessions = {}  # user -> list of live device records
        self.misses = []
        self.checked = 0
        self.stop_at = 0.0
        self.errors = []

    def recipients(self, k):
        return ["r%d" % k, "r%d" % ((k + 1) % self.pairs)]

    async def setup(self):
        self.senders, self.pokers = [], []
        self.npoke = 0
        for k in range(self.pairs):
            s = await connect(self.srv, "s%d" % k, "d", False)
            r = await s.request("group.create", name="g%d" % k, group="g%d" % k,
                                members=self.recipients(k))
            assert r.get("op") == "ok", r
            self.senders.append(s)
            self.pokers.append(await connect(self.srv, "p%d" % k, "d", False))

    async def sender(self, k):
        s = self.senders[k]
        n = 0
        while time.monotonic() < self.stop_at:
            n += 1
            t_issue = time.monotonic()
            if n % 2:
                who = ["r%d" % k]
                r = await s.request("send", to=who[0], cmid="m%d-%d" % (k, n), type="text",
                                    body="dm %d" % n)
            else:
                who = self.recipients(k)
                r = await s.request("send", group="g%d" % k, cmid="m%d-%d" % (k, n),
                                    type="text", body="grp %d" % n)
            if r.get("op") != "ok":
                if r.get("code") in ("unavailable", "rate_limited"):
                    await asyncio.sleep(0.05)
                    continue
                self.errors.append("send %d/%d: %r" % (k, n, r))
                return
            self.sent.append((r["conv"], r["seq"], who, t_issue, time.monotonic()))
            await asyncio.sleep(self.rng.uniform(0.0, 0.02))

    async def poke(self, user):
        k = int(user[1:])
        p = self.pokers[k]
        self.npoke += 1
        t_issue = time.monotonic()
        r = await p.request("send", to=user, cmid="p%d-%d" % (k, self.npoke), type="text",
                            body="poke")
        if r.get("op") == "ok":
            self.sent.append((r["conv"], r["seq"], [user], t_issue, time.monotonic()))
        elif r.get("code") not in ("unavailable", "rate_limited"):
            self.errors.append("poke %s: %r" % (user, r))

    async def device_life(self, user, device):
        """Log in, stay a while, check what was owed, close; again and again."""
        while time.monotonic() < self.stop_at:
            resume = self.rng.random() < 0.5
            try:
                c = await connect(self.srv, user, device, resume)
            except (RuntimeError, OSError) as e:
                self.errors.append("login %s/%s: %s" % (user, device, e))
                return
            t_ok = time.monotonic()
            if self.rng.random() < 0.5:
                # a message right after the hello ok, as a peer that sees the
                # device come online would send one
                await self.poke(user)
            await asyncio.sleep(self.rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 0.5]))
            t_check = time.monotonic()
            owed = [(conv, seq, t_issue, t_ack) for conv, seq, who, t_issue, t_ack in self.sent
                    if user in who and t_issue > t_ok and t_ack <= t_check]
            deadline = t_check + MISS_S
            while (any((conv, seq) not in c.msgs for conv, seq, _, _ in owed)
                   and time.monotonic() < deadline and not c.closed):
                await asyncio.sleep(0.02)
            if c.closed:
                # replaced or closed by the server: not expected here
                self.errors.append("%s/%s closed by the server (bye %r)" % (user, device, c.bye))
            else:
                for conv, seq, t_issue, t_ack in owed:
                    self.checked += 1
                    if (conv, seq) not in c.msgs:
                        self.misses.append(
                            "MISS conv=%s seq=%d user=%s dev=%s resume=%s: hello ok at %.3f, "
                            "send issued %+.3f, acked %+.3f, checked until %+.3f"
                            % (conv, seq, user, device, resume, t_ok, t_issue - t_ok,
                               t_ack - t_ok, deadline - t_ok))
            c.close()
            await asyncio.sleep(self.rng.choice([0.0, 0.0, 0.001, 0.01]))

    async def churn(self):
        """Logins that end at once, and random bytes, after a hello or not."""
        i = 0
        while time.monotonic() < self.stop_at:
            i += 1
            try:
                reader, writer = await asyncio.open_connection(self.srv.host, self.srv.port)
                if i % 2:
                    writer.write(frame({"op": "hello", "id": 1, "token": self.srv.token("x%d" % (i % 50)),
                                        "device": "d", "resume": i % 4 == 1}))
                if i % 3:
                    writer.write(bytes(self.rng.getrandbits(8)
                                       for _ in range(self.rng.randint(1, 300))))
                await asyncio.sleep(self.rng.choice([0.0, 0.001, 0.01]))
                writer.close()
            except (ConnectionError, OSError):
                pass
            await asyncio.sleep(0.002)

    async def run(self):
        await self.setup()
        self.stop_at = time.monotonic() + self.seconds
        tasks = [self.sender(k) for k in range(self.pairs)]
        for k in range(self.pairs):
            tasks.append(self.device_life("r%d" % k, "a"))
            if k % 2 == 0:
                tasks.append(self.device_life("r%d" % k, "b"))
        tasks += [self.churn(), self.churn()]
        await asyncio.gather(*tasks)
        for s in self.senders + self.pokers:
            s.close()


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    shards = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    seed = int(os.environ.get("RP_SEED", "1"))
    with Server(shards=shards, args=["--hello-timeout", "2"]) as srv:
        st = Stress(srv, pairs, seconds, seed)
        asyncio.run(st.run())
        for m in st.misses[:40]:
            print(m)
        for e in st.errors[:20]:
            print("ERROR", e)
        print("sent %d, checked %d deliveries, %d missed, %d errors"
              % (len(st.sent), st.checked, len(st.misses), len(st.errors)))
        ok = not st.misses and not st.errors and st.checked > 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    except rptest.Skip as e:
        print("skip:", e)
        sys.exit(77)
