/*
 * Reads past a shard's read slots (engine/chat/io.h): the reads of logins
 * wait for a slot, bounded, and leave a quarter of the slots to the rest.
 * The slot bound is lowered to a few here.
 */
#include "harness.h"

#include "engine/chat/core.h"
#include "engine/chat/home.h"
#include "engine/chat/io.h"
#include "protocol/req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void set_reads_max(uint32_t n)
{
    for (unsigned sh = 0; sh < H_SHARDS; sh++)
        io_set_reads_max(&h_chat(sh)->io, n);
}

static void hold_reads(bool on)
{
    for (unsigned sh = 0; sh < H_SHARDS; sh++)
        h_hold_reads[sh] = on;
}

static uint32_t waiting(void)
{
    uint32_t n = 0;
    for (unsigned sh = 0; sh < H_SHARDS; sh++)
        n += h_chat(sh)->io.nwait;
    return n;
}

/* n user names of the form <prefix>NN whose home is shard `home` */
static void users_on(unsigned home, const char *prefix, int n, char out[][16])
{
    for (int i = 0, k = 0; k < n; i++) {
        snprintf(out[k], 16, "%s%02d", prefix, i);
        if (h_home(out[k]) == home)
            k++;
    }
}

/*
 * A wave of logins needs more reads than a shard has slots (lowered to 2
 * here): the reads past them wait for a slot instead of failing the logins.
 * Every user loads, every catch-up arrives whole and in order. A query's
 * read past the slots is refused instead.
 */
static void test_wave(void)
{
    enum { PEERS = 30 };
    char peer[16], cmid[16];
    int hub = h_hello("rph", "d", false);
    h_drain(hub);
    for (int i = 0; i < PEERS; i++) {
        snprintf(peer, sizeof(peer), "rp%02d", i);
        for (int j = 0; j < 2; j++) {
            snprintf(cmid, sizeof(cmid), "m%d", j);
            CHECK(h_is_ok(h_reply(hub, h_send_to(hub, peer, cmid, "x"))));
        }
    }
    h_close(hub);
    uint64_t waited = 0;
    for (unsigned sh = 0; sh < H_SHARDS; sh++) {
        waited += h_chat(sh)->io.waited;
        io_set_reads_max(&h_chat(sh)->io, 2);
    }
    int conns[PEERS];
    for (int i = 0; i < PEERS; i++) {
        snprintf(peer, sizeof(peer), "rp%02d", i);
        conns[i] = h_hello_nosettle(peer, "d", true);
    }
    hub = h_hello_nosettle("rph", "d2", true);
    h_settle();
    for (int i = 0; i < PEERS; i++) {
        CHECK(h_is_ok(h_next(conns[i])));
        for (uint64_t seq = 1; seq <= 2; seq++) {
            const msgpack_object *m = h_next(conns[i]);
            CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == seq);
        }
        CHECK(h_is_str(h_next(conns[i]), "op", "synced"));
        h_close(conns[i]);
    }
    CHECK(h_is_ok(h_next(hub)));
    uint64_t seen[PEERS] = {0};
    for (int k = 0; k < 2 * PEERS; k++) {
        const msgpack_object *m = h_next(hub);
        CHECK(h_is_str(m, "op", "msg"));
        const msgpack_object *cv = h_get(m, "conv");
        int i = atoi(cv->via.str.ptr + 4); /* "d:rpNN:rph" */
        CHECK(i >= 0 && i < PEERS && h_u(m, "seq") == seen[i] + 1);
        seen[i] = h_u(m, "seq");
    }
    CHECK(h_is_str(h_next(hub), "op", "synced"));
    /* a client's own queries do not wait: past the slots they are refused */
    h_hold_reads[h_home("rph")] = true;
    for (uint32_t id = 1; id <= 3; id++) {
        struct req r = h_req(OP_HISTORY, 80 + id);
        r.conv = strv_c("d:rp00:rph");
        h_request(hub, &r);
    }
    CHECK(h_is_err(h_reply(hub, 83), "unavailable"));
    h_release_reads();
    h_settle();
    CHECK(h_is_ok(h_reply(hub, 81)) && h_is_ok(h_reply(hub, 82)));
    h_close(hub);
    uint64_t waited_after = 0;
    for (unsigned sh = 0; sh < H_SHARDS; sh++) {
        waited_after += h_chat(sh)->io.waited;
        CHECK(h_chat(sh)->io.nwait == 0);
        io_set_reads_max(&h_chat(sh)->io, IO_READS_MAX);
    }
    CHECK(waited_after > waited);
}

