/* Direct messaging through the chat layer with a fake runtime and real storage:
 * send/ok/push, dedup (also across a restart), catch-up, ack, gapless seqs
 * when a write fails, read/sync, history, recall. */
#include "harness.h"

#include "engine/chat/home.h"
#include "engine/chat/values.h"

#include "protocol/req.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void test_send_push(void)
{
    int a1 = h_hello("alice", "a1", true), a2 = h_hello("alice", "a2", true);
    int b1 = h_hello("bob", "b1", true);
    CHECK(h_is_ok(h_next(a1)) && h_is_str(h_next(a1), "op", "synced"));
    CHECK(h_is_ok(h_next(b1)) && h_is_str(h_next(b1), "op", "synced"));
    h_drain(a2);
    uint32_t id = h_send_to(a1, "bob", "c1", "hi");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == 1 && h_is_str(ok, "conv", "d:alice:bob"));
    CHECK(h_u(ok, "ts") == h_now);
    CHECK(!h_get(ok, "dup"));
    const msgpack_object *m = h_next(b1);
    CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == 1 && h_is_str(m, "from", "alice") &&
          h_is_str(m, "dev", "a1") && h_is_str(m, "body", "hi") && h_is_str(m, "cmid", "c1") &&
          h_is_str(m, "type", "text"));
    m = h_next(a2);
    CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == 1);
    CHECK(h_next(a1) == NULL); /* not to the sending device */

    /* dedup: same cmid, no new entry, no push */
    id = h_send_to(a1, "bob", "c1", "hi again");
    ok = h_reply(a1, id);
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == 1 && h_get(ok, "dup"));
    CHECK(h_next(b1) == NULL);
    id = h_send_to(a1, "bob", "c2", "second");
    CHECK(h_u(h_reply(a1, id), "seq") == 2);
    CHECK(h_u(h_next(b1), "seq") == 2);
    CHECK(h_u(h_next(a2), "seq") == 2);
    /* bob answers: same conversation */
    id = h_send_to(b1, "alice", "b-c1", "yo");
    ok = h_reply(b1, id);
    CHECK(h_is_str(ok, "conv", "d:alice:bob") && h_u(ok, "seq") == 3);
    CHECK(h_u(h_next(a1), "seq") == 3 && h_u(h_next(a2), "seq") == 3);
    h_close(a1);
    h_close(a2);
    h_close(b1);
}

static void test_dedup_restart(void)
{
    h_stop();
    h_start(dir, true);
    int a1 = h_hello("alice", "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, "bob", "c2", "again");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == 2 && h_get(ok, "dup"));
    id = h_send_to(a1, "bob", "c4", "new");
    CHECK(h_u(h_reply(a1, id), "seq") == 4); /* the counter survived too */
    h_close(a1);
}

static void test_catchup(void)
{
    /* bob was offline for seq 4; his device acked nothing yet */
    int b1 = h_hello("bob", "b1", true);
    CHECK(h_is_ok(h_next(b1)));
    for (uint64_t s = 1; s <= 4; s++) {
        const msgpack_object *m = h_next(b1);
        CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == s);
    }
    CHECK(h_is_str(h_next(b1), "op", "synced"));
    struct req ack = h_req(OP_ACK, 0);
    ack.has_id = false;
    ack.conv = strv_c("d:alice:bob");
    ack.seq = 3;
    h_request(b1, &ack);
    ack.seq = 2; /* never backwards */
    h_request(b1, &ack);
    CHECK(h_next(b1) == NULL); /* ack has no reply */
    h_close(b1);
    b1 = h_hello("bob", "b1", true);
    CHECK(h_is_ok(h_next(b1)));
    CHECK(h_u(h_next(b1), "seq") == 4);
    CHECK(h_is_str(h_next(b1), "op", "synced"));
    h_close(b1);
    /* another device of bob has its own cursor */
    int b2 = h_hello("bob", "b2", true);
    CHECK(h_is_ok(h_next(b2)));
    CHECK(h_u(h_next(b2), "seq") == 1);
    h_close(b2);

    /* catchup_limit: the newest ones, oldest first */
    int a1 = h_hello("alice", "a1", false);
    h_drain(a1);
    char cmid[32];
    for (int i = 0; i < 6; i++) {
        snprintf(cmid, sizeof(cmid), "lim%d", i);
        h_send_to(a1, "bob", cmid, "x");
    }
    h_cfg.catchup_limit = 3;
    b1 = h_hello("bob", "b1", true);
    CHECK(h_is_ok(h_next(b1)));
    CHECK(h_u(h_next(b1), "seq") == 8);
    CHECK(h_u(h_next(b1), "seq") == 9);
    CHECK(h_u(h_next(b1), "seq") == 10);
    CHECK(h_is_str(h_next(b1), "op", "synced"));
    h_cfg.catchup_limit = 200;
    /* live after synced */
    h_send_to(a1, "bob", "live1", "x");
    CHECK(h_u(h_next(b1), "seq") == 11);
    /* resume false: no catch-up, no synced, live at once */
    int b3 = h_hello("bob", "b3", false);
    CHECK(h_is_ok(h_next(b3)));
    CHECK(h_next(b3) == NULL);
    h_send_to(a1, "bob", "live2", "x");
    CHECK(h_u(h_next(b3), "seq") == 12);
    CHECK(h_u(h_next(b1), "seq") == 12);
    h_close(b3);
    h_close(b1);
    h_close(a1);
}

/*
 * A device cursor stored past the conversation's end (acks were not bounded
 * before) counts up to the end: the entries after it come, live and in the
 * next catch-up, and the device's next ack rewrites the stored cursor.
 */
static void test_stored_ack_past_end(void)
{
    int a = h_hello("sa_a", "d", false);
    h_drain(a);
    for (int i = 0; i < 3; i++) {
        char cmid[16];
        snprintf(cmid, sizeof(cmid), "p%d", i);
        h_send_to(a, "sa_b", cmid, "x");
    }
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    CHECK(stg_key_cursor(&k, "sa_b", 4, "d", 1, "d:sa_a:sa_b", 11) == 0);
    CHECK(val_u64_encode(&v, 100) == 0);
    h_put_raw(STG_CF_CURSOR, k.data, k.len, v.data, v.len);
    buf_deinit(&k);
    buf_deinit(&v);
    int b = h_hello("sa_b", "d", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_is_str(h_next(b), "op", "synced"));
    h_send_to(a, "sa_b", "p3", "x");
    CHECK(h_u(h_next(b), "seq") == 4);
    h_ack(b, "d:sa_a:sa_b", 4);
    h_close(b);
    h_send_to(a, "sa_b", "p4", "x");
    b = h_hello("sa_b", "d", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_u(h_next(b), "seq") == 5);
    CHECK(h_is_str(h_next(b), "op", "synced"));
    h_close(b);
    h_close(a);
}

