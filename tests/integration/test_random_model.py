"""
Randomized, model-based test of the chat layer (PROTOCOL.md §4-§6) against a
live ringpushd with 2 shards.

A seeded RNG drives 6-10 users (some with two devices, plus one who never
connects) through direct and group sends; retries of an accepted cmid (from the
same device, the sender's other device, the admin API, and after a reply lost
with the connection); bursts in which several devices pipeline sends, in-flight
duplicates and a group change at once; group create / invite / kick / leave /
open and join / dismiss; recalls, reads, acks, history, sync and the group
queries; refused requests; devices going offline (cleanly or abruptly) and
coming back with resume (sometimes while the others go on, sometimes without
resume), replaced sessions, admin kicks, and server restarts by SIGTERM and
SIGKILL. A small model of what the contract promises checks every observation:

- every msg push is an entry of the model's log, byte for byte (body and its
  msgpack type), of a conversation the device's user may see at that seq (a
  group member from the event that added it to the event that removed it,
  inclusive), never the sending device's own entry;
- per session and conversation the seqs strictly increase and leave no hole:
  a session gets exactly the entries after the device's ack cursor (the
  newest catchup_limit of them in the catch-up, before synced), then every new
  one; nothing at or below a confirmed ack cursor comes again;
- a retried cmid answers the original conv / seq / ts with dup and appends
  nothing (a push of it would be an entry beyond the log); of one cmid sent
  several times at once exactly one is the original; the seqs of a burst are
  gapless and an accepted group send is from a member at its seq;
- history pages equal the model's log from the reader's joined_seq; sync lists
  exactly the user's conversations with last_seq, last_ts, read_seq, ack_seq
  and unread; group.members / info / list match; read pushes reach the other
  devices (and the direct peer) when the read cursor moves; refused requests
  change nothing;
- at the end every device resumes, fills its gaps with history and holds every
  entry it may read; acked and confirmed, a last resume pushes nothing again.

Where the contract leaves a point open the test accepts what a careful server
may do: a member's read cursor may start at joined_seq - 1; acks sent right
before an abrupt close, and cursors not yet written at a SIGKILL, may be lost
(redelivery, never a hole).

The operation sequence is a function of the seed and RP_ITERS (how races in a
burst go may differ, the operations do not). Environment:
  RP_SEED    a seed (default: the seeds 1, 2 and 3 in turn; "random": a fresh one)
  RP_RUNS    run this many consecutive seeds from RP_SEED
  RP_ITERS   operations per seed (default 2000)
  RP_VERBOSE print every operation
  RP_SPAN_LIMIT  apply catchup_limit per membership span of a group instead of per
             conversation: the server pushes up to catchup_limit entries for every
             span of a member removed and invited back while offline, which the
             contract's "at most catchup_limit per conversation, the newest" does
             not allow; set it to look past that known deviation.
A failure prints the seed and the last operations.
"""

import collections
import itertools
import os
import random
import select
import signal
import struct
import time

import msgpack

import rptest
from rptest import Server

_SEED = os.environ.get("RP_SEED", "")
if _SEED == "random":
    SEEDS = [random.SystemRandom().randrange(1, 2 ** 31)]
elif _SEED:
    SEEDS = [int(_SEED)]
else:
    SEEDS = [1, 2, 3]
if os.environ.get("RP_RUNS"):
    SEEDS = [SEEDS[0] + i for i in range(int(os.environ["RP_RUNS"]))]
ITERS = int(os.environ.get("RP_ITERS") or 2000)
VERBOSE = bool(os.environ.get("RP_VERBOSE"))
SPAN_LIMIT = bool(os.environ.get("RP_SPAN_LIMIT"))
TIMEOUT = 15.0
MAX_FRAME = 65536
MAX_BODY = 32768

USER_POOL = ["amy", "Bob", "carl.x", "dee@home", "Eve-2", "fay_", "gus", "Hal", "ivy", "jo-9",
             "Kai", "lu"]
GHOST = "zz-ghost"  # named in messages and groups, never connects
DEVICE_NAMES = ["ph", "lap.2"]
TYPES = ["text", "image", "file", "voice", "video", "custom", "x-app.v1"]
MAX_REMOVALS = 3  # per (user, group): the server keeps up to 4 removal spans per group


class Bug(AssertionError):
    pass


def check(cond, msg, *args):
    if not cond:
        raise Bug(msg % args if args else msg)


def dconv(a, b):
    x, y = sorted([a, b], key=lambda s: s.encode())
    return "d:%s:%s" % (x, y)


def count_le(seqs, bound):
    """How many of the ascending seqs are <= bound."""
    n = 0
    for s in seqs:
        if s > bound:
            break
        n += 1
    return n


# ---------------------------------------------------------------------------
# The model


_births = itertools.count()


class Entry:
    def __init__(self, conv, seq, kind, frm, devs=None, cmid=None, typ=None, body=None,
                 ts=None, data=None, target=None, birth=None):
        self.conv, self.seq, self.kind, self.frm = conv, seq, kind, frm
        # creation order of the operations: the same for a seed, unlike the seqs of sends
        # that race in a burst
        self.birth = next(_births) if birth is None else birth
        self.devs = set(devs or ())  # acceptable "dev" values (two while a lost send is open)
        self.cmid, self.type, self.body, self.ts = cmid, typ, body, ts
        self.data, self.target = data, target
        self.recall_ix = None  # op index of the recall of this entry
        self.racy = False  # accepted or refused depending on a race (not to be picked later)

    def __repr__(self):
        return "<%s %s#%d %s from %s>" % (self.kind, self.conv, self.seq, self.type, self.frm)


class Conv:
    def __init__(self, cid, group=None, pair=None):
        self.id, self.group, self.pair = cid, group, pair
        self.entries = []

    @property
    def last(self):
        return len(self.entries)


class Group:
    def __init__(self, gid, owner):
        self.gid, self.conv, self.owner = gid, "g:" + gid, owner
        self.members = {}  # user -> joined_seq
        self.spans = collections.defaultdict(list)  # user -> closed [(joined, removed)]
        self.removals = collections.Counter()
        self.dismissed = False
        self.open = False


class Device:
    def __init__(self, user, name):
        self.user, self.name = user, name
        self.sess = None
        self.nsessions = 0
        self.store = collections.defaultdict(set)  # conv -> seqs held (by push, reply, history)
        self.ack_lo = collections.Counter()  # ack cursor the server is known to hold
        self.ack_hi = collections.Counter()  # highest ack sent
        self.ack_sure = collections.Counter()  # highest ack sent while a member
        self.ack_log = collections.defaultdict(list)  # conv -> [(op, session, seq)], for reports

    def __repr__(self):
        return "%s/%s" % (self.user, self.name)


class Session:
    def __init__(self, world, dev, conn):
        self.dev, self.conn = dev, conn
        dev.nsessions += 1
        self.no = dev.nsessions
        self.hello_ix = world.opix
        self.n_hello = {cid: c.last for cid, c in world.convs.items()}
        self.concurrent = False
        self.n_synced = None
        self.synced = False
        self.catch = collections.defaultdict(list)
        self.live = collections.defaultdict(list)
        self.lastseq = {}
        self.own = collections.defaultdict(set)  # entries this session made: never pushed to it
        self.optional = collections.defaultdict(set)  # entries it may or may not get
        self.lo = collections.Counter(dev.ack_lo)
        self.hi = collections.Counter(dev.ack_hi)
        self.reads_req = []  # (conv, user, seq) read pushes that must come
        self.reads_opt = set()  # (conv, user, seq) read pushes that may come
        self.eof = False
        self.acked = set()  # conversations this session sent acks for
        self.expect_bye = None  # the reason of a bye this session may get
        self.bye = None

    def __repr__(self):
        return "%s/%s#%d" % (self.dev.user, self.dev.name, self.no)