/*
 * The reads of logins never take the last quarter of the slots: with 4 slots
 * and logins waiting, an online user's history still gets the fourth.
 */
static void test_reserve(void)
{
    int a = h_hello("rsa", "d", false);
    h_drain(a);
    CHECK(h_is_ok(h_reply(a, h_send_to(a, "rsb", "m1", "x"))));
    unsigned home = h_home("rsa");
    char names[6][16];
    users_on(home, "rsw", 6, names);
    set_reads_max(4);
    hold_reads(true);
    int conns[6];
    for (int i = 0; i < 6; i++)
        conns[i] = h_hello_nosettle(names[i], "d", false);
    h_settle();
    CHECK(h_chat(home)->io.used == 3 && h_chat(home)->io.nwait == 3);
    struct req r = h_req(OP_HISTORY, 50);
    r.conv = strv_c("d:rsa:rsb");
    h_request(a, &r);
    CHECK(h_reply(a, 50) == NULL); /* a slot, its read held: not refused */
    CHECK(h_chat(home)->io.used == 4);
    hold_reads(false);
    h_release_reads();
    h_settle();
    const msgpack_object *ok = h_reply(a, 50);
    CHECK(h_is_ok(ok) && h_get(ok, "msgs")->via.array.size == 1);
    for (int i = 0; i < 6; i++) {
        CHECK(h_is_ok(h_next(conns[i])));
        h_close(conns[i]);
    }
    h_close(a);
    set_reads_max(IO_READS_MAX);
}

/* A send whose conversation must be read while every slot of its owner is
 * taken is refused as unavailable (server busy), not as an internal error. */
static void test_send_busy(void)
{
    int a = h_hello("sba", "d", false);
    h_drain(a);
    unsigned owner = h_owner("d:sba:sbp");
    char names[1][16];
    users_on(owner, "sbw", 1, names);
    set_reads_max(1);
    hold_reads(true);
    int w = h_hello_nosettle(names[0], "d", false); /* takes the owner's slot */
    h_settle();
    CHECK(h_chat(owner)->io.used == 1);
    uint32_t id = h_send_to(a, "sbp", "m1", "x");
    CHECK(h_is_err(h_reply(a, id), "unavailable"));
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(h_is_ok(h_next(w)));
    CHECK(h_is_ok(h_reply(a, h_send_to(a, "sbp", "m1", "x"))));
    h_close(w);
    h_close(a);
    set_reads_max(IO_READS_MAX);
}

/* Past the bound of waiting bytes, a login's read is refused: the hello gets
 * unavailable, and the next one, with room again, goes through. */
static void test_wait_bound(void)
{
    unsigned home = h_home("wba");
    char names[2][16];
    users_on(home, "wbb", 2, names);
    set_reads_max(1);
    io_set_wait_bytes(&h_chat(home)->io, 1);
    hold_reads(true);
    int a = h_hello_nosettle(names[0], "d", false); /* takes the one slot */
    int b = h_hello_nosettle(names[1], "d", false); /* cannot wait */
    h_settle();
    CHECK(h_is_err(h_next(b), "unavailable"));
    io_set_wait_bytes(&h_chat(home)->io, IO_WAIT_BYTES); /* a's later reads wait */
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(h_is_ok(h_next(a)));
    h_close(b);
    b = h_hello(names[1], "d", false);
    CHECK(h_is_ok(h_next(b)));
    h_close(a);
    h_close(b);
    set_reads_max(IO_READS_MAX);
}

/* Sessions closed while their reads wait: the reads still run when admitted,
 * then everything they held is let go. */
static void test_close_while_waiting(void)
{
    enum { N = 12 };
    char u[16];
    int cs[N];
    set_reads_max(1);
    hold_reads(true);
    for (int i = 0; i < N; i++) {
        snprintf(u, sizeof(u), "cw%02d", i);
        cs[i] = h_hello_nosettle(u, "d", true);
    }
    h_settle();
    CHECK(waiting() > 0);
    for (int i = 0; i < N; i++)
        h_close(cs[i]);
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(waiting() == 0);
    for (unsigned sh = 0; sh < H_SHARDS; sh++)
        CHECK(h_chat(sh)->io.used == 0);
    for (int i = 0; i < N; i++) {
        snprintf(u, sizeof(u), "cw%02d", i);
        CHECK(home_user(h_chat(h_home(u)), strv_c(u)) == NULL);
    }
    set_reads_max(IO_READS_MAX);
}