/*
 * A catch-up that could not read one of its conversations ends the session
 * without `synced` (it would claim entries the device does not have); the
 * next resume gets them all. An ack of the largest seq, or a history `after`
 * it, means nothing after: it does not wrap around to the start.
 */
static void test_catchup_failures(void)
{
    int a = h_hello("cfa", "d", false), c2 = h_hello("cfc", "d", false);
    h_drain(a);
    h_drain(c2);
    CHECK(h_is_ok(h_reply(a, h_send_to(a, "cfb", "x1", "from a"))));
    CHECK(h_is_ok(h_reply(c2, h_send_to(c2, "cfb", "x2", "from c"))));
    h_fail_reads = 1;
    h_fail_reads_cf = STG_CF_LOG;
    int b = h_hello("cfb", "d", true);
    CHECK(h_fail_reads == 0);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_count_op(b, "synced") == 0 && !h_conn(b)->open);
    b = h_hello("cfb", "d", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_count_op(b, "msg") == 2 && h_count_op(b, "synced") == 1);
    h_drain(b);
    h_ack(b, "d:cfa:cfb", UINT64_MAX);
    h_close(b);
    b = h_hello("cfb", "d", true);
    CHECK(h_is_ok(h_next(b)));
    const msgpack_object *m = h_next(b);
    CHECK(h_is_str(m, "op", "msg") && h_is_str(m, "conv", "d:cfb:cfc"));
    CHECK(h_is_str(h_next(b), "op", "synced"));
    struct req r = h_req(OP_HISTORY, 70);
    r.conv = strv_c("d:cfa:cfb");
    r.after = UINT64_MAX;
    r.has_after = true;
    h_request(b, &r);
    const msgpack_object *ok = h_reply(b, 70);
    CHECK(h_is_ok(ok) && h_get(ok, "msgs")->via.array.size == 0);
    h_close(a);
    h_close(b);
    h_close(c2);
}

/* A login that does not take its catch-up (its queue stays full) holds the
 * conversation being pushed and, of what was read ahead, no more than
 * outbound_limit bytes (it held all 32 conversations read ahead, about 200 MB
 * a session with large entries); once it drains, everything arrives. */
static void test_catchup_memory_bounded(void)
{
    enum { NCONV = 36, PER = 5, BODY = 16000 };
    char peer[16], cmid[16], body[BODY + 1];
    memset(body, 'b', BODY);
    body[BODY] = 0;
    int b = h_hello("cmb", "d", false);
    h_drain(b);
    for (int i = 0; i < NCONV; i++) {
        snprintf(peer, sizeof(peer), "cm%02d", i);
        for (int j = 0; j < PER; j++) {
            snprintf(cmid, sizeof(cmid), "m%d", j);
            CHECK(h_is_ok(h_reply(b, h_send_to(b, peer, cmid, body))));
        }
    }
    h_close(b);
    uint32_t saved = h_cfg.outbound_limit;
    h_cfg.outbound_limit = 64 * 1024;
    struct chat *home = h_chat(h_home("cmb"));
    h_congest_every = 1; /* every entry finds the queue full: nothing is taken */
    b = h_hello("cmb", "d2", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_next(b) == NULL);
    uint64_t part = (uint64_t)PER * BODY, held = chat_stats_get(home)->catchup_held_bytes;
    CHECK(held >= part);                                   /* the conversation being pushed */
    CHECK(held <= h_cfg.outbound_limit + part + PER * 64); /* and values only */
    h_congest_every = 0;
    while (h_drained())
        ;
    uint32_t seen[NCONV] = {0};
    for (int k = 0; k < NCONV * PER; k++) {
        const msgpack_object *m = h_next(b);
        CHECK(m && h_is_str(m, "op", "msg"));
        if (!m)
            break;
        int i = atoi(h_get(m, "conv")->via.str.ptr + 4); /* "d:cmNN:cmb" */
        CHECK(i >= 0 && i < NCONV && h_u(m, "seq") == seen[i] + 1u);
        if (i >= 0 && i < NCONV)
            seen[i]++;
    }
    CHECK(h_is_str(h_next(b), "op", "synced"));
    for (int i = 0; i < NCONV; i++)
        CHECK(seen[i] == PER);
    CHECK(chat_stats_get(home)->catchup_held_bytes == 0);
    h_cfg.outbound_limit = saved;
    h_close(b);
}

/* A catch-up over more conversations than are read at once: all of them,
 * each in seq order, then synced. */
static void test_catchup_windows(void)
{
    char peer[16], cmid[16];
    int b = h_hello("cwb", "d", false);
    h_drain(b);
    for (int i = 0; i < 40; i++) {
        snprintf(peer, sizeof(peer), "cw%02d", i);
        for (int j = 0; j < 2; j++) {
            snprintf(cmid, sizeof(cmid), "m%d", j);
            CHECK(h_is_ok(h_reply(b, h_send_to(b, peer, cmid, "x"))));
        }
    }
    h_close(b);
    for (int i = 0; i < 40; i++) {
        snprintf(peer, sizeof(peer), "cw%02d", i);
        int p = h_hello(peer, "d", true);
        CHECK(h_is_ok(h_next(p)));
        for (uint64_t seq = 1; seq <= 2; seq++) {
            const msgpack_object *m = h_next(p);
            CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == seq);
        }
        CHECK(h_is_str(h_next(p), "op", "synced"));
        h_close(p);
    }
    /* the sender's other device: 40 conversations to catch up at once */
    b = h_hello("cwb", "d2", true);
    CHECK(h_is_ok(h_next(b)));
    uint64_t seen[40] = {0};
    for (int k = 0; k < 80; k++) {
        const msgpack_object *m = h_next(b);
        CHECK(h_is_str(m, "op", "msg"));
        const msgpack_object *cv = h_get(m, "conv");
        int i = atoi(cv->via.str.ptr + 4); /* "d:cwNN:cwb" */
        CHECK(i >= 0 && i < 40 && h_u(m, "seq") == seen[i] + 1);
        seen[i] = h_u(m, "seq");
    }
    CHECK(h_is_str(h_next(b), "op", "synced"));
    for (int i = 0; i < 40; i++)
        CHECK(seen[i] == 2);
    h_close(b);
    /* and paused again and again by a congested connection */
    h_congest_every = 3;
    b = h_hello("cwb", "d3", true);
    for (int k = 0; k < 1000 && h_drained(); k++)
        ;
    h_congest_every = 0;
    CHECK(h_is_ok(h_next(b)));
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < 80; k++) {
        const msgpack_object *m = h_next(b);
        CHECK(h_is_str(m, "op", "msg"));
        const msgpack_object *cv = h_get(m, "conv");
        int i = atoi(cv->via.str.ptr + 4);
        CHECK(i >= 0 && i < 40 && h_u(m, "seq") == seen[i] + 1);
        seen[i] = h_u(m, "seq");
    }
    CHECK(h_is_str(h_next(b), "op", "synced"));
    CHECK(h_next(b) == NULL);
    h_close(b);
}

