/* Direct messaging through the chat layer with a fake runtime and real storage:
 * send/ok/push, dedup (also across a restart), catch-up, ack, gapless seqs
 * when a write fails, read/sync, history, recall. */
#include "harness.h"

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
 * With write_pipeline > 1, several batches in flight at once (each send
 * submitted while the ones before it are not durable): they complete in order; when the first
 * fails, those after it fail too, since their seqs followed its, and the next send takes the first
 * seq given back.
 */
static void test_gapless_pipelined(void)
{
    int p1 = h_hello("pia", "p1", false), q1 = h_hello("quinn", "q1", false);
    h_drain(p1);
    h_drain(q1);
    unsigned osh = h_owner("d:pia:quinn");
    char cmid[16];
    uint32_t id[3];
    /* write_pipeline 1: a batch waits for the one before it */
    h_hold_writes = true;
    id[0] = h_send_to(p1, "quinn", "pq0", "x");
    id[1] = h_send_to(p1, "quinn", "pq1", "x");
    CHECK(h_held_writes(osh) == 1);
    h_release_writes();
    CHECK(h_u(h_reply(p1, id[0]), "seq") == 1 && h_u(h_reply(p1, id[1]), "seq") == 2);
    h_drain(q1);
    h_cfg.write_pipeline = 16;
    for (int round = 0; round < 2; round++) {
        h_hold_writes = true;
        for (int i = 0; i < 3; i++) {
            snprintf(cmid, sizeof(cmid), "pp%d.%d", round, i);
            id[i] = h_send_to(p1, "quinn", cmid, "x");
            CHECK(h_held_writes(osh) == i + 1); /* a batch of its own, in flight */
        }
        CHECK(h_next(p1) == NULL && h_next(q1) == NULL); /* nothing durable yet */
        if (round == 1)
            h_fail_held_write(osh, 0);
        h_release_writes();
        for (int i = 0; i < 3; i++) {
            const msgpack_object *r = h_reply(p1, id[i]);
            if (round == 0)
                CHECK(h_is_ok(r) && h_u(r, "seq") == (uint64_t)i + 3);
            else
                CHECK(h_is_err(r, "unavailable"));
        }
        for (int i = 0; round == 0 && i < 3; i++)
            CHECK(h_u(h_next_op(q1, "msg"), "seq") == (uint64_t)i + 3);
        CHECK(h_next_op(q1, "msg") == NULL);
    }
    /* the seqs of the failed round are handed out again, and its cmids are new */
    uint32_t ok = h_send_to(p1, "quinn", "pp1.1", "retry");
    const msgpack_object *r = h_reply(p1, ok);
    CHECK(h_is_ok(r) && h_u(r, "seq") == 6 && !h_get(r, "dup"));
    CHECK(h_u(h_next_op(q1, "msg"), "seq") == 6);
    h_cfg.write_pipeline = 1;
    h_close(p1);
    h_close(q1);
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

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_msg.%d", (int)getpid());
    h_start(dir, false);
    test_send_push();
    test_dedup_restart();
    test_catchup();
    test_gapless();
    test_gapless_pipelined();
    test_read_sync();
    test_history();
    test_recall();
    h_stop();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    printf("ok\n");
    return 0;
}