/*
 * A session that closes while its own reads wait for a slot takes them out
 * of the queue: they never run, and what they held is let go at once. Here
 * the users are loaded (another device is online), so what each new session
 * waits for is the read of its device's cursors.
 */
static void test_close_drops_waiting_reads(void)
{
    enum { N = 12 };
    unsigned home = h_home("cdblk");
    char names[N][16];
    users_on(home, "cdu", N, names);
    int keep[N], late[N];
    for (int i = 0; i < N; i++) {
        keep[i] = h_hello(names[i], "keep", false);
        h_drain(keep[i]);
    }
    struct io *io = &h_chat(home)->io;
    uint64_t cancelled = io->cancelled;
    set_reads_max(1);
    hold_reads(true);
    int blk = h_hello_nosettle("cdblk", "d", false); /* its load takes the one slot */
    h_settle();
    for (int i = 0; i < N; i++)
        late[i] = h_hello_nosettle(names[i], "late", true);
    h_settle();
    uint32_t before = io->nwait;
    CHECK(before >= N);
    for (int i = 0; i < N; i++)
        h_close(late[i]);
    CHECK(io->nwait == before - N && io->cancelled == cancelled + N);
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(h_is_ok(h_next(blk)));
    CHECK(io->nwait == 0 && io->used == 0);
    /* the devices that stayed are served as before */
    CHECK(h_is_ok(h_reply(keep[0], h_send_to(keep[0], names[1], "c1", "x"))));
    const msgpack_object *m = h_next_op(keep[1], "msg");
    CHECK(m && h_u(m, "seq") == 1);
    for (int i = 0; i < N; i++)
        h_close(keep[i]);
    h_close(blk);
    set_reads_max(IO_READS_MAX);
}

/*
 * Every session of a user closes while its state loads: the load stops. Closed
 * before the conversation list is read, no conversation is read; closed after,
 * the reads still waiting for a slot are dropped. The next hello loads the
 * user afresh and is served whole.
 */
static void test_abandoned_load_stops(void)
{
    enum { N = 20 };
    const char *user = "abl";
    struct chat *hc = h_chat(h_home(user));
    int a = h_hello(user, "d0", false);
    h_drain(a);
    char peer[16];
    for (int i = 0; i < N; i++) {
        snprintf(peer, sizeof(peer), "ablp%02d", i);
        CHECK(h_is_ok(h_reply(a, h_send_to(a, peer, "m", "x"))));
    }
    h_close(a);
    h_settle();
    CHECK(home_user(hc, strv_c(user)) == NULL); /* not loaded */
    /* closed while its conversation list is being read */
    uint64_t abandoned = hc->stats.user_loads_abandoned, waited = hc->io.waited;
    set_reads_max(1);
    hold_reads(true);
    int b = h_hello_nosettle(user, "d1", false);
    h_settle();
    h_close(b);
    CHECK(hc->stats.user_loads_abandoned == abandoned + 1);
    CHECK(home_user(hc, strv_c(user)) == NULL); /* a later hello loads afresh */
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(hc->io.waited == waited); /* nothing queued behind the list: none read */
    CHECK(hc->io.used == 0 && hc->io.nwait == 0);
    /* closed once the conversations' reads wait for the one slot */
    uint64_t cancelled = hc->io.cancelled;
    b = h_hello_nosettle(user, "d1", false);
    /* the list (read by a storage thread), then a read per conversation: one
     * at a time, the others waiting */
    for (int i = 0; i < 10000 && hc->io.nwait < N / 2; i++) {
        h_step();
        usleep(500);
    }
    CHECK(hc->io.nwait >= N / 2);
    uint32_t nwait = hc->io.nwait;
    h_close(b);
    CHECK(hc->stats.user_loads_abandoned == abandoned + 2);
    CHECK(hc->io.cancelled == cancelled + nwait && hc->io.nwait == 0);
    h_settle();
    set_reads_max(IO_READS_MAX);
    /* loaded afresh: its state is whole */
    int c = h_hello(user, "d2", false);
    CHECK(h_is_ok(h_next(c)));
    struct req r = h_req(OP_SYNC, 7);
    h_request(c, &r);
    const msgpack_object *ok = h_reply(c, 7);
    const msgpack_object *convs = ok ? h_get(ok, "convs") : NULL;
    CHECK(convs && convs->type == MSGPACK_OBJECT_ARRAY && convs->via.array.size == N);
    h_close(c);
}