/* A session whose hello is not answered yet (its user is loading) gets no
 * push before its `ok`: here a read receipt of its peer. */
static void test_no_push_before_ok(void)
{
    int a = h_hello("poa", "d", false), b = h_hello("pob", "d", false);
    h_drain(a);
    h_drain(b);
    uint32_t id = h_send_to(b, "poa", "m1", "x");
    uint64_t seq = h_u(h_reply(b, id), "seq");
    h_close(b);
    unsigned hb = h_home("pob");
    h_hold_reads[hb] = true;
    b = h_hello_nosettle("pob", "d", false);
    for (int i = 0; i < 4; i++)
        h_step();
    struct req r = h_req(OP_READ, 90);
    r.conv = strv_c("d:poa:pob");
    r.seq = seq;
    h_request(a, &r);
    CHECK(h_is_ok(h_reply(a, 90)));
    h_release_reads();
    CHECK(h_is_ok(h_next(b)));
    h_close(a);
    h_close(b);
}

static void test_gapless(void)
{
    int a1 = h_hello("alice", "a1", false), b1 = h_hello("bob", "b1", false);
    h_drain(a1);
    h_drain(b1);
    h_fail_writes = 1;
    uint32_t id = h_send_to(a1, "bob", "fail1", "lost");
    CHECK(h_is_err(h_reply(a1, id), "unavailable"));
    CHECK(h_next(b1) == NULL); /* nothing visible */
    id = h_send_to(a1, "bob", "ok13", "kept");
    CHECK(h_u(h_reply(a1, id), "seq") == 13);
    /* the failed cmid was not recorded: retrying it is a fresh send */
    id = h_send_to(a1, "bob", "fail1", "retry");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(h_u(ok, "seq") == 14 && !h_get(ok, "dup"));
    CHECK(h_u(h_next(b1), "seq") == 13 && h_u(h_next(b1), "seq") == 14);
    h_close(a1);
    h_close(b1);
}

/*
 * Failed writes with other work queued or in flight.
 * write_pipeline 1: a send that comes while a batch is in flight waits
 * unstaged, and when that batch fails it takes the seq given back.
 * write_pipeline 16: each send is a batch of its own, all in flight at once;
 * they complete in order, and when one fails, those after it fail too (their
 * seqs followed its) while those before it stand; the next send takes the
 * first seq given back.
 */
static void test_gapless_pipelined(void)
{
    int p1 = h_hello("pia", "p1", false), q1 = h_hello("quinn", "q1", false);
    h_drain(p1);
    h_drain(q1);
    unsigned osh = h_owner("d:pia:quinn");
    char cmid[16];
    uint32_t id[3];
    h_hold_writes = true;
    id[0] = h_send_to(p1, "quinn", "pq0", "x");
    id[1] = h_send_to(p1, "quinn", "pq1", "x");
    CHECK(h_held_writes(osh) == 1); /* the second waits for the first */
    h_release_writes();
    CHECK(h_u(h_reply(p1, id[0]), "seq") == 1 && h_u(h_reply(p1, id[1]), "seq") == 2);
    h_drain(q1);
    h_hold_writes = true;
    id[0] = h_send_to(p1, "quinn", "pq2", "lost");
    h_fail_held_write(osh, 0);
    id[1] = h_send_to(p1, "quinn", "pq3", "kept");
    CHECK(h_held_writes(osh) == 1);
    h_release_writes();
    CHECK(h_is_err(h_reply(p1, id[0]), "unavailable"));
    const msgpack_object *r = h_reply(p1, id[1]);
    CHECK(h_is_ok(r) && h_u(r, "seq") == 3);
    CHECK(h_u(h_next_op(q1, "msg"), "seq") == 3 && h_next_op(q1, "msg") == NULL);

    h_cfg.write_pipeline = 16;
    uint64_t next = 4;
    /* the batch that fails: none, the first, the second */
    for (int round = 0; round < 3; round++) {
        int fail = round - 1;
        h_hold_writes = true;
        for (int i = 0; i < 3; i++) {
            snprintf(cmid, sizeof(cmid), "pp%d.%d", round, i);
            id[i] = h_send_to(p1, "quinn", cmid, "x");
            CHECK(h_held_writes(osh) == i + 1); /* a batch of its own, in flight */
        }
        CHECK(h_next(p1) == NULL && h_next(q1) == NULL); /* nothing durable yet */
        if (fail >= 0)
            h_fail_held_write(osh, fail);
        h_release_writes();
        uint64_t first = next;
        for (int i = 0; i < 3; i++) {
            r = h_reply(p1, id[i]);
            if (fail < 0 || i < fail)
                CHECK(h_is_ok(r) && h_u(r, "seq") == next++);
            else
                CHECK(h_is_err(r, "unavailable"));
        }
        for (uint64_t q = first; q < next; q++)
            CHECK(h_u(h_next_op(q1, "msg"), "seq") == q);
        CHECK(h_next_op(q1, "msg") == NULL);
    }
    /* the seqs of the failed sends are handed out again, and their cmids are new */
    uint32_t ok = h_send_to(p1, "quinn", "pp2.1", "retry");
    r = h_reply(p1, ok);
    CHECK(h_is_ok(r) && h_u(r, "seq") == next && !h_get(r, "dup"));
    CHECK(h_u(h_next_op(q1, "msg"), "seq") == next++);
    /* a submit refused (storage queue full) behind one in flight stays staged
     * and is retried. Rounds: 0, refused until the one ahead has failed: it
     * fails too, unsubmitted; 1, taken after a few refusals, then the one
     * ahead fails: storage fails it; 2, the one ahead succeeds: it follows */
    for (int round = 0; round < 3; round++) {
        h_hold_writes = true;
        snprintf(cmid, sizeof(cmid), "pf%d.0", round);
        id[0] = h_send_to(p1, "quinn", cmid, "x");
        CHECK(h_held_writes(osh) == 1);
        h_refuse_writes = round == 0 ? 1000000 : 3;
        snprintf(cmid, sizeof(cmid), "pf%d.1", round);
        id[1] = h_send_to(p1, "quinn", cmid, "x");
        CHECK(h_held_writes(osh) == (round == 0 ? 1 : 2));
        if (round < 2)
            h_fail_held_write(osh, 0);
        h_release_writes();
        h_refuse_writes = 0;
        h_settle();
        if (round < 2) {
            CHECK(h_is_err(h_reply(p1, id[0]), "unavailable"));
            CHECK(h_is_err(h_reply(p1, id[1]), "unavailable"));
        } else {
            CHECK(h_u(h_reply(p1, id[0]), "seq") == next);
            CHECK(h_u(h_reply(p1, id[1]), "seq") == next + 1);
            CHECK(h_u(h_next_op(q1, "msg"), "seq") == next);
            CHECK(h_u(h_next_op(q1, "msg"), "seq") == next + 1);
        }
        CHECK(h_next_op(q1, "msg") == NULL);
    }
    /* cursors: an older ack whose batch fails is not put back over a newer
     * one in flight behind it (that batch, holding no seqs, is not failed) */
    unsigned qh = h_home("quinn");
    h_hold_writes = true;
    for (uint64_t a = 3; a <= 5; a += 2) {
        h_ack(q1, "d:pia:quinn", a);
    }
    CHECK(h_held_writes(qh) == 2);
    h_fail_held_write(qh, 0);
    h_release_writes();
    h_cfg.write_pipeline = 1;
    h_close(p1);
    h_close(q1);
    h_stop(); /* what storage holds */
    h_start(dir, true);
    q1 = h_hello("quinn", "q1", false);
    h_drain(q1);
    struct req sy = h_req(OP_SYNC, 60);
    h_request(q1, &sy);
    const msgpack_object *convs = h_get(h_reply(q1, 60), "convs");
    bool seen = false;
    for (uint32_t i = 0; convs && i < convs->via.array.size; i++) {
        if (h_is_str(&convs->via.array.ptr[i], "conv", "d:pia:quinn")) {
            CHECK(h_u(&convs->via.array.ptr[i], "ack_seq") == 5);
            seen = true;
        }
    }
    CHECK(seen);
    h_close(q1);
}