class World:
    def __init__(self, srv, rng, catchup_limit):
        self.srv, self.rng, self.L = srv, rng, catchup_limit
        self.opix = 0
        self.convs = {}
        self.groups = []
        self.gmap = {}
        # (user, conv) -> the read cursor: at most read, at least read_lo (they differ only
        # after a crash, which may lose cursor moves not yet written)
        self.read = collections.Counter()
        self.read_lo = collections.Counter()
        self.last_restart = 0
        self.sends = []  # accepted sends, for retries
        self.cmid_no = 0
        self.log = collections.deque(maxlen=60)
        self.stats = collections.Counter()
        n = rng.randint(6, 10)
        self.users = rng.sample(USER_POOL, n)
        self.devices = []
        for i, u in enumerate(self.users):
            ndev = 2 if (i < 2 or rng.random() < 0.35) else 1
            for d in DEVICE_NAMES[:ndev]:
                self.devices.append(Device(u, d))

    # -- model queries

    def note(self, text):
        line = "op %d: %s" % (self.opix, text)
        self.log.append(line)
        if VERBOSE:
            print(line, flush=True)

    def sessions(self):
        return [d.sess for d in self.devices if d.sess is not None]

    def online(self, user=None):
        return [d for d in self.devices if d.sess is not None and (user is None or d.user == user)]

    def direct(self, a, b):
        cid = dconv(a, b)
        if cid not in self.convs:
            x, y = cid[2:].split(":")
            self.convs[cid] = Conv(cid, pair=(x, y))
        return self.convs[cid]

    def entitled(self, user, conv, seq):
        if conv.group is None:
            return user in conv.pair
        g = conv.group
        for j, r in g.spans.get(user, ()):
            if j <= seq <= r:
                return True
        j = g.members.get(user)
        return j is not None and seq >= j

    def ever_entitled(self, user, conv):
        if conv.group is None:
            return user in conv.pair
        return user in conv.group.members or bool(conv.group.spans.get(user))

    def readable_start(self, user, conv):
        """First seq user may read with history now, None if not a member."""
        if conv.group is None:
            return 1 if user in conv.pair else None
        if conv.group.dismissed:
            return None
        return conv.group.members.get(user)

    def current_convs(self, user):
        """The conversations sync must list for user."""
        out = []
        for cid, conv in self.convs.items():
            if conv.last == 0:
                continue
            if conv.group is None:
                if user in conv.pair:
                    out.append(cid)
            elif not conv.group.dismissed and user in conv.group.members:
                out.append(cid)
        return out

    def visible(self, sess, conv):
        u = sess.dev.user
        own, opt = sess.own[conv.id], sess.optional[conv.id]
        return [s for s in range(1, conv.last + 1)
                if s not in own and s not in opt and self.entitled(u, conv, s)]

    def sent_read(self, user, cid, seq):
        """Sending implies reading."""
        key = (user, cid)
        self.read[key] = max(self.read[key], seq)
        self.read_lo[key] = max(self.read_lo[key], seq)

    def own_read(self, user, cid, seq):
        """A group event or recall a user causes may count as read by them, as a send does
        (the contract says so of sends only; ringpush does it for these too)."""
        key = (user, cid)
        self.read[key] = max(self.read[key], seq)

    def append(self, conv, entry):
        check(entry.seq == conv.last + 1, "model: appending %r after %d", entry, conv.last)
        conv.entries.append(entry)

    # -- checking one msg map against the model

    def check_entry(self, p, where, must_recalled, may_recalled):
        conv = self.convs[p["conv"]]
        e = conv.entries[p["seq"] - 1]
        check(p.get("op") == "msg", "%s: not a msg map: %r", where, p)
        check(p.get("from") == e.frm, "%s: %s seq %d from %r, model says %r (%r)",
              where, e.conv, e.seq, p.get("from"), e.frm, p)
        ts = p.get("ts")
        check(isinstance(ts, int) and not isinstance(ts, bool), "%s: bad ts in %r", where, p)
        if e.ts is None:
            e.ts = ts
        check(ts == e.ts, "%s: %s seq %d has ts %r, earlier %r", where, e.conv, e.seq, ts, e.ts)
        if e.kind == "event":
            check(p.get("type") == "event", "%s: %s seq %d should be an event: %r",
                  where, e.conv, e.seq, p)
            d = p.get("data")
            check(isinstance(d, dict), "%s: event without data: %r", where, p)
            want = e.data
            check(d.get("kind") == want["kind"] and d.get("by") == want["by"],
                  "%s: event %s seq %d: data %r, model %r", where, e.conv, e.seq, d, want)
            if "users" in want:
                users, cnt = d.get("users"), d.get("count")
                check(isinstance(users, list) and len(users) <= 20 and cnt == len(want["users"])
                      and set(users) <= want["users"] and len(set(users)) == len(users)
                      and (cnt > 20 or set(users) == want["users"]),
                      "%s: event %s seq %d: users %r count %r, model %r", where, e.conv, e.seq,
                      users, cnt, sorted(want["users"]))
            for k in ("name", "open"):
                if k in want:
                    check(d.get(k) == want[k], "%s: event %s seq %d: %s=%r, model %r",
                          where, e.conv, e.seq, k, d.get(k), want[k])
        elif e.kind == "recall":
            check(p.get("type") == "recall" and p.get("target") == e.target,
                  "%s: %s seq %d should recall %d: %r", where, e.conv, e.seq, e.target, p)
        else:
            if p.get("type") == "recalled":
                check(may_recalled, "%s: %s seq %d reads as recalled but was never recalled: %r",
                      where, e.conv, e.seq, p)
                check(isinstance(p.get("body"), (str, bytes)) and len(p["body"]) == 0,
                      "%s: recalled entry with a body: %r", where, p)
            else:
                check(not must_recalled, "%s: %s seq %d was recalled before, still reads as %r",
                      where, e.conv, e.seq, p)
                check(p.get("type") == e.type, "%s: %s seq %d type %r, sent %r",
                      where, e.conv, e.seq, p.get("type"), e.type)
                body = p.get("body")
                check(type(body) is type(e.body) and body == e.body,
                      "%s: %s seq %d body differs from what was sent (%s %d bytes, sent %s %d)",
                      where, e.conv, e.seq, type(body).__name__,
                      len(body) if isinstance(body, (str, bytes)) else -1,
                      type(e.body).__name__, len(e.body))
            check(p.get("cmid") == e.cmid, "%s: %s seq %d cmid %r, sent %r",
                  where, e.conv, e.seq, p.get("cmid"), e.cmid)
            check(p.get("dev") in e.devs, "%s: %s seq %d dev %r, expected one of %r",
                  where, e.conv, e.seq, p.get("dev"), sorted(e.devs))
            e.devs = {p["dev"]}

    # -- frames

    def on_frame(self, sess, f):
        op = f.get("op")
        check(sess.bye is None, "%r: %r after bye", sess, f)
        if op == "pong":
            return
        if "id" in f:
            sess.conn.replies[f["id"]] = f
            return
        if op == "bye":
            check(f.get("reason") == sess.expect_bye and sess.expect_bye,
                  "%r: unexpected %r (expected a bye %r)", sess, f, sess.expect_bye)
            sess.bye = f["reason"]
            return
        if op == "msg":
            self.on_msg(sess, f)
        elif op == "synced":
            check(not sess.synced, "%r: a second synced", sess)
            sess.synced = True
            sess.n_synced = {cid: c.last for cid, c in self.convs.items()}
        elif op == "read":
            key = (f.get("conv"), f.get("user"), f.get("seq"))
            self.stats["read pushes"] += 1
            if key in sess.reads_req:
                sess.reads_req.remove(key)
            else:
                check(key in sess.reads_opt, "%r: unexpected read push %r (expected %r)",
                      sess, f, sess.reads_req)
        else:
            check(op not in ("error", "bye", "friend"), "%r: unexpected push %r", sess, f)

    def on_msg(self, sess, p):
        where = "%r %s" % (sess, "live" if sess.synced else "catch-up")
        cid, seq = p.get("conv"), p.get("seq")
        conv = self.convs.get(cid)
        check(conv is not None, "%s: push for a conversation the model has no entry in: %r",
              where, p)
        check(isinstance(seq, int) and 1 <= seq <= conv.last,
              "%s: push of %s seq %r beyond the log (last %d): %r", where, cid, seq, conv.last, p)
        u = sess.dev.user
        check(self.entitled(u, conv, seq),
              "%s: push of %s seq %d, which %s may not see (joined %r, spans %r)", where, cid, seq,
              u, conv.group.members.get(u) if conv.group else None,
              conv.group.spans.get(u) if conv.group else None)
        check(seq not in sess.own[cid], "%s: its own entry %s seq %d pushed back to it",
              where, cid, seq)
        prev = sess.lastseq.get(cid, 0)
        check(seq > prev, "%s: %s seq %d pushed after seq %d in the same session (%s)",
              where, cid, seq, prev, "twice" if seq in sess.catch[cid] + sess.live[cid]
              else "out of order")
        sess.lastseq[cid] = seq
        e = conv.entries[seq - 1]
        must = (not sess.synced) and e.recall_ix is not None and e.recall_ix < sess.hello_ix
        self.check_entry(p, where, must, e.recall_ix is not None)
        (sess.live if sess.synced else sess.catch)[cid].append(seq)
        self.stats["live pushes" if sess.synced else "catch-up pushes"] += 1
        sess.dev.store[cid].add(seq)

    def pump(self, sessions):
        """Handle everything already received on these sessions, without blocking."""
        for sess in sessions:
            c = sess.conn
            while c.pushes:
                self.on_frame(sess, c.pushes.popleft())
            while True:
                while len(c.rbuf) >= 4:
                    n = struct.unpack(">I", c.rbuf[:4])[0]
                    check(1 <= n <= MAX_FRAME, "%r: server sent a frame of %d bytes", sess, n)
                    if len(c.rbuf) < 4 + n:
                        break
                    payload = bytes(c.rbuf[4:4 + n])
                    del c.rbuf[:4 + n]
                    self.on_frame(sess, rptest.decode_frame_payload(payload))
                if sess.eof:
                    break
                r, _, _ = select.select([c.sock], [], [], 0)
                if not r:
                    break
                try:
                    data = c.sock.recv(1 << 18)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    sess.eof = True
                    break
                c.rbuf += data

    def pump_all(self):
        self.pump(self.sessions())

    def wait(self, sessions, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            self.pump(sessions)
            bad = [s for s in sessions if not pred(s)]
            if not bad:
                return
            for s in bad:
                check(not s.eof, "%r: the server closed the connection while waiting for %s",
                      s, what)
            left = deadline - time.monotonic()
            check(left > 0, "timed out after %.0fs waiting for %s on %r", timeout, what, bad)
            select.select([s.conn.sock for s in bad], [], [], min(left, 0.2))

    # -- sessions

    def segments(self, sess, conv):
        """The entries the session may receive of conv, as the runs the catch-up limit
        applies to: the whole conversation (the contract), or with RP_SPAN_LIMIT each
        membership span of a group on its own (ringpush's catch-up today)."""
        E = self.visible(sess, conv)
        if not SPAN_LIMIT or conv.group is None:
            return [E]
        u = sess.dev.user
        spans = sorted(conv.group.spans.get(u, []))
        if u in conv.group.members:
            spans.append((conv.group.members[u], conv.last))
        return [[s for s in E if j <= s <= r] for j, r in spans]

    def bounds(self, sess, conv, seg):
        """(lo, hi): the catch-up of seg starts at an index in lo..hi."""
        n_syn = sess.n_synced.get(conv.id, 0) if sess.n_synced is not None else conv.last
        lim = count_le(seg, n_syn) - self.L + len(sess.optional[conv.id])
        return count_le(seg, sess.lo[conv.id]), max(count_le(seg, sess.hi[conv.id]), lim)

    def must_arrive(self, sess, conv):
        """The last entry of conv the session must receive, or 0 when none must."""
        m = 0
        for seg in self.segments(sess, conv):
            if seg and len(seg) > self.bounds(sess, conv, seg)[1]:
                m = max(m, seg[-1])
        return m

    def settled(self, sess):
        if not sess.synced or sess.reads_req:
            return False
        for conv in self.convs.values():
            m = self.must_arrive(sess, conv)
            if m and sess.lastseq.get(conv.id, 0) < m:
                return False
        return True

    def settle(self, sessions):
        self.wait(sessions, self.settled, "every push due")
        for s in sessions:
            self.check_session(s, complete=True)

    def check_session(self, sess, complete):
        u = sess.dev.user
        for cid, conv in self.convs.items():
            opt = sess.optional[cid]
            R = [s for s in sess.catch[cid] + sess.live[cid] if s not in opt]
            if not R and not (complete and self.ever_entitled(u, conv)):
                continue
            info = ("(catch-up %r, live %r; log at %d at hello, %r at synced; ack cursor %d..%d; "
                    "%s login; catchup_limit %d)" % (
                        sess.catch[cid], sess.live[cid], sess.n_hello.get(cid, 0),
                        (sess.n_synced or {}).get(cid), sess.lo[cid], sess.hi[cid],
                        "concurrent" if sess.concurrent else "sequential", self.L))
            segs = self.segments(sess, conv)
            allowed = set(x for seg in segs for x in seg)
            check(set(R) <= allowed, "%r: %s: received %r, may receive only %r %s", sess, cid,
                  sorted(set(R) - allowed), sorted(allowed), info)
            for seg in segs:
                Rk = [x for x in R if x in seg] if len(segs) > 1 else R
                ck = [x for x in sess.catch[cid] if x in seg] if len(segs) > 1 else sess.catch[cid]
                check(len(ck) <= self.L, "%r: %s: %d entries in the catch-up of one conversation, "
                      "more than catchup_limit %s", sess, cid, len(ck), info)
                if Rk:
                    i = seg.index(Rk[0])
                    if complete:
                        check(Rk == seg[i:], "%r: %s: received %r, expected the entries %r %s",
                              sess, cid, Rk, seg[i:], info)
                    else:
                        check(Rk == seg[i:i + len(Rk)], "%r: %s: received %r, a hole: expected "
                              "%r %s", sess, cid, Rk, seg[i:i + len(Rk)], info)
                elif complete:
                    i = len(seg)
                else:
                    continue
                lo_i, hi_i = self.bounds(sess, conv, seg)
                check(i >= lo_i, "%r: %s: seq %d pushed again although the device's ack cursor "
                      "was confirmed at %d %s", sess, cid, seg[i] if i < len(seg) else -1,
                      sess.lo[cid], info)
                check(i <= hi_i, "%r: %s: missing %r after the ack cursor %s", sess, cid,
                      seg[hi_i:i], info)

    def login(self, dev, concurrent=False, optional=None, fill=True, resume=True):
        c = rptest.Client(self.srv, timeout=TIMEOUT)
        sess = Session(self, dev, c)
        sess.concurrent = concurrent
        for cid, seq in (optional or ()):
            sess.optional[cid].add(seq)
        if not resume:
            # no catch-up and no synced: exactly the entries appended from now on
            sess.synced = True
            sess.n_synced = dict(sess.n_hello)
            for cid, n in sess.n_hello.items():
                sess.lo[cid] = sess.hi[cid] = n
        r = c.hello(dev.user, dev.name, resume=resume)
        check(r.get("op") == "ok" and r.get("user") == dev.user and r.get("device") == dev.name,
              "hello of %r: %r", dev, r)
        dev.sess = sess
        self.note("login %r%s" % (sess, " (others go on)" if concurrent else
                                  "" if resume else " without resume"))
        if not concurrent:
            if fill:
                self.ready(sess)
            else:
                self.wait([sess], lambda s: s.synced, "synced")
        return sess

    def ready(self, sess):
        if not sess.synced:
            self.wait([sess], lambda s: s.synced, "synced")
            self.fill_gaps(sess)

    def close(self, dev, graceful, ack_frac):
        sess = dev.sess
        if graceful:
            self.ready(sess)
            self.settle([sess])
        else:
            self.pump([sess])
            self.check_session(sess, complete=False)
        if ack_frac is not None and sess.synced:
            self.send_acks(sess, ack_frac)
            if graceful:
                self.confirm_acks(sess)
        if not graceful:
            self.abandon(sess)
        sess.conn.close()
        dev.sess = None
        self.note("close %r %s" % (sess, "cleanly" if graceful else "abruptly"))

    # -- acks, gaps, requests

    def ack_target(self, dev, conv):
        st = dev.store.get(conv.id)
        if not st:
            return 0
        start = self.readable_start(dev.user, conv)
        if start is None:
            return max(st)
        t = start - 1
        while t + 1 in st:
            t += 1
        return t

    def abandon(self, sess):
        """Before an abrupt close: acks of this session not yet seen applied may be lost
        (closing a socket with unread pushes in its buffer sends a reset, and the server
        may drop what it had not read yet)."""
        dev = sess.dev
        for cid in sess.acked:
            dev.ack_sure[cid] = min(dev.ack_sure[cid], dev.ack_lo[cid])

    def send_acks(self, sess, frac):
        dev = sess.dev
        for cid in sorted(dev.store):
            t = self.ack_target(dev, self.convs[cid])
            t = t - int(frac * 4)
            member = self.readable_start(dev.user, self.convs[cid]) is not None
            if t >= 1 and (t > dev.ack_hi[cid] or (member and t > dev.ack_sure[cid])):
                sess.conn.ack(cid, t)
                dev.ack_log[cid].append("op %d %r ack %d" % (self.opix, sess, t))
                dev.ack_hi[cid] = max(dev.ack_hi[cid], t)
                sess.acked.add(cid)
                if member:
                    dev.ack_sure[cid] = t

    def confirm_acks(self, sess):
        """sync until it reports every ack cursor sent for a conversation of the user."""
        dev = sess.dev
        deadline = time.monotonic() + 5.0
        while True:
            convs = self.sync(sess)
            behind = {cid: (c["ack_seq"], dev.ack_sure[cid]) for cid, c in convs.items()
                      if c["ack_seq"] < dev.ack_sure[cid]}
            if not behind:
                return
            check(time.monotonic() < deadline, "%r: acks not applied after 5s: sync ack_seq, "
                  "sent: %r; acks sent: %r", sess, behind,
                  {cid: dev.ack_log[cid] for cid in behind})
            time.sleep(0.05)

    def req(self, sess, op, **fields):
        self.ready(sess)
        r = sess.conn.request(op, fields, _timeout=TIMEOUT)
        check(r.get("op") != "error" or "id" in r, "%r: fatal error for %s: %r", sess, op, r)
        return r

    def ok(self, sess, op, **fields):
        r = self.req(sess, op, **fields)
        check(r.get("op") == "ok", "%r: %s %r answered %r", sess, op, fields_short(fields), r)
        return r

    def fill_gaps(self, sess):
        """What a client does after synced: page history over the holes it can read."""
        dev = sess.dev
        for cid, conv in sorted(self.convs.items()):
            start = self.readable_start(dev.user, conv)
            if start is None or conv.last < start:
                continue
            st = dev.store[cid]
            missing = [s for s in range(start, conv.last + 1) if s not in st]
            if not missing:
                continue
            after = missing[0] - 1
            while after < missing[-1]:
                params = {"conv": cid, "after": after, "limit": 200}
                r = self.ok(sess, "history", **params)
                msgs = self.check_history(sess, params, r)
                if not msgs:
                    break
                after = msgs[-1]["seq"]
                if not r["more"]:
                    break

    def check_history(self, sess, params, r):
        cid = params["conv"]
        conv = self.convs[cid]
        where = "%r history %r" % (sess, params)
        start = self.readable_start(sess.dev.user, conv)
        readable = list(range(start, conv.last + 1))
        lim = params.get("limit", 50)
        if "after" in params:
            cand = [s for s in readable if s > params["after"]]
            want = cand[:lim]
        else:
            b = params.get("before", conv.last + 1)
            cand = [s for s in readable if s < b]
            want = cand[-lim:] if cand else []
        msgs = r.get("msgs")
        check(r.get("conv") == cid and isinstance(msgs, list) and isinstance(r.get("more"), bool),
              "%s: bad reply %r", where, r)
        got = [m.get("seq") for m in msgs]
        self.stats["history entries"] += len(got)
        if "after" in params:
            ok = got == want[:len(got)]
        else:
            ok = got == want[len(want) - len(got):]
        check(ok and (got or not want), "%s: seqs %r, the log has %r", where, got, want)
        if len(got) < len(want):
            size = len(msgpack.packb(r, use_bin_type=True))
            nxt = conv.entries[want[len(got)] - 1 if "after" in params
                               else want[len(want) - len(got) - 1] - 1]
            nlen = len(nxt.body.encode() if isinstance(nxt.body, str) else nxt.body or b"")
            check(size + nlen + 300 > MAX_FRAME, "%s: short page (%d of %d, %d bytes)",
                  where, len(got), len(want), size)
        check(r["more"] == (len(cand) > len(got)), "%s: more=%r with %d of %d entries",
              where, r["more"], len(got), len(cand))
        for m in msgs:
            check(m.get("conv") == cid, "%s: element of another conversation: %r", where, m)
            e = conv.entries[m["seq"] - 1]
            self.check_entry(m, where, e.recall_ix is not None, e.recall_ix is not None)
            sess.dev.store[cid].add(m["seq"])
        return msgs

    def sync(self, sess):
        u = sess.dev.user
        r = self.ok(sess, "sync")
        convs = r.get("convs")
        check(isinstance(convs, list), "%r: sync %r", sess, r)
        by = {c.get("conv"): c for c in convs}
        want = set(self.current_convs(u))
        check(len(by) == len(convs) and set(by) == want,
              "%r: sync lists %r, the user's conversations are %r", sess, sorted(by), sorted(want))
        tss = [c.get("last_ts") for c in convs]
        check(all(a >= b for a, b in zip(tss, tss[1:])), "%r: sync not newest first: %r", sess,
              [(c["conv"], c["last_ts"]) for c in convs])
        dev = sess.dev
        for cid, c in by.items():
            conv = self.convs[cid]
            last = conv.entries[-1]
            if last.ts is None:
                last.ts = c.get("last_ts")
            key = (u, cid)
            rd, rlo = self.read[key], self.read_lo[key]
            # The contract leaves a member's read cursor before any read open: ringpush
            # reports at least joined_seq - 1 (what came before the join is not unread).
            floor = conv.group.members[u] - 1 if conv.group is not None else 0
            rs = c.get("read_seq")
            ok = isinstance(rs, int) and (rlo <= rs <= rd or (
                floor and rs == min(conv.last, floor) and rd <= floor))
            check(c.get("last_seq") == conv.last and c.get("last_ts") == last.ts
                  and ok and c.get("unread") == conv.last - rs,
                  "%r: sync %r, model last_seq %d last_ts %r read_seq %d..%d (joined at %d)",
                  sess, c, conv.last, last.ts, rlo, rd, floor + 1)
            if rs > floor:
                self.read[key] = self.read_lo[key] = rs
            a = c.get("ack_seq")
            check(isinstance(a, int) and dev.ack_lo[cid] <= a <= dev.ack_hi[cid],
                  "%r: sync ack_seq %r of %s, acks sent: confirmed %d, highest %d", sess, a, cid,
                  dev.ack_lo[cid], dev.ack_hi[cid])
            dev.ack_lo[cid] = a
        return by


def fields_short(fields):
    out = {}
    for k, v in fields.items():
        if isinstance(v, (str, bytes)) and len(v) > 40:
            v = v[:20] + ("...(%d)" % len(v) if isinstance(v, str) else b"...")
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# Random content


def gen_body(rng):
    k = rng.random()
    if k < 0.04:
        n = 0
    elif k < 0.88:
        n = rng.randint(1, 80)
    elif k < 0.97:
        n = rng.randint(80, 4000)
    elif k < 0.99:
        n = rng.randint(4000, MAX_BODY)
    else:
        n = MAX_BODY
    if rng.random() < 0.45:
        return rng.randbytes(n)
    alphabet = "abcxyz ABC019\x00\n\t\"'\\:{}é中😀\u2028"
    s = "".join(rng.choice(alphabet) for _ in range(min(n, 200)))
    if n > 200:
        s += "q" * (n - 200)
    b = s.encode()
    if len(b) > MAX_BODY:
        s = b[:MAX_BODY].decode("utf-8", "ignore")
    return s


def gen_cmid(world, user):
    world.cmid_no += 1
    rng = world.rng
    tail = "".join(rng.choice("az09-é😀 :") for _ in range(rng.randint(0, 6)))
    c = "%s.%d/%s" % (user, world.cmid_no, tail)
    b = c.encode()[:64]
    return b.decode("utf-8", "ignore")


# ---------------------------------------------------------------------------
# Operations. Each returns True when it did something; every RNG draw depends
# only on the model, never on timing.


def pick(rng, seq):
    """One element, with one draw whatever the length (see rint)."""
    seq = list(seq)
    return seq[int(rng.random() * len(seq))] if seq else None


def rint(rng, a, b):
    """randint with exactly one draw: a bound that depends on how a race in a burst went
    must not shift the RNG stream of the operations that follow."""
    return a + int(rng.random() * (b - a + 1))


def op_send_direct(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    to = pick(rng, w.users + [GHOST, dev.user])
    do_send(w, dev, {"to": to})
    return True


def op_send_group(w):
    rng = w.rng
    g = pick(rng, [g for g in w.groups if not g.dismissed and any(
        d.user in g.members for d in w.online())])
    if g is None:
        return False
    dev = pick(rng, [d for d in w.online() if d.user in g.members])
    do_send(w, dev, {"group": g.gid})
    return True


def do_send(w, dev, target):
    rng = w.rng
    sess = dev.sess
    body, typ, cmid = gen_body(rng), rng.choice(TYPES), gen_cmid(w, dev.user)
    conv = w.direct(dev.user, target["to"]) if "to" in target else w.convs["g:" + target["group"]]
    r = w.req(sess, "send", cmid=cmid, type=typ, body=body, **target)
    check(r.get("op") == "ok" and r.get("conv") == conv.id and r.get("seq") == conv.last + 1
          and isinstance(r.get("ts"), int) and not r.get("dup"),
          "%r: send %r to %s answered %r, model next seq %d", sess, cmid, conv.id, r, conv.last + 1)
    seq = r["seq"]
    w.append(conv, Entry(conv.id, seq, "msg", dev.user, {dev.name}, cmid, typ, body, r["ts"]))
    sess.own[conv.id].add(seq)
    dev.store[conv.id].add(seq)
    w.sent_read(dev.user, conv.id, seq)
    w.sends.append((dev.user, conv.id, target, cmid, typ, body, seq))
    w.note("%r send %s#%d (%s, %d bytes)" % (sess, conv.id, seq, type(body).__name__, len(body)))


def admin_send(w, frm, target, cmid, typ, body):
    req = {"from": frm, "cmid": cmid, "type": typ, "body": body}
    req.update(target)
    return w.srv.admin("POST", "/v1/messages", req)


def op_admin_send(w):
    rng = w.rng
    frm = pick(rng, w.users + [GHOST])
    groups = [g for g in w.groups if not g.dismissed and frm in g.members]
    if groups and rng.random() < 0.5:
        g = rng.choice(groups)
        target, conv = {"group": g.gid}, w.convs[g.conv]
    else:
        to = pick(rng, w.users + [GHOST])
        target, conv = {"to": to}, w.direct(frm, to)
    body = gen_body(rng)
    if isinstance(body, bytes):
        body = body.hex()[:MAX_BODY]
    body = body.replace("\x00", "0")  # JSON strings of the admin API may not hold U+0000
    typ, cmid = rng.choice(TYPES), gen_cmid(w, frm)
    st, r = admin_send(w, frm, target, cmid, typ, body)
    check(st == 200 and isinstance(r, dict) and r.get("conv") == conv.id
          and r.get("seq") == conv.last + 1 and isinstance(r.get("ts"), int) and not r.get("dup"),
          "admin send from %s to %s: %s %r, model next seq %d", frm, conv.id, st, r, conv.last + 1)
    seq = r["seq"]
    w.append(conv, Entry(conv.id, seq, "msg", frm, {""}, cmid, typ, body, r["ts"]))
    w.sent_read(frm, conv.id, seq)
    w.sends.append((frm, conv.id, target, cmid, typ, body, seq))
    w.note("admin send from %s %s#%d" % (frm, conv.id, seq))
    return True


def op_retry(w):
    """A send again with a cmid already accepted: the same entry, dup, nothing new."""
    rng = w.rng
    if not w.sends:
        return False
    frm, cid, target, cmid, typ, body, seq = w.sends[rng.randrange(len(w.sends))]
    conv = w.convs[cid]
    e = conv.entries[seq - 1]
    if rng.random() < 0.25:
        body = gen_body(rng)  # the body is not part of the dedup key
    via_admin = rng.random() < 0.25
    devs = w.online(frm)
    dev = pick(rng, devs)
    if not via_admin and dev is None:
        return False
    member = conv.group is None or (not conv.group.dismissed and frm in conv.group.members)
    if via_admin:
        body = "retry"
        st, r = admin_send(w, frm, target, cmid, typ, body)
        where = "admin retry from %s of %s#%d" % (frm, cid, seq)
        ok = st == 200
    else:
        r = w.req(dev.sess, "send", cmid=cmid, type=typ, body=body, **target)
        where = "%r retry of %s#%d" % (dev.sess, cid, seq)
        ok = r.get("op") == "ok"
    if ok or member:
        check(ok and r.get("conv") == cid and r.get("seq") == seq and r.get("ts") == e.ts
              and r.get("dup") is True, "%s (cmid %r): %r, expected seq %d ts %r dup",
              where, cmid, r, seq, e.ts)
    else:  # no longer a member: the dup, or a refusal; never a new entry
        code = r.get("code") if isinstance(r, dict) else None
        check(code in ("forbidden", "not_found"), "%s (cmid %r), not a member: %r",
              where, cmid, r)
    if ok and member:
        # a retry reads the entry again, as its original did (a crash may have lost that);
        # an admin retry does only where the sender is online
        if via_admin:
            w.read[(frm, cid)] = max(w.read[(frm, cid)], seq)
        else:
            w.sent_read(frm, cid, seq)
    w.note("%s: %s" % (where, "dup" if ok else r))
    return True


def op_lost_reply(w):
    """A send whose connection drops before the reply; retried with the same cmid."""
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    groups = [g for g in w.groups if not g.dismissed and dev.user in g.members]
    if groups and rng.random() < 0.5:
        g = rng.choice(groups)
        target, conv = {"group": g.gid}, w.convs[g.conv]
    else:
        to = pick(rng, w.users + [GHOST])
        target, conv = {"to": to}, w.direct(dev.user, to)
    body, typ, cmid = gen_body(rng), rng.choice(TYPES), gen_cmid(w, dev.user)
    how = rng.random()
    others = [d for d in w.online(dev.user) if d is not dev]
    if how < 0.35 and others:
        rdev = rng.choice(others)
        devs = {dev.name, rdev.name}
    elif how < 0.65 and isinstance(body, str) and "\x00" not in body:
        rdev = None  # the backend retries through the admin API
        devs = {dev.name, ""}
    else:
        rdev = dev  # the same device, in a new session
        devs = {dev.name}
    sess = dev.sess
    w.ready(sess)
    if rdev is not None and rdev is not dev:
        w.ready(rdev.sess)
    w.pump([sess])
    w.check_session(sess, complete=False)
    msg = {"op": "send", "id": sess.conn.new_id(), "cmid": cmid, "type": typ, "body": body}
    msg.update(target)
    sess.conn.send(msg)
    w.abandon(sess)
    sess.conn.close()
    dev.sess = None
    seq = conv.last + 1
    w.append(conv, Entry(conv.id, seq, "msg", dev.user, devs, cmid, typ, body, None))
    w.note("%r sends %s#%d and drops the connection; retry via %s" % (
        sess, conv.id, seq, rdev or "admin"))
    if rdev is None:
        st, r = admin_send(w, dev.user, target, cmid, typ, body)
        ok = st == 200
    else:
        if rdev is dev:
            w.login(dev, optional=[(conv.id, seq)], fill=False)
        else:
            rdev.sess.optional[conv.id].add(seq)
        r = w.req(rdev.sess, "send", cmid=cmid, type=typ, body=body, **target)
        ok = r.get("op") == "ok"
    check(ok and r.get("conv") == conv.id and r.get("seq") == seq and isinstance(r.get("ts"), int),
          "retry after a lost reply (%s, cmid %r): %r, expected seq %d", conv.id, cmid, r, seq)
    e = conv.entries[seq - 1]
    check(e.ts in (None, r["ts"]), "retry of %s#%d: ts %r, pushed with %r", conv.id, seq, r["ts"], e.ts)
    e.ts = r["ts"]
    if rdev is not None:
        rdev.store[conv.id].add(seq)
    w.sent_read(dev.user, conv.id, seq)
    w.sends.append((dev.user, conv.id, target, cmid, typ, e.body, seq))
    return True


def group_event(w, sess, g, kind, users=None, birth=None, **extra):
    conv = w.convs[g.conv]
    seq = conv.last + 1
    data = {"kind": kind, "by": sess.dev.user}
    if users is not None:
        data["users"] = set(users)
    data.update(extra)
    w.append(conv, Entry(conv.id, seq, "event", sess.dev.user, data=data, birth=birth))
    w.own_read(sess.dev.user, conv.id, seq)
    sess.own[conv.id].add(seq)
    sess.dev.store[conv.id].add(seq)
    return seq


def op_group_create(w):
    rng = w.rng
    active = [g for g in w.groups if not g.dismissed]
    if len(active) >= 4:
        return False
    dev = pick(rng, w.online())
    if dev is None:
        return False
    pool = w.users + [GHOST]
    members = rng.sample(pool, rng.randint(0, min(5, len(pool))))
    if members and rng.random() < 0.3:
        members.append(members[0])  # a repeat
    if rng.random() < 0.2:
        members.append(dev.user)
    gid = "grp%d_%d" % (len(w.groups), w.rng.randrange(1000)) if rng.random() < 0.6 else None
    fields = {"name": "G%d %s" % (len(w.groups), "é" * rng.randint(0, 3)), "members": members}
    if gid:
        fields["group"] = gid
    r = w.ok(dev.sess, "group.create", **fields)
    got = r.get("group")
    check(isinstance(got, str) and (gid is None or got == gid) and r.get("conv") == "g:%s" % got
          and got not in w.gmap, "%r: group.create %r: %r", dev.sess, fields, r)
    g = Group(got, dev.user)
    g.name = fields["name"]
    w.groups.append(g)
    w.gmap[got] = g
    conv = Conv(g.conv, group=g)
    w.convs[g.conv] = conv
    users = set(members) | {dev.user}
    for u in users:
        g.members[u] = 1
    group_event(w, dev.sess, g, "create", users, name=fields["name"])
    w.note("%r creates %s with %s" % (dev.sess, got, sorted(users)))
    return True


def acting(w, g, who):
    """An online device of one of the users who, for group g."""
    return pick(w.rng, [d for d in w.online() if d.user in who])


def active_groups(w):
    return [g for g in w.groups if not g.dismissed]


def op_invite(w):
    rng = w.rng
    g = pick(rng, active_groups(w))
    if g is None:
        return False
    dev = acting(w, g, g.members)
    cands = [u for u in w.users + [GHOST] if u not in g.members and g.removals[u] < MAX_REMOVALS]
    if dev is None or not cands:
        return False
    new = rng.sample(cands, rng.randint(1, min(3, len(cands))))
    users = list(new)
    if rng.random() < 0.3:
        users.append(rng.choice(sorted(g.members)))
    rng.shuffle(users)
    w.ok(dev.sess, "group.invite", group=g.gid, users=users)
    seq = group_event(w, dev.sess, g, "invite", new)
    for u in new:
        g.members[u] = seq
    w.note("%r invites %s to %s#%d" % (dev.sess, users, g.gid, seq))
    return True


def remove(g, users, seq):
    for u in users:
        g.spans[u].append((g.members.pop(u), seq))
        g.removals[u] += 1


def op_kick(w):
    rng = w.rng
    g = pick(rng, active_groups(w))
    if g is None:
        return False
    dev = acting(w, g, [g.owner])
    victims = sorted(u for u in g.members if u != g.owner)
    if dev is None or not victims:
        return False
    kick = rng.sample(victims, rng.randint(1, min(2, len(victims))))
    w.ok(dev.sess, "group.kick", group=g.gid, users=kick)
    seq = group_event(w, dev.sess, g, "kick", kick)
    remove(g, kick, seq)
    w.note("%r kicks %s from %s#%d" % (dev.sess, kick, g.gid, seq))
    return True


def op_leave(w):
    rng = w.rng
    g = pick(rng, active_groups(w))
    if g is None:
        return False
    dev = acting(w, g, [u for u in g.members if u != g.owner])
    if dev is None:
        return False
    w.ok(dev.sess, "group.leave", group=g.gid)
    seq = group_event(w, dev.sess, g, "leave", [dev.user])
    remove(g, [dev.user], seq)
    w.note("%r leaves %s#%d" % (dev.sess, g.gid, seq))
    return True


def op_open_join(w):
    rng = w.rng
    g = pick(rng, active_groups(w))
    if g is None:
        return False
    if not g.open:
        dev = acting(w, g, [g.owner])
        if dev is None:
            return False
        w.ok(dev.sess, "group.update", group=g.gid, open=True)
        seq = group_event(w, dev.sess, g, "update", open=True)
        g.open = True
        w.note("%r opens %s#%d" % (dev.sess, g.gid, seq))
        return True
    dev = acting(w, g, [u for u in w.users if u not in g.members and g.removals[u] < MAX_REMOVALS])
    if dev is None:
        return False
    w.ok(dev.sess, "group.join", group=g.gid)
    seq = group_event(w, dev.sess, g, "join", [dev.user])
    g.members[dev.user] = seq
    w.note("%r joins %s#%d" % (dev.sess, g.gid, seq))
    return True


def op_dismiss(w):
    rng = w.rng
    g = pick(rng, active_groups(w))
    if g is None or len(w.groups) < 3:
        return False
    dev = acting(w, g, [g.owner])
    if dev is None:
        return False
    w.ok(dev.sess, "group.dismiss", group=g.gid)
    seq = group_event(w, dev.sess, g, "dismiss", list(g.members))
    remove(g, list(g.members), seq)
    g.dismissed = True
    w.note("%r dismisses %s#%d" % (dev.sess, g.gid, seq))
    return True


def op_recall(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    cands = []
    for cid in w.current_convs(dev.user):
        conv = w.convs[cid]
        owner = conv.group is not None and conv.group.owner == dev.user
        cands += [e for e in conv.entries if e.kind == "msg" and e.recall_ix is None
                  and (e.frm == dev.user or owner) and e.ts is not None and not e.racy]
    cands.sort(key=lambda e: e.birth)
    e = pick(rng, cands)
    if e is None:
        return False
    conv = w.convs[e.conv]
    r = w.ok(dev.sess, "recall", conv=e.conv, seq=e.seq)
    seq = conv.last + 1
    check(r.get("seq") == seq, "%r: recall of %s#%d answered %r, model next seq %d",
          dev.sess, e.conv, e.seq, r, seq)
    w.append(conv, Entry(conv.id, seq, "recall", dev.user, target=e.seq))
    w.own_read(dev.user, conv.id, seq)
    e.recall_ix = w.opix
    dev.sess.own[conv.id].add(seq)
    dev.store[conv.id].add(seq)
    w.note("%r recalls %s#%d at #%d" % (dev.sess, e.conv, e.seq, seq))
    return True


def op_offline(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None or len(w.online()) <= 2:
        return False
    graceful = rng.random() < 0.65
    k = rng.random()
    frac = None if k < 0.2 else (0.0 if k < 0.75 else rng.random())
    w.close(dev, graceful, frac)
    return True


def op_online(w):
    rng = w.rng
    dev = pick(rng, [d for d in w.devices if d.sess is None])
    if dev is None:
        return False
    k = rng.random()
    w.login(dev, concurrent=k < 0.3, resume=k >= 0.9)
    return True


def op_history(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    mine = w.current_convs(dev.user)
    if rng.random() < 0.15 or not mine:
        # somebody else's conversation: forbidden
        others = list(cid for cid, c in w.convs.items()
                        if c.last and w.readable_start(dev.user, c) is None
                        and not (c.group and c.group.dismissed))
        cid = pick(rng, others)
        if cid is None:
            return False
        r = w.req(dev.sess, "history", conv=cid)
        check(r.get("op") == "error" and r.get("code") == "forbidden",
              "%r: history of %s, not a member: %r", dev.sess, cid, r)
        w.note("%r history %s: forbidden" % (dev.sess, cid))
        return True
    cid = pick(rng, mine)
    conv = w.convs[cid]
    params = {"conv": cid}
    k = rng.random()
    if k < 0.4:
        params["before"] = rint(rng, 1, conv.last + 2)
    elif k < 0.8:
        params["after"] = rint(rng, 0, conv.last + 1)
    k = rng.random()
    if k < 0.6:
        params["limit"] = rng.randint(1, 30)
    elif k < 0.7:
        params["limit"] = 200
    r = w.ok(dev.sess, "history", **params)
    w.check_history(dev.sess, params, r)
    w.note("%r history %r: %d entries" % (dev.sess, params, len(r["msgs"])))
    return True


def op_read(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    cid = pick(rng, w.current_convs(dev.user))
    if cid is None:
        return False
    conv = w.convs[cid]
    s = rint(rng, 1, conv.last + 2)
    old, olo = w.read[(dev.user, cid)], w.read_lo[(dev.user, cid)]
    new = max(old, min(s, conv.last))
    targets = [d.sess for d in w.online(dev.user) if d is not dev]
    if conv.group is None:
        peer = conv.pair[0] if conv.pair[1] == dev.user else conv.pair[1]
        if peer != dev.user:
            targets += [d.sess for d in w.online(peer)]
    w.ready(dev.sess)
    floor = conv.group.members[dev.user] - 1 if conv.group is not None else 0
    for t in targets:
        if new > old and new > floor:
            t.reads_req.append((cid, dev.user, new))
        else:
            t.reads_opt |= {(cid, dev.user, x) for x in (olo, old, s, new, min(s, conv.last))}
    w.ok(dev.sess, "read", conv=cid, seq=s)
    w.read[(dev.user, cid)] = new
    w.read_lo[(dev.user, cid)] = max(olo, min(s, conv.last))
    w.note("%r read %s %d: cursor %d -> %d" % (dev.sess, cid, s, old, new))
    return True


def op_sync(w):
    dev = pick(w.rng, w.online())
    if dev is None:
        return False
    w.sync(dev.sess)
    w.note("%r sync" % dev.sess)
    return True


def op_ack(w):
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    frac = 0.0 if rng.random() < 0.7 else rng.random()
    w.ready(dev.sess)
    w.pump([dev.sess])
    w.send_acks(dev.sess, frac)
    w.note("%r acks" % dev.sess)
    return True


def op_probe(w):
    """Requests the contract refuses: an error, and nothing appended or pushed."""
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    k = rng.random()
    u = dev.user
    if k < 0.35:
        g = pick(rng, [g for g in w.groups if u not in g.members])
        if g is None:
            return False
        r = w.req(dev.sess, "send", group=g.gid, cmid=gen_cmid(w, u), type="text", body="no")
        want, what = ("not_found" if g.dismissed else "forbidden"), "send to %s" % g.gid
    elif k < 0.5:
        g = pick(rng, [g for g in w.groups if u not in g.members])
        if g is None:
            return False
        st, r = admin_send(w, u, {"group": g.gid}, gen_cmid(w, u), "text", "no")
        want, what = (404 if g.dismissed else 403), "admin send from %s to %s" % (u, g.gid)
        check(st == want, "%s (not a member): %s %r", what, st, r)
        w.note("probe: %s refused: %s" % (what, st))
        return True
    elif k < 0.65:
        g = pick(rng, [g for g in active_groups(w) if u in g.members and u != g.owner])
        if g is None:
            return False
        victim = pick(rng, sorted(g.members))
        r = w.req(dev.sess, "group.kick", group=g.gid, users=[victim])
        want, what = None, "kick of %s from %s by a plain member" % (victim, g.gid)
    elif k < 0.75:
        g = pick(rng, [g for g in active_groups(w) if u == g.owner])
        if g is None:
            return False
        r = w.req(dev.sess, "group.leave", group=g.gid)
        want, what = "forbidden", "leave of %s by its owner" % g.gid
    elif k < 0.85:
        g = pick(rng, [g for g in active_groups(w) if u not in g.members])
        if g is None:
            return False
        r = w.req(dev.sess, "group.invite", group=g.gid, users=[u])
        want, what = None, "invite to %s by a non-member" % g.gid
    else:
        cands = [e for cid in w.current_convs(u) if w.convs[cid].group is None
                 for e in w.convs[cid].entries
                 if e.kind == "msg" and e.frm != u and not e.racy and e.recall_ix is None]
        e = pick(rng, cands)
        if e is None:
            return False
        r = w.req(dev.sess, "recall", conv=e.conv, seq=e.seq)
        want, what = "forbidden", "recall of %s#%d by the peer" % (e.conv, e.seq)
    check(r.get("op") == "error" and (want is None or r.get("code") == want),
          "%r: %s: %r, expected an error %s", dev.sess, what, r, want or "")
    w.note("%r probe: %s refused: %s" % (dev.sess, what, r.get("code")))
    return True

class Item:
    """One request of a burst."""

    def __init__(self, dev, kind, conv, target=None, cmid=None, typ=None, body=None,
                 dupof=None, old=None, gop=None, users=None):
        self.dev, self.kind, self.conv, self.target = dev, kind, conv, target
        self.cmid, self.typ, self.body = cmid, typ, body
        self.dupof, self.old, self.gop, self.users = dupof, old, gop, users
        self.birth = next(_births)
        self.rid = self.reply = None

    def __repr__(self):
        return "%s(%r %s %s)" % (self.kind, self.dev.sess, self.conv.id, self.gop or self.cmid)


def op_burst(w):
    """Several devices pipeline sends (new ones, in-flight duplicates, old cmids) and
    maybe one group change, all at once: the seqs race, the model takes them from the
    replies and checks the log stays gapless and membership is respected."""
    rng = w.rng
    online = w.online()
    if len(online) < 2:
        return False
    devs = rng.sample(online, min(len(online), rng.randint(2, 4)))
    g = pick(rng, [g for g in active_groups(w) if any(d.user in g.members for d in devs)])
    items = []
    for dev in devs:
        for _ in range(rng.randint(1, 4)):
            k = rng.random()
            mine = [it for it in items if it.dev.user == dev.user and it.kind == "send"
                    and it.dupof is None and it.old is None]
            olds = [x for x in w.sends if x[0] == dev.user and x[2].get("to")]
            if k < 0.15 and mine:
                src = rng.choice(mine)
                items.append(Item(dev, "send", src.conv, src.target, src.cmid, src.typ, src.body,
                                  dupof=src))
            elif k < 0.25 and olds:
                frm, cid, target, cmid, typ, body, seq = rng.choice(olds)
                items.append(Item(dev, "send", w.convs[cid], target, cmid, typ, gen_body(rng),
                                  old=seq))
            elif k < 0.7 and g is not None:
                items.append(Item(dev, "send", w.convs[g.conv], {"group": g.gid},
                                  gen_cmid(w, dev.user), rng.choice(TYPES), gen_body(rng)))
            else:
                to = pick(rng, [d.user for d in devs] + [GHOST])
                items.append(Item(dev, "send", w.direct(dev.user, to), {"to": to},
                                  gen_cmid(w, dev.user), rng.choice(TYPES), gen_body(rng)))
    if g is not None and rng.random() < 0.5:
        k = rng.random()
        owner = [d for d in devs if d.user == g.owner]
        others = sorted(u for u in g.members if u != g.owner)
        leavers = [d for d in devs if d.user in g.members and d.user != g.owner]
        fresh = [u for u in w.users + [GHOST] if u not in g.members
                 and g.removals[u] < MAX_REMOVALS]
        gi = None
        if k < 0.04 and owner and len(w.groups) >= 3:
            gi = Item(owner[0], "group.dismiss", w.convs[g.conv], gop="dismiss",
                      users=sorted(g.members))
        elif k < 0.4 and owner and others:
            users = rng.sample(others, rng.randint(1, min(2, len(others))))
            gi = Item(rng.choice(owner), "group.kick", w.convs[g.conv], gop="kick", users=users)
        elif k < 0.7 and leavers:
            d = rng.choice(leavers)
            gi = Item(d, "group.leave", w.convs[g.conv], gop="leave", users=[d.user])
        elif fresh:
            actor = [d for d in devs if d.user in g.members]
            if actor:
                users = rng.sample(fresh, rng.randint(1, min(2, len(fresh))))
                gi = Item(rng.choice(actor), "group.invite", w.convs[g.conv], gop="invite",
                          users=users)
        if gi is not None:
            items.insert(rng.randrange(len(items) + 1), gi)
    # send everything, interleaving the devices, then collect the replies
    for d in devs:
        w.ready(d.sess)
    rank, nth = {}, collections.Counter()
    for it in items:  # round robin: every device's first request, then every second, ...
        rank[it] = nth[it.dev.name, it.dev.user]
        nth[it.dev.name, it.dev.user] += 1
    for it in sorted(items, key=lambda it: rank[it]):
        c = it.dev.sess.conn
        it.rid = c.new_id()
        msg = {"op": it.kind, "id": it.rid}
        if it.kind == "send":
            msg.update(it.target, cmid=it.cmid, type=it.typ, body=it.body)
        else:
            msg["group"] = it.conv.group.gid
            if it.gop in ("kick", "invite"):
                msg["users"] = it.users
        c.send(msg)
    for it in items:
        it.reply = it.dev.sess.conn.reply(it.rid, TIMEOUT)
    w.note("burst: " + ", ".join("%r -> %s" % (it, short_reply(it.reply)) for it in items))
    burst_model(w, items, g)
    return True


def short_reply(r):
    if r.get("op") == "ok":
        return "#%s%s" % (r.get("seq", ""), " dup" if r.get("dup") else "")
    return r.get("code", r)


def burst_model(w, items, g):
    gi = next((it for it in items if it.kind != "send"), None)
    affected = set(gi.users) if gi else set()
    members_before = {g.conv: set(g.members)} if g is not None else {}
    if gi is not None:
        check(gi.reply.get("op") == "ok", "burst: %r answered %r", gi, gi.reply)
        if gi.gop == "invite":
            affected = {u for u in gi.users if u not in g.members}
    # new entries per conversation: the originals of the sends, and the group event
    new = collections.defaultdict(list)
    by_key = collections.defaultdict(list)
    for it in items:
        if it.kind != "send":
            continue
        r = it.reply
        conv = it.conv
        key = (conv.id, it.dev.user, it.cmid)
        if r.get("op") == "error":
            check(conv.group is not None and r.get("code") in (
                "not_found" if gi is not None and gi.gop == "dismiss" else "forbidden", "forbidden")
                  and (it.dev.user not in conv.group.members or it.dev.user in affected)
                  and it.old is None,
                  "burst: %r answered %r (member before: %s; affected by %r)", it, r,
                  conv.group is not None and it.dev.user in conv.group.members, gi)
            continue
        check(r.get("op") == "ok" and r.get("conv") == conv.id and isinstance(r.get("seq"), int)
              and isinstance(r.get("ts"), int), "burst: %r answered %r", it, r)
        if it.old is not None:
            e = conv.entries[it.old - 1]
            check(r.get("dup") is True and r["seq"] == it.old and r["ts"] == e.ts,
                  "burst: %r of an old cmid answered %r, the original is #%d ts %r",
                  it, r, it.old, e.ts)
            continue
        by_key[key].append(it)
    for key, its in by_key.items():
        rs = [it.reply for it in its]
        orig = [it for it in its if not it.reply.get("dup")]
        check(len(orig) == 1 and all(r["seq"] == rs[0]["seq"] and r["ts"] == rs[0]["ts"]
                                     for r in rs),
              "burst: one cmid sent %d times at once: %r", len(its),
              [(it, it.reply) for it in its])
        new[key[0]].append(orig[0])
    if gi is not None:
        new[gi.conv.id].append(gi)
    for cid, its in new.items():
        conv = w.convs[cid]
        seqs = sorted(it.reply["seq"] for it in its if it.kind == "send")
        want = list(range(conv.last + 1, conv.last + 1 + len(its)))
        free = sorted(set(want) - set(seqs))
        check(set(seqs) <= set(want) and len(free) == len(its) - len(seqs),
              "burst: %s had last_seq %d, the sends got %r (and %s)", cid, conv.last, seqs,
              "a group event" if len(free) else "no group event")
        for it in its:
            if it.kind != "send":
                it.reply = dict(it.reply, seq=free[0])
        for it in sorted(its, key=lambda it: it.reply["seq"]):
            seq, sess = it.reply["seq"], it.dev.sess
            if it.kind == "send":
                e = Entry(cid, seq, "msg", it.dev.user, {it.dev.name}, it.cmid, it.typ,
                          it.body, it.reply["ts"], birth=it.birth)
                e.racy = conv.group is not None and it.dev.user not in (
                    members_before[cid] - affected)
                w.append(conv, e)
                sess.own[cid].add(seq)
                it.dev.store[cid].add(seq)
            else:
                group_event(w, sess, g, gi.gop, affected, birth=it.birth)
                if gi.gop == "invite":
                    for u in affected:
                        g.members[u] = seq
                else:
                    remove(g, affected, seq)
                    g.dismissed = gi.gop == "dismiss"
    # every accepted group send was from a member at its seq
    for it in items:
        if it.kind == "send" and it.reply.get("op") == "ok" and it.conv.group is not None:
            check(w.entitled(it.dev.user, it.conv, it.reply["seq"]),
                  "burst: %r accepted at #%d, but %s is not a member there (group change %r "
                  "at #%s)", it, it.reply["seq"], it.dev.user, gi, gi and gi.reply.get("seq"))
    for it in items:
        if it.kind == "send" and it.reply.get("op") == "ok":
            w.sent_read(it.dev.user, it.conv.id, it.reply["seq"])
            certain = it.conv.group is None or it.dev.user in members_before[it.conv.id] - affected
            if it.dupof is None and it.old is None and certain:
                w.sends.append((it.dev.user, it.conv.id, it.target, it.cmid, it.typ, it.body,
                                it.reply["seq"]))


def end_sessions(w, sessions, reason, timeout=TIMEOUT):
    """The server closes these sessions (after a bye with reason, when given)."""
    deadline = time.monotonic() + timeout
    for sess in sessions:
        while not sess.eof:
            w.pump([sess])
            if sess.eof:
                break
            left = deadline - time.monotonic()
            check(left > 0, "%r: not closed by the server (bye %r expected)", sess, reason)
            select.select([sess.conn.sock], [], [], min(left, 0.2))
        check(reason is None or sess.bye == reason, "%r: closed without a bye %r", sess, reason)
        w.check_session(sess, complete=False)
        w.abandon(sess)  # acks still in flight when the server ends a session may be lost
        sess.conn.close()
        if sess.dev.sess is sess:
            sess.dev.sess = None


def op_replace(w):
    """The same device logs in again: the old session gets bye replaced."""
    dev = pick(w.rng, w.online())
    if dev is None:
        return False
    old = dev.sess
    w.ready(old)
    w.pump([old])
    old.expect_bye = "replaced"
    dev.sess = None
    w.login(dev)
    end_sessions(w, [old], "replaced")
    w.note("%r replaced %r" % (dev.sess, old))
    return True


def op_admin_kick(w):
    user = pick(w.rng, w.users)
    sessions = [d.sess for d in w.online(user)]
    if not sessions or len(w.online()) - len(sessions) < 2:
        return False
    for s in sessions:
        w.ready(s)
        w.pump([s])
        s.expect_bye = "kicked"
    st, r = w.srv.admin("POST", "/v1/users/%s/kick" % user)
    check(st == 200 and r == {"kicked": len(sessions)}, "admin kick of %s (%d sessions): %s %r",
          user, len(sessions), st, r)
    end_sessions(w, sessions, "kicked")
    w.note("admin kicks %s: %r" % (user, sessions))
    return True


def op_restart(w):
    """SIGTERM (bye shutdown to everybody, exit 0) or SIGKILL, then the same data directory
    again; the devices that were online come back."""
    rng = w.rng
    if w.opix - w.last_restart < 400:
        return False
    w.last_restart = w.opix
    crash = rng.random() < 0.4
    back = [d for d in w.devices if d.sess is not None]
    sessions = w.sessions()
    for s in sessions:
        w.ready(s)
    w.pump(sessions)
    for s in sessions:
        s.expect_bye = None if crash else "shutdown"
    rc = w.srv.stop(signal.SIGKILL if crash else signal.SIGTERM, timeout=15.0)
    check(rc == (-signal.SIGKILL if crash else 0), "ringpushd exited with %r on %s:\n%s", rc,
          "SIGKILL" if crash else "SIGTERM", w.srv.stderr_tail())
    if crash:
        for s in sessions:
            try:
                w.pump([s])
            except Bug:
                raise
            except OSError:
                s.eof = True
            s.eof = True
        end_sessions(w, sessions, None)
        # acked and read cursors are written late: a crash may take them back to what was
        # written (redelivery, never a hole)
        for d in w.devices:
            d.ack_lo.clear()
            d.ack_sure.clear()
            for v in d.ack_log.values():
                v.append("op %d crash" % w.opix)
        w.read_lo.clear()
    else:
        end_sessions(w, sessions, "shutdown")
    w.srv.start()
    w.note("server restarted after %s" % ("SIGKILL" if crash else "SIGTERM"))
    for d in back:
        w.login(d)
    return True


def op_group_query(w):
    """group.members, group.info and group.list against the model."""
    rng = w.rng
    dev = pick(rng, w.online())
    if dev is None:
        return False
    u = dev.user
    mine = [g for g in active_groups(w) if u in g.members]
    k = rng.random()
    if k < 0.3 or not mine:
        r = w.ok(dev.sess, "group.list")
        got = sorted((x.get("group"), x.get("name"), x.get("role")) for x in r.get("groups", []))
        want = sorted((g.gid, g.name, "owner" if g.owner == u else "member") for g in mine)
        check(got == want, "%r: group.list %r, model %r", dev.sess, got, want)
        w.note("%r group.list: %d groups" % (dev.sess, len(got)))
        return True
    g = pick(rng, mine)
    conv = w.convs[g.conv]
    if k < 0.6:
        r = w.ok(dev.sess, "group.info", group=g.gid)
        want = {"group": g.gid, "name": g.name, "owner": g.owner, "open": g.open,
                "count": len(g.members), "last_seq": conv.last}
        got = {key: r.get(key) for key in want}
        check(got == want, "%r: group.info %r, model %r", dev.sess, r, want)
    else:
        lim = rint(rng, 1, 6)
        members, after = [], None
        while True:
            params = {"group": g.gid, "limit": lim}
            if after is not None:
                params["after"] = after
            r = w.ok(dev.sess, "group.members", **params)
            page = r.get("members")
            check(isinstance(page, list) and len(page) <= lim and isinstance(r.get("more"), bool),
                  "%r: group.members %r: %r", dev.sess, params, r)
            members += page
            if not r["more"]:
                break
            check(page, "%r: group.members %r: an empty page with more", dev.sess, params)
            after = page[-1]["user"]
        got = [(m.get("user"), m.get("role"), m.get("joined_seq")) for m in members]
        want = sorted(((x, "owner" if x == g.owner else "member", j)
                       for x, j in g.members.items()), key=lambda t: t[0].encode())
        check(got == want, "%r: group.members of %s (pages of %d): %r, model %r",
              dev.sess, g.gid, lim, got, want)
    w.note("%r queries %s" % (dev.sess, g.gid))
    return True


OPS = [
    (op_send_direct, 20), (op_send_group, 20), (op_retry, 6), (op_admin_send, 3),
    (op_lost_reply, 2), (op_group_create, 2), (op_invite, 4), (op_kick, 3), (op_leave, 2),
    (op_open_join, 1.5), (op_dismiss, 0.3), (op_recall, 2), (op_offline, 4), (op_online, 5),
    (op_history, 6), (op_read, 4), (op_sync, 3), (op_ack, 5), (op_probe, 1.5), (op_burst, 6),
    (op_replace, 1), (op_admin_kick, 0.7), (op_restart, 0.4), (op_group_query, 2),
]


# ---------------------------------------------------------------------------
# The run


def final_phase(w):
    """Everybody resumes; every device holds what it may read; acked, nothing comes again."""
    w.opix += 1
    w.note("final: everybody online")
    for dev in w.devices:
        if dev.sess is None:
            w.login(dev)
    sessions = w.sessions()
    for s in sessions:
        w.ready(s)
    w.settle(sessions)
    for s in sessions:
        w.fill_gaps(s)
        dev = s.dev
        for cid, conv in w.convs.items():
            start = w.readable_start(dev.user, conv)
            if start is None:
                continue
            missing = [x for x in range(start, conv.last + 1) if x not in dev.store[cid]]
            check(not missing, "%r: after catch-up and history still misses %s %r",
                  s, cid, missing)
        w.sync(s)
    # every conversation, read in full by one member, equals the model's log
    for cid, conv in sorted(w.convs.items()):
        for s in sessions:
            start = w.readable_start(s.dev.user, conv)
            if start is not None:
                after = start - 1
                seen = []
                while True:
                    params = {"conv": cid, "after": after, "limit": 200}
                    msgs = w.check_history(s, params, w.ok(s, "history", **params))
                    seen += [m["seq"] for m in msgs]
                    if not msgs:
                        break
                    after = msgs[-1]["seq"]
                check(seen == list(range(start, conv.last + 1)), "history of %s: %r", cid, seen)
                break
    # ack everything, confirm, reconnect: the catch-up is empty (for current conversations)
    for dev in w.devices:
        w.close(dev, graceful=True, ack_frac=0.0)
    w.opix += 1
    for dev in w.devices:
        w.login(dev)
    sessions = w.sessions()
    w.settle(sessions)
    for s in sessions:
        for cid in w.current_convs(s.dev.user):
            check(not s.catch[cid], "%r: everything of %s acked (sync ack_seq %d), still pushed "
                  "%r again", s, cid, s.dev.ack_lo[cid], s.catch[cid])
    for s in sessions:
        s.conn.close()
        s.dev.sess = None


def run(seed, iters):
    rng = random.Random(seed)
    limit = rng.choice([3, 12, 200])
    with Server(shards=2, args=["--catchup-limit", str(limit), "--recall-window", "100000"]) as srv:
        w = World(srv, rng, limit)
        print("seed %d: %d ops, users %s, %d devices, catchup_limit %d"
              % (seed, iters, w.users, len(w.devices), limit), flush=True)
        try:
            for dev in w.devices:
                if rng.random() < 0.7:
                    w.login(dev)
            weights = [wt for _, wt in OPS]
            last_ping = time.monotonic()
            for i in range(iters):
                if time.monotonic() - last_ping > 10:
                    # heartbeat, as a client does (idle connections are closed)
                    for s in w.sessions():
                        s.conn.send({"op": "ping", "id": s.conn.new_id()})
                    last_ping = time.monotonic()
                w.opix += 1
                while True:
                    fn = rng.choices(OPS, weights)[0][0]
                    if fn(w):
                        w.stats[fn.__name__] += 1
                        break
                w.pump_all()
                if i % 40 == 39:
                    w.settle(w.sessions())
            final_phase(w)
        except BaseException:
            print("FAILED with RP_SEED=%d RP_ITERS=%d%s at op %d; the last operations:"
                  % (seed, iters, " RP_SPAN_LIMIT=1" if SPAN_LIMIT else "", w.opix))
            for line in w.log:
                print("   ", line)
            raise
        entries = sum(c.last for c in w.convs.values())
        print("seed %d: %d entries in %d conversations, %d groups; %s"
              % (seed, entries, len(w.convs), len(w.groups),
                 ", ".join("%s %d" % kv for kv in sorted(w.stats.items()))), flush=True)


def test_random_model():
    for seed in SEEDS:
        run(seed, ITERS)


if __name__ == "__main__":
    # 25 ms an operation (about 2 ms here), for slow and loaded machines
    rptest.main(timeout=max(300, ITERS * len(SEEDS) // 40))