/* A waiting read that fails once admitted fails its login like any read:
 * the hello gets unavailable. */
static void test_fail_on_admit(void)
{
    enum { N = 6 };
    char u[16];
    int cs[N];
    set_reads_max(1);
    hold_reads(true);
    for (int i = 0; i < N; i++) {
        snprintf(u, sizeof(u), "fa%02d", i);
        cs[i] = h_hello_nosettle(u, "d", true);
    }
    h_settle();
    CHECK(waiting() > 0);
    h_fail_reads = 1000;
    h_fail_reads_cf = STG_CF_USERCONV;
    hold_reads(false);
    h_release_reads();
    h_settle();
    h_fail_reads = 0;
    int failed = 0;
    for (int i = 0; i < N; i++) {
        /* the read that held a shard's slot was submitted before the failures */
        const msgpack_object *m = h_next(cs[i]);
        CHECK(h_is_ok(m) || h_is_err(m, "unavailable"));
        failed += !h_is_ok(m);
        h_close(cs[i]);
    }
    CHECK(failed >= N - (int)H_SHARDS);
    CHECK(waiting() == 0);
    set_reads_max(IO_READS_MAX);
}

static uint32_t nid = 1000;

static const msgpack_object *group_req(int conn, int op, const char *gid, const char *user)
{
    struct strv who[1] = {strv_c(user ? user : "")};
    struct req r = h_req(op, ++nid);
    r.group = strv_c(gid);
    r.has_group = true;
    if (op == OP_GROUP_CREATE) {
        r.name = strv_c("G");
        r.has_name = true;
    }
    if (user) {
        r.users = who;
        r.nusers = 1;
    }
    h_request(conn, &r);
    return h_reply(conn, r.id);
}

/* The seqs of conv pushed to conn up to synced, in order, into seqs (max n). */
static uint32_t catchup_seqs(int conn, const char *conv, uint64_t *seqs, uint32_t n)
{
    uint32_t k = 0;
    const msgpack_object *m;
    while ((m = h_next(conn)) && !h_is_str(m, "op", "synced"))
        if (h_is_str(m, "op", "msg") && h_is_str(m, "conv", conv) && k < n)
            seqs[k++] = h_u(m, "seq");
    CHECK(m != NULL);
    return k;
}

/*
 * A group read in more parts than a catch-up reads ahead while the shard's
 * reads are backlogged: removed and invited back four times while offline,
 * the device's catch-up has five parts of one conversation, one past what it
 * reads ahead then. The parts still arrive whole and in seq order, and
 * catchup_limit still takes the newest of all of them.
 */
static void test_parts_past_the_busy_read_ahead(void)
{
    int o = h_hello("bpo", "d", false);
    h_drain(o);
    CHECK(h_is_ok(group_req(o, OP_GROUP_CREATE, "bpg", "bpu"))); /* 1 */
    int u = h_hello("bpu", "d", false);
    h_drain(u);
    h_ack(u, "g:bpg", 1);
    h_close(u);
    char cmid[8];
    for (int i = 0; i < 4; i++) {
        snprintf(cmid, sizeof(cmid), "m%d", i);
        CHECK(h_is_ok(h_reply(o, h_send_group(o, "bpg", cmid, "x")))); /* 2, 5, 8, 11 */
        CHECK(h_is_ok(group_req(o, OP_GROUP_KICK, "bpg", "bpu")));
        CHECK(h_is_ok(group_req(o, OP_GROUP_INVITE, "bpg", "bpu")));
    }
    CHECK(h_is_ok(h_reply(o, h_send_group(o, "bpg", "mz", "x")))); /* 14 */
    h_close(o);

    unsigned home = h_home("bpu");
    char names[16][16];
    users_on(home, "bpw", 16, names);
    /* each with a catch-up of its own, so reads keep coming behind bpu's */
    int x = h_hello("bpx", "d", false);
    h_drain(x);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 2; j++) {
            snprintf(cmid, sizeof(cmid), "w%d", j);
            CHECK(h_is_ok(h_reply(x, h_send_to(x, names[i], cmid, "x"))));
        }
    h_close(x);
    uint32_t limits[2] = {200, 3};
    for (int round = 0; round < 2; round++) {
        uint32_t saved = h_cfg.catchup_limit;
        h_cfg.catchup_limit = limits[round];
        uint64_t waited = h_chat(home)->io.waited;
        set_reads_max(2);
        hold_reads(true);
        char dev[8];
        snprintf(dev, sizeof(dev), "p%d", round);
        u = h_hello_nosettle("bpu", dev, true); /* a new device: from seq 1 on */
        int w[16];
        for (int i = 0; i < 16; i++)
            w[i] = h_hello_nosettle(names[i], "d", true);
        h_settle();
        hold_reads(false);
        h_release_reads();
        h_settle();
        CHECK(h_chat(home)->io.waited > waited); /* the reads were backlogged */
        CHECK(h_is_ok(h_next(u)));
        uint64_t seqs[32];
        uint32_t n = catchup_seqs(u, "g:bpg", seqs, 32);
        if (round == 0) {
            CHECK(n == 14);
            for (uint32_t i = 0; i < n && i < 14; i++)
                CHECK(seqs[i] == i + 1);
        } else {
            CHECK(n == 3 && seqs[0] == 12 && seqs[1] == 13 && seqs[2] == 14);
        }
        h_close(u);
        for (int i = 0; i < 16; i++)
            h_close(w[i]);
        set_reads_max(IO_READS_MAX);
        h_cfg.catchup_limit = saved;
    }
}