/*
 * write_pipeline 16, a batch without seqs (the recipient's ack, on the same
 * shard) in flight between two sends' batches: when the first send's batch
 * fails, the second's still fails (the ack's batch does not break the chain),
 * so the seqs handed out again are never written twice.
 */
static void test_fence_across_other_rows(void)
{
    char x[32] = "", conv[64] = "";
    for (int i = 0; i < 200 && !*x; i++) {
        snprintf(x, sizeof(x), "sx%d", i);
        snprintf(conv, sizeof(conv), "d:sa:%s", x); /* "sa" < "sx..." */
        if (h_home(x) != h_owner(conv))
            x[0] = 0;
    }
    CHECK(*x);
    unsigned osh = h_owner(conv);
    int a = h_hello("sa", "d", false), b = h_hello(x, "d", false);
    h_drain(a);
    h_drain(b);
    uint32_t id0 = h_send_to(a, x, "s0", "zero");
    CHECK(h_u(h_reply(a, id0), "seq") == 1);
    CHECK(h_u(h_next_op(b, "msg"), "seq") == 1);
    h_cfg.write_pipeline = 16;
    h_hold_writes = true;
    uint32_t ida = h_send_to(a, x, "sA", "A");
    int first = h_held_writes(osh);
    struct req ak = h_req(OP_ACK, 0);
    ak.has_id = false;
    ak.conv = strv_c(conv);
    ak.seq = 1;
    h_request(b, &ak);
    CHECK(h_held_writes(osh) == first + 1); /* the cursor, a batch of its own */
    uint32_t idc = h_send_to(a, x, "sC", "C");
    CHECK(h_held_writes(osh) == first + 2);
    h_fail_held_write(osh, first - 1);
    h_release_writes();
    CHECK(h_is_err(h_reply(a, ida), "unavailable"));
    CHECK(h_is_err(h_reply(a, idc), "unavailable"));
    h_cfg.write_pipeline = 1;
    uint32_t idd = h_send_to(a, x, "sD", "D"), ide = h_send_to(a, x, "sE", "E");
    CHECK(h_u(h_reply(a, idd), "seq") == 2 && h_u(h_reply(a, ide), "seq") == 3);
    CHECK(h_u(h_next_op(b, "msg"), "seq") == 2 && h_u(h_next_op(b, "msg"), "seq") == 3);
    CHECK(h_next_op(b, "msg") == NULL);
    struct req hr = h_req(OP_HISTORY, 61);
    hr.conv = strv_c(conv);
    h_request(a, &hr);
    const msgpack_object *msgs = h_get(h_reply(a, 61), "msgs");
    const char *want[] = {"zero", "D", "E"};
    CHECK(msgs && msgs->via.array.size == 3);
    for (uint32_t i = 0; msgs && i < msgs->via.array.size && i < 3; i++) {
        CHECK(h_u(&msgs->via.array.ptr[i], "seq") == i + 1);
        CHECK(h_is_str(&msgs->via.array.ptr[i], "body", want[i]));
    }
    h_close(a);
    h_close(b);
}

/* A friend op of conn on user; settled unless it is sent without waiting. */
static void friend_op(int conn, int op, uint32_t id, const char *user, bool settle)
{
    struct req r = h_req(op, id);
    r.user = strv_c(user);
    if (settle)
        h_request(conn, &r);
    else
        h_request_nosettle(conn, &r);
}

/* A friend op whose caller side is written and whose peer side fails (it
 * waits for a retry at a tick). */
static void friend_op_peer_fails(int conn, int op, uint32_t id, const char *user)
{
    h_hold_writes = true;
    friend_op(conn, op, id, user, true);
    h_fail_writes = 1; /* the next submit: the peer's side */
    h_release_writes();
    CHECK(h_fail_writes == 0);
}

/* Stop (as a crash: nothing in flight finishes) and, a second later, start
 * again on the same storage. */
static void restart_later(bool crash)
{
    if (crash)
        h_stop_abrupt();
    else
        h_stop();
    h_now += 1000;
    h_start(dir, true);
}

static uint32_t friend_count(int conn, uint32_t id, const char *field)
{
    struct req r = h_req(OP_FRIEND_LIST, id);
    h_request(conn, &r);
    const msgpack_object *a = h_get(h_reply(conn, id), field);
    CHECK(a && a->type == MSGPACK_OBJECT_ARRAY);
    return a ? a->via.array.size : 99;
}

/*
 * A write that fails does not take unrelated work with it: the peer's side of
 * a friend request, staged on the peer's home while a failing batch of that
 * shard is in flight, is written in the next batch and is there after a
 * restart.
 */