/* Stopped with reads waiting: what they hold is freed (the sanitizers check). */
static void test_stop_while_waiting(void)
{
    char u[16];
    set_reads_max(1);
    hold_reads(true);
    for (int i = 0; i < 12; i++) {
        snprintf(u, sizeof(u), "sw%02d", i);
        h_hello_nosettle(u, "d", true);
    }
    h_settle();
    CHECK(waiting() > 0);
    hold_reads(false);
    h_stop_abrupt();
    h_start(dir, true);
}

/*
 * A session that pipelines queries: at most HOME_QUERIES_MAX of them read at
 * once. The connection is held meanwhile, so its later requests (a sync
 * here, answered without a read) wait behind them in order, and every one is
 * answered once reads complete. Without the cap each query took a read slot,
 * so one connection could fill the shard's read queue ahead of everyone.
 */
static void test_query_cap(void)
{
    enum { N = 3 * HOME_QUERIES_MAX };
    int a = h_hello("qca", "d", false);
    h_drain(a);
    CHECK(h_is_ok(h_reply(a, h_send_to(a, "qcb", "m1", "x"))));
    unsigned home = h_home("qca");
    hold_reads(true);
    struct req r = h_req(OP_HISTORY, 0);
    r.conv = strv_c("d:qca:qcb");
    for (uint32_t i = 0; i < N; i++) {
        r.id = 100 + i;
        h_request_nosettle(a, &r);
    }
    struct req sy = h_req(OP_SYNC, 200);
    h_request(a, &sy);
    CHECK(h_chat(home)->io.used == HOME_QUERIES_MAX);
    CHECK(h_conn(a)->held && h_conn(a)->holds == 1);
    CHECK(h_reply(a, 200) == NULL); /* behind the held queries */
    hold_reads(false);
    h_release_reads();
    h_settle();
    for (uint32_t i = 0; i < N; i++) {
        const msgpack_object *ok = h_reply(a, 100 + i);
        CHECK(h_is_ok(ok) && h_get(ok, "msgs")->via.array.size == 1);
    }
    CHECK(h_is_ok(h_reply(a, 200)));
    CHECK(!h_conn(a)->held && h_chat(home)->io.used == 0);

    /* Closed while held: the held requests are dropped, nothing leaks. */
    hold_reads(true);
    for (uint32_t i = 0; i < N; i++) {
        r.id = 300 + i;
        h_request_nosettle(a, &r);
    }
    h_settle();
    CHECK(h_conn(a)->held && h_chat(home)->io.used == HOME_QUERIES_MAX);
    h_close(a);
    hold_reads(false);
    h_release_reads();
    h_settle();
    CHECK(h_chat(home)->io.used == 0);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_reads.%d", (int)getpid());
    h_start(dir, false);
    test_wave();
    test_reserve();
    test_send_busy();
    test_wait_bound();
    test_close_while_waiting();
    test_close_drops_waiting_reads();
    test_fail_on_admit();
    test_parts_past_the_busy_read_ahead();
    test_stop_while_waiting();
    test_query_cap();
    test_abandoned_load_stops();
    h_stop();
    return h_finish(dir);
}