static void test_friend_beside_failure(void)
{
    const char *peer = "fpeer";
    unsigned ph = h_home(peer);
    char other[32] = "", zu[32] = "", conv[96] = "";
    for (int i = 0; i < 100 && !*other; i++) {
        snprintf(other, sizeof(other), "fsnd%d", i);
        if (h_home(other) == ph)
            other[0] = 0;
    }
    /* a conversation owned by the peer's home shard */
    for (int i = 0; i < 200 && !*conv; i++) {
        snprintf(zu, sizeof(zu), "fz%d", i);
        snprintf(conv, sizeof(conv), "d:fy:%s", zu); /* "fy" < "fz..." */
        if (h_owner(conv) != ph)
            conv[0] = 0;
    }
    CHECK(*other && *conv);
    int y = h_hello("fy", "d", false), z = h_hello(zu, "d", false);
    int o = h_hello(other, "d", false), pp = h_hello(peer, "d", false);
    h_drain(y);
    h_drain(z);
    h_drain(o);
    h_drain(pp);
    h_hold_writes = true;
    uint32_t s = h_send_to(y, zu, "fx1", "x");
    CHECK(h_held_writes(ph) == 1);
    h_fail_held_write(ph, 0);
    friend_op(o, OP_FRIEND_REQUEST, 9, peer, true);
    h_release_writes();
    CHECK(h_is_err(h_reply(y, s), "unavailable"));
    CHECK(h_is_ok(h_reply(o, 9)));
    CHECK(h_is_str(h_next_op(pp, "friend"), "event", "request"));
    h_close(y);
    h_close(z);
    h_close(o);
    h_close(pp);
    h_stop();
    h_start(dir, true);
    pp = h_hello(peer, "d2", false);
    h_drain(pp);
    CHECK(friend_count(pp, 10, "requests") == 1);
    h_close(pp);
}

static void test_read_sync(void)
{
    int a1 = h_hello("alice", "a1", false), a2 = h_hello("alice", "a2", false);
    int b1 = h_hello("bob", "b1", false);
    h_drain(a1);
    h_drain(a2);
    h_drain(b1);
    struct req r = h_req(OP_SYNC, 50);
    h_request(b1, &r);
    const msgpack_object *ok = h_reply(b1, 50);
    const msgpack_object *convs = h_get(ok, "convs");
    CHECK(convs && convs->type == MSGPACK_OBJECT_ARRAY && convs->via.array.size == 1);
    const msgpack_object *e = &convs->via.array.ptr[0];
    CHECK(h_is_str(e, "conv", "d:alice:bob") && h_u(e, "last_seq") == 14);
    CHECK(h_u(e, "read_seq") == 3 && h_u(e, "unread") == 11); /* bob sent seq 3 */
    CHECK(h_u(e, "ack_seq") == 3);                            /* acked in test_catchup */
    r = h_req(OP_READ, 51);
    r.conv = strv_c("d:alice:bob");
    r.seq = 1000; /* clamped to last_seq */
    h_request(b1, &r);
    CHECK(h_is_ok(h_reply(b1, 51)));
    const msgpack_object *p = h_next(a1);
    CHECK(h_is_str(p, "op", "read") && h_is_str(p, "user", "bob") && h_u(p, "seq") == 14);
    CHECK(h_is_str(h_next(a2), "op", "read"));
    r = h_req(OP_SYNC, 52);
    h_request(b1, &r);
    e = &h_get(h_reply(b1, 52), "convs")->via.array.ptr[0];
    CHECK(h_u(e, "read_seq") == 14 && h_u(e, "unread") == 0);
    /* alice's read cursor moved with her sends (to 14) */
    r = h_req(OP_SYNC, 53);
    h_request(a1, &r);
    e = &h_get(h_reply(a1, 53), "convs")->via.array.ptr[0];
    CHECK(h_u(e, "read_seq") == 14);
    h_close(a1);
    h_close(a2);
    h_close(b1);
}

static bool cursor_written(const char *user, const char *dev, const char *conv)
{
    struct buf k;
    buf_init(&k);
    CHECK(stg_key_cursor(&k, user, strlen(user), dev, strlen(dev), conv, strlen(conv)) == 0);
    bool has = h_has_raw(STG_CF_CURSOR, k.data, k.len);
    buf_deinit(&k);
    return has;
}

/* The entry of conv in the reply to a sync made on conn. */
static const msgpack_object *sync_conv(int conn, uint32_t id, const char *conv)
{
    struct req r = h_req(OP_SYNC, id);
    h_request(conn, &r);
    const msgpack_object *convs = h_get(h_reply(conn, id), "convs");
    for (uint32_t i = 0; convs && i < convs->via.array.size; i++)
        if (h_is_str(&convs->via.array.ptr[i], "conv", conv))
            return &convs->via.array.ptr[i];
    return NULL;
}

/*
 * With cursor_delay_ms, a moved cursor waits that long for its write, and
 * the moves of that while share it: neither an ack nor the read cursor a
 * send moves is written before, both are once it has passed; a new session
 * meanwhile starts from the newest values; a stopping chat writes what waits
 * at once, which a restart then finds.
 */
static void test_cursor_delay(void)
{
    const char *conv = "d:cd_a:cd_b";
    h_cfg.cursor_delay_ms = 1000;
    int a = h_hello("cd_a", "d", false), b = h_hello("cd_b", "d", false);
    h_drain(a);
    h_drain(b);
    uint64_t t0 = h_now;
    h_send_to(a, "cd_b", "c0", "x");
    h_send_to(a, "cd_b", "c1", "x");
    h_ack(b, conv, 1);
    h_ack(b, conv, 2);
    int b2 = h_hello("cd_b", "d2", false); /* another device: a cursor of its own */
    h_ack(b2, conv, 1);
    CHECK(!cursor_written("cd_b", "d", conv));
    CHECK(!cursor_written("cd_a", VAL_READ_DEVICE, conv));
    h_close(b);
    h_close(b2);
    b = h_hello("cd_b", "d", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_is_str(h_next(b), "op", "synced")); /* nothing past ack 2 */
    b2 = h_hello("cd_b", "d2", true);
    CHECK(h_is_ok(h_next(b2)));
    CHECK(h_u(h_next(b2), "seq") == 2); /* past its own ack 1 */
    CHECK(h_is_str(h_next(b2), "op", "synced"));
    h_close(b2);
    const msgpack_object *e = sync_conv(a, 70, conv);
    CHECK(e && h_u(e, "read_seq") == 2 && h_u(e, "unread") == 0);
    h_now = t0 + 999;
    h_settle();
    CHECK(!cursor_written("cd_b", "d", conv));
    h_now = t0 + 1000;
    h_settle();
    CHECK(cursor_written("cd_b", "d", conv));
    CHECK(cursor_written("cd_a", VAL_READ_DEVICE, conv));
    /* the next moves wait afresh; a stop writes them */
    h_send_to(a, "cd_b", "c2", "x");
    CHECK(h_u(h_next_op(b, "msg"), "seq") == 3);
    h_ack(b, conv, 3);
    struct req rd = h_req(OP_READ, 71);
    rd.conv = strv_c(conv);
    rd.seq = 3;
    h_request(b, &rd);
    CHECK(h_is_ok(h_reply(b, 71)));
    CHECK(!cursor_written("cd_b", VAL_READ_DEVICE, conv));
    h_close(a);
    h_close(b);
    h_stop();
    h_start(dir, true);
    h_cfg.cursor_delay_ms = 0;
    a = h_hello("cd_a", "d", true);
    b = h_hello("cd_b", "d", true);
    CHECK(h_is_ok(h_next(b)));
    CHECK(h_is_str(h_next(b), "op", "synced")); /* ack 3 was written */
    e = sync_conv(b, 72, conv);
    CHECK(e && h_u(e, "read_seq") == 3 && h_u(e, "ack_seq") == 3);
    e = sync_conv(a, 73, conv);
    CHECK(e && h_u(e, "read_seq") == 3 && h_u(e, "unread") == 0);
    h_close(a);
    h_close(b);
}

/*
 * A cursor write that fails (a full disk, say) is tried again a second
 * later, not on every pass of the loop, also with cursor_delay_ms 0.
 */
static void test_cursor_retry_waits(void)
{
    const char *conv = "d:cr_a:cr_b";
    int a = h_hello("cr_a", "d", false), b = h_hello("cr_b", "d", false);
    h_drain(a);
    h_drain(b);
    h_send_to(a, "cr_b", "r0", "x");
    h_settle();
    unsigned home = h_home("cr_b");
    uint64_t t0 = h_now;
    h_fail_writes = 1;
    h_ack(b, conv, 1); /* its write fails */
    CHECK(h_fail_writes == 0 && !cursor_written("cr_b", "d", conv));
    h_hold_writes = true;
    for (int i = 0; i < 5; i++)
        h_step();
    CHECK(h_held_writes(home) == 0); /* not tried again at once */
    h_now = t0 + 999;
    h_settle();
    CHECK(h_held_writes(home) == 0);
    h_now = t0 + 1000;
    h_settle();
    CHECK(h_held_writes(home) == 1);
    h_hold_writes = false;
    h_release_writes();
    h_settle();
    CHECK(cursor_written("cr_b", "d", conv));
    h_close(a);
    h_close(b);
}

static void test_history(void)
{
    int a1 = h_hello("alice", "a1", false);
    h_drain(a1);
    struct req r = h_req(OP_HISTORY, 60);
    r.conv = strv_c("d:alice:bob");
    r.limit = 5;
    r.has_limit = true;
    h_request(a1, &r);
    const msgpack_object *ok = h_reply(a1, 60);
    const msgpack_object *msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 5 && h_get(ok, "more")->via.boolean);
    for (uint32_t i = 0; i < 5; i++)
        CHECK(h_u(&msgs->via.array.ptr[i], "seq") == 10 + i);
    r = h_req(OP_HISTORY, 61);
    r.conv = strv_c("d:alice:bob");
    r.before = 3;
    r.has_before = true;
    h_request(a1, &r);
    ok = h_reply(a1, 61);
    msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 2 && !h_get(ok, "more")->via.boolean);
    CHECK(h_u(&msgs->via.array.ptr[0], "seq") == 1 && h_u(&msgs->via.array.ptr[1], "seq") == 2);
    r = h_req(OP_HISTORY, 62);
    r.conv = strv_c("d:alice:bob");
    r.after = 12;
    r.has_after = true;
    h_request(a1, &r);
    msgs = h_get(h_reply(a1, 62), "msgs");
    CHECK(msgs->via.array.size == 2 && h_u(&msgs->via.array.ptr[0], "seq") == 13);
    /* gapless: every seq 1..14 is there */
    r = h_req(OP_HISTORY, 63);
    r.conv = strv_c("d:alice:bob");
    r.limit = 200;
    r.has_limit = true;
    h_request(a1, &r);
    msgs = h_get(h_reply(a1, 63), "msgs");
    CHECK(msgs->via.array.size == 14);
    for (uint32_t i = 0; i < 14; i++)
        CHECK(h_u(&msgs->via.array.ptr[i], "seq") == i + 1);
    /* not a member */
    r = h_req(OP_HISTORY, 64);
    r.conv = strv_c("d:bob:carol");
    h_request(a1, &r);
    CHECK(h_is_err(h_reply(a1, 64), "forbidden"));
    /* a page that would pass max_frame is shortened, with more */
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    for (int i = 0; i < 4; i++) {
        char cmid[16];
        snprintf(cmid, sizeof(cmid), "big%d", i);
        h_send_to(a1, "bob", cmid, big);
    }
    r = h_req(OP_HISTORY, 65);
    r.conv = strv_c("d:alice:bob");
    r.limit = 4;
    r.has_limit = true;
    h_request(a1, &r);
    ok = h_reply(a1, 65);
    msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 3 && h_get(ok, "more")->via.boolean);
    CHECK(h_u(&msgs->via.array.ptr[2], "seq") == 18); /* the newest kept */
    h_close(a1);
}

static void test_recall(void)
{
    int a1 = h_hello("alice", "a1", false), b1 = h_hello("bob", "b1", false);
    h_drain(a1);
    h_drain(b1);
    uint32_t id = h_send_to(a1, "bob", "rc1", "oops");
    uint64_t s = h_u(h_reply(a1, id), "seq");
    h_drain(b1);
    struct req r = h_req(OP_RECALL, 70);
    r.conv = strv_c("d:alice:bob");
    r.seq = s;
    h_request(b1, &r); /* not the sender */
    CHECK(h_is_err(h_reply(b1, 70), "forbidden"));
    r.id = 71;
    r.seq = 999;
    h_request(a1, &r);
    CHECK(h_is_err(h_reply(a1, 71), "not_found"));
    r.id = 72;
    r.seq = s;
    h_request(a1, &r);
    const msgpack_object *ok = h_reply(a1, 72);
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == s + 1);
    const msgpack_object *m = h_next(b1);
    CHECK(h_is_str(m, "type", "recall") && h_u(m, "target") == s && h_u(m, "seq") == s + 1);
    r = h_req(OP_HISTORY, 73);
    r.conv = strv_c("d:alice:bob");
    r.after = s - 1;
    r.has_after = true;
    h_request(b1, &r);
    const msgpack_object *msgs = h_get(h_reply(b1, 73), "msgs");
    CHECK(h_is_str(&msgs->via.array.ptr[0], "type", "recalled"));
    CHECK(h_is_str(&msgs->via.array.ptr[0], "body", ""));
    /* a second recall of it finds nothing to recall */
    r = h_req(OP_RECALL, 74);
    r.conv = strv_c("d:alice:bob");
    r.seq = s;
    h_request(a1, &r);
    CHECK(h_is_err(h_reply(a1, 74), "not_found"));
    /* two recalls of one entry sent together: the second reads the target
     * only once the first is durable, so it finds it recalled */
    id = h_send_to(a1, "bob", "rc3", "twice");
    s = h_u(h_reply(a1, id), "seq");
    h_drain(b1);
    r = h_req(OP_RECALL, 76);
    r.conv = strv_c("d:alice:bob");
    r.seq = s;
    h_request_nosettle(a1, &r);
    r.id = 77;
    h_request_nosettle(a1, &r);
    h_settle();
    CHECK(h_is_ok(h_reply(a1, 76)));
    CHECK(h_is_err(h_reply(a1, 77), "not_found"));
    CHECK(h_is_str(h_next_op(b1, "msg"), "type", "recall") && h_next_op(b1, "msg") == NULL);
    /* past the window */
    id = h_send_to(a1, "bob", "rc2", "old");
    s = h_u(h_reply(a1, id), "seq");
    h_now += h_cfg.recall_window_ms + 1;
    r = h_req(OP_RECALL, 75);
    r.conv = strv_c("d:alice:bob");
    r.seq = s;
    h_request(a1, &r);
    CHECK(h_is_err(h_reply(a1, 75), "expired"));
    h_close(a1);
    h_close(b1);
}

/*
 * Friend ops are durable before they are visible: the caller's ok and push,
 * and the peer's push, wait for their sides' writes. A failed write of the
 * caller's side is an error and changes nothing; a failed write of the peer's
 * side is written again at the next tick, and only then pushed.
 */
static void test_friend_durable(void)
{
    int fa = h_hello("fra", "d", false), fb = h_hello("frb", "d", false);
    h_drain(fa);
    h_drain(fb);
    h_hold_writes = true;
    friend_op(fa, OP_FRIEND_REQUEST, 80, "frb", true);
    CHECK(h_next(fa) == NULL && h_next(fb) == NULL); /* nothing durable yet */
    h_release_writes();
    CHECK(h_is_ok(h_reply(fa, 80)));
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "request"));
    friend_op(fb, OP_FRIEND_ACCEPT, 81, "fra", true);
    CHECK(h_is_ok(h_reply(fb, 81)));
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "added"));
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "added"));
    /* the caller's side fails: an error, and nothing changes anywhere */
    h_fail_writes = 1;
    friend_op(fa, OP_FRIEND_REMOVE, 82, "frb", true);
    CHECK(h_is_err(h_reply(fa, 82), "unavailable"));
    CHECK(h_next_op(fa, "friend") == NULL && h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fa, 83, "friends") == 1 && friend_count(fb, 84, "friends") == 1);
    /* the peer's side fails: the caller has its ok, the peer waits for the retry */
    friend_op_peer_fails(fa, OP_FRIEND_REMOVE, 85, "frb");
    CHECK(h_is_ok(h_reply(fa, 85)));
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "removed"));
    CHECK(h_next_op(fb, "friend") == NULL && friend_count(fb, 86, "friends") == 1);
    chat_on_tick(h_chat(h_home("frb")));
    h_settle();
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "removed"));
    CHECK(friend_count(fb, 87, "friends") == 0 && friend_count(fa, 88, "friends") == 0);
    h_close(fa);
    h_close(fb);
    h_stop();
    h_start(dir, true);
    fa = h_hello("fra", "d2", false);
    fb = h_hello("frb", "d2", false);
    h_drain(fa);
    h_drain(fb);
    CHECK(friend_count(fa, 89, "friends") == 0 && friend_count(fb, 90, "friends") == 0);
    CHECK(friend_count(fa, 91, "requests") == 0 && friend_count(fb, 92, "requests") == 0);

    /* ops sent without waiting wait for the ones before them and are checked
     * against what those wrote: request then remove leaves nothing; accept
     * twice pushes once */
    friend_op(fa, OP_FRIEND_REQUEST, 93, "frb", false);
    friend_op(fa, OP_FRIEND_REMOVE, 94, "frb", false);
    h_settle();
    CHECK(h_is_ok(h_reply(fa, 93)) && h_is_ok(h_reply(fa, 94)));
    CHECK(friend_count(fb, 95, "requests") == 0 && friend_count(fa, 96, "friends") == 0);
    h_drain(fa);
    h_drain(fb);
    friend_op(fa, OP_FRIEND_REQUEST, 97, "frb", true);
    CHECK(h_is_ok(h_reply(fa, 97)));
    h_drain(fb);
    friend_op(fb, OP_FRIEND_ACCEPT, 98, "fra", false);
    friend_op(fb, OP_FRIEND_ACCEPT, 99, "fra", false);
    h_settle();
    CHECK(h_is_ok(h_reply(fb, 98)) && h_is_ok(h_reply(fb, 99)));
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "added") && h_next_op(fb, "friend") == NULL);
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "added") && h_next_op(fa, "friend") == NULL);

    /* the peer's own ops on the pair wait while the peer's side is still to
     * be written, and are then checked against it */
    friend_op_peer_fails(fa, OP_FRIEND_REMOVE, 100, "frb");
    CHECK(h_is_ok(h_reply(fa, 100)) && h_next_op(fb, "friend") == NULL);
    friend_op(fb, OP_FRIEND_REMOVE, 101, "fra", true);
    friend_op(fb, OP_FRIEND_REQUEST, 102, "fra", true);
    CHECK(h_reply(fb, 101) == NULL && h_reply(fb, 102) == NULL); /* waiting */
    CHECK(!chat_quiescent(h_chat(h_home("frb"))));               /* a side still to write */
    chat_on_tick(h_chat(h_home("frb")));
    h_settle();
    CHECK(chat_quiescent(h_chat(h_home("frb"))));
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "removed"));
    CHECK(h_is_err(h_reply(fb, 101), "not_found")); /* removed by then */
    CHECK(h_is_ok(h_reply(fb, 102)));
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "removed"));
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "request"));
    CHECK(friend_count(fb, 103, "friends") == 0 && friend_count(fb, 104, "requests") == 0);
    CHECK(friend_count(fa, 105, "friends") == 0 && friend_count(fa, 106, "requests") == 1);
    /* a pipelined op behind one that fails is checked against what is durable */
    h_drain(fa);
    h_drain(fb);
    h_fail_writes = 1;
    friend_op(fa, OP_FRIEND_ACCEPT, 107, "frb", false);
    friend_op(fa, OP_FRIEND_ACCEPT, 108, "frb", false);
    h_settle();
    CHECK(h_is_err(h_reply(fa, 107), "unavailable"));
    CHECK(h_is_ok(h_reply(fa, 108)));
    CHECK(h_is_str(h_next_op(fa, "friend"), "event", "added") && h_next_op(fa, "friend") == NULL);
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "added") && h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fa, 109, "friends") == 1 && friend_count(fb, 110, "friends") == 1);
    /* a waiting op of a session that closed is dropped: nobody asked to act
     * on what the pair became after it */
    h_drain(fb);
    h_hold_writes = true;
    friend_op(fa, OP_FRIEND_REMOVE, 111, "frb", true);
    h_fail_held_write(h_home("fra"), 0);
    friend_op(fa, OP_FRIEND_REQUEST, 112, "frb", true); /* waits for the remove */
    h_close(fa);
    h_hold_reads[h_home("fra")] = true; /* fra's state is loading again ... */
    fa = h_hello_nosettle("fra", "d", false);
    h_release_writes(); /* ... when the remove fails */
    h_release_reads();
    h_drain(fa);
    CHECK(h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fa, 113, "friends") == 1 && friend_count(fb, 114, "friends") == 1);
    CHECK(friend_count(fb, 115, "requests") == 0);
    h_close(fa);
    h_close(fb);
}

/*
 * The peer's side of a friend op outlives a crash between the two sides: its
 * pending record, written with the caller's side, is found when the peer is
 * loaded again, the side is written and pushed then, and only once.
 */
static void test_friend_across_crash(void)
{
    int fa = h_hello("fca", "d", false), fb = h_hello("fcb", "d", false);
    h_drain(fa);
    h_drain(fb);
    friend_op_peer_fails(fa, OP_FRIEND_REQUEST, 120, "fcb");
    CHECK(h_is_ok(h_reply(fa, 120)));
    CHECK(h_next_op(fb, "friend") == NULL);
    /* the peer comes back while its side waits: the record stays, it is
     * this run's (its side is still to be written here) */
    h_close(fb);
    fb = h_hello("fcb", "d", false);
    CHECK(h_next_op(fb, "friend") == NULL);
    restart_later(true); /* the retry never comes */
    fb = h_hello("fcb", "d", false);
    const msgpack_object *ev = h_next_op(fb, "friend");
    CHECK(h_is_str(ev, "event", "request") && h_is_str(ev, "from", "fca"));
    CHECK(friend_count(fb, 121, "requests") == 1);
    h_close(fb);
    restart_later(false);
    fb = h_hello("fcb", "d", false);
    CHECK(h_next_op(fb, "friend") == NULL); /* the record went with the side */
    CHECK(friend_count(fb, 122, "requests") == 1);
    friend_op(fb, OP_FRIEND_ACCEPT, 123, "fca", true);
    CHECK(h_is_ok(h_reply(fb, 123)));
    fa = h_hello("fca", "d", false);
    CHECK(friend_count(fa, 124, "friends") == 1 && friend_count(fb, 125, "friends") == 1);
    h_close(fa);
    h_close(fb);

    /* a record left by a crash is not replayed over a later op: the request
     * whose peer side was lost is withdrawn before the peer comes back */
    fa = h_hello("fcc", "d", false);
    fb = h_hello("fcd", "d", false);
    h_drain(fa);
    friend_op_peer_fails(fa, OP_FRIEND_REQUEST, 126, "fcd");
    CHECK(h_is_ok(h_reply(fa, 126)));
    h_close(fb);
    restart_later(true);
    fa = h_hello("fcc", "d", false);
    friend_op(fa, OP_FRIEND_REMOVE, 127, "fcd", true);
    CHECK(h_is_ok(h_reply(fa, 127)));
    h_close(fa);
    restart_later(false);
    fb = h_hello("fcd", "d", false);
    CHECK(h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fb, 128, "requests") == 0 && friend_count(fb, 129, "friends") == 0);
    h_close(fb);
}

/*
 * A pending side whose user does not come back is written all the same: the
 * sweep after a start loads the user, writes the side and lets the user go
 * again. The user's next login finds the side written: no replay, no push.
 */
static void test_friend_sweep(void)
{
    int fa = h_hello("fsa", "d", false), fb = h_hello("fsb", "d", false);
    h_drain(fa);
    h_drain(fb);
    friend_op_peer_fails(fa, OP_FRIEND_REQUEST, 140, "fsb");
    CHECK(h_is_ok(h_reply(fa, 140)));
    h_close(fb);
    h_close(fa);
    restart_later(true);
    for (unsigned i = 0; i < H_SHARDS; i++)
        chat_on_tick(h_chat(i));
    h_settle();
    CHECK(home_user(h_chat(h_home("fsb")), (struct strv){"fsb", 3}) == NULL); /* let go */
    fb = h_hello("fsb", "d", false);
    CHECK(h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fb, 141, "requests") == 1);
    h_close(fb);
}

/*
 * A pending record of this run is not replayed: the peer loads while the op
 * that wrote it is still on its way to the peer's home, and gets one push,
 * from that op.
 */
static void test_friend_forward_in_flight(void)
{
    char a[8] = "fia", b[8] = "fib0";
    for (char k = '0'; k <= '9' && h_home(a) == h_home(b); k++)
        b[3] = k;
    CHECK(h_home(a) != h_home(b));
    int fa = h_hello(a, "d", false);
    h_drain(fa);
    h_hold_xmsgs[h_home(b)] = true;
    friend_op(fa, OP_FRIEND_REQUEST, 130, b, true);
    CHECK(h_is_ok(h_reply(fa, 130)));
    int fb = h_hello(b, "d", false); /* loaded with the op's record in storage */
    CHECK(h_next_op(fb, "friend") == NULL);
    h_release_xmsgs();
    CHECK(h_is_str(h_next_op(fb, "friend"), "event", "request"));
    CHECK(h_next_op(fb, "friend") == NULL);
    CHECK(friend_count(fb, 131, "requests") == 1);
    h_close(fa);
    h_close(fb);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_msg.%d", (int)getpid());
    h_start(dir, false);
    test_send_push();
    test_dedup_restart();
    test_catchup();
    test_stored_ack_past_end();
    test_catchup_failures();
    test_catchup_windows();
    test_catchup_memory_bounded();
    test_no_push_before_ok();
    test_gapless();
    test_gapless_pipelined();
    test_fence_across_other_rows();
    test_read_sync();
    test_cursor_delay();
    test_cursor_retry_waits();
    test_history();
    test_recall();
    test_friend_beside_failure();
    test_friend_durable();
    test_friend_across_crash();
    test_friend_sweep();
    test_friend_forward_in_flight();
    h_stop();
    return h_finish(dir);
}
