/* The admin API through the chat layer: send on behalf (direct and group, from
 * either shard, every device of the sender gets it, dedup shared with client
 * sends and across a restart, the §5 rules and their errors, dm_policy
 * friends for a user with and without a session, a failed write), presence,
 * and kick; every answer arrives through admin_done on the calling shard,
 * never inside the call. */
#include "harness.h"

#include "base/err.h"
#include "protocol/req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static uint64_t ntag;
static uint32_t nid = 5000;

static uint64_t tag_new(void)
{
    ntag = ntag % (H_ADMIN_MAX - 1) + 1;
    memset(&h_admin[ntag], 0, sizeof(h_admin[ntag]));
    return ntag;
}

/* Wait for the one answer of tag, checking it came back on the calling shard. */
static const struct hadmin *done(uint64_t tag, unsigned shard)
{
    CHECK(h_admin[tag].calls == 0); /* never from inside the call */
    h_settle();
    CHECK(h_admin[tag].calls == 1);
    CHECK(h_admin[tag].shard == shard);
    return &h_admin[tag];
}

static const struct hadmin *asend(unsigned shard, const char *from, const char *to,
                                  const char *group, const char *cmid, const char *body)
{
    struct req r = h_send_req(to, group, cmid, "text", body);
    uint64_t t = tag_new();
    chat_admin_send(h_chat(shard), t, strv_c(from), &r);
    return done(t, shard);
}

static void test_send_direct(void)
{
    int a1 = h_hello("alice", "a1", false), a2 = h_hello("alice", "a2", false);
    int b1 = h_hello("bob", "b1", false);
    h_drain(a1);
    h_drain(a2);
    h_drain(b1);
    for (unsigned sh = 0; sh < H_SHARDS; sh++) {
        char cmid[16];
        snprintf(cmid, sizeof(cmid), "adm%u", sh);
        const struct hadmin *a = asend(sh, "alice", "bob", NULL, cmid, "from the backend");
        CHECK(a->err == 0 && !a->dup);
        CHECK(strcmp(a->conv, "d:alice:bob") == 0 && a->seq == sh + 1 && a->ts == h_now);
        /* the peer and every device of the sender, with no sending device */
        int who[3] = {b1, a1, a2};
        for (int i = 0; i < 3; i++) {
            const msgpack_object *m = h_next(who[i]);
            CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == sh + 1);
            CHECK(h_is_str(m, "from", "alice") && h_is_str(m, "dev", ""));
            CHECK(h_is_str(m, "cmid", cmid) && h_is_str(m, "body", "from the backend"));
            CHECK(h_next(who[i]) == NULL);
        }
    }
    /* dedup: an admin retry, and a client send with the same cmid, are dups */
    const struct hadmin *a = asend(1, "alice", "bob", NULL, "adm0", "again");
    CHECK(a->err == 0 && a->dup && a->seq == 1 && strcmp(a->conv, "d:alice:bob") == 0);
    uint64_t ts1 = a->ts;
    uint32_t id = h_send_to(a1, "bob", "adm1", "client retry");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(h_is_ok(ok) && h_get(ok, "dup") && h_u(ok, "seq") == 2);
    CHECK(h_next(b1) == NULL && h_next(a2) == NULL);
    /* and the other way round: a client's cmid, retried through the backend */
    id = h_send_to(a1, "bob", "cli1", "client");
    ok = h_reply(a1, id);
    CHECK(h_u(ok, "seq") == 3);
    h_drain(b1);
    h_drain(a2);
    a = asend(0, "alice", "bob", NULL, "cli1", "backend retry");
    CHECK(a->dup && a->seq == 3 && a->ts == h_u(ok, "ts"));
    CHECK(ts1 > 0);
    /* sending implies reading: alice has nothing unread in the conversation */
    struct req sy = h_req(OP_SYNC, ++nid);
    h_request(a2, &sy);
    ok = h_reply(a2, nid);
    const msgpack_object *convs = h_get(ok, "convs");
    CHECK(convs && convs->type == MSGPACK_OBJECT_ARRAY && convs->via.array.size == 1);
    CHECK(h_u(&convs->via.array.ptr[0], "last_seq") == 3);
    CHECK(h_u(&convs->via.array.ptr[0], "unread") == 0);
    /* to someone who never connected, from someone offline */
    a = asend(1, "zed", "nobody", NULL, "z1", "hello void");
    CHECK(a->err == 0 && a->seq == 1 && strcmp(a->conv, "d:nobody:zed") == 0);
    h_close(a1);
    h_close(a2);
    h_close(b1);
}

static void test_send_rules(void)
{
    struct {
        const char *from, *to, *group, *cmid, *type, *body;
        int err;
    } bad[] = {
        {"bad user!", "bob", NULL, "c", "text", "x", -RP_EREQUEST},
        {"alice", "bob", "g", "c", "text", "x", -RP_EREQUEST},
        {"alice", NULL, NULL, "c", "text", "x", -RP_EREQUEST},
        {"alice", "b:b", NULL, "c", "text", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "", "text", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "c", "", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "c", "event", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "c", "recall", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "c", "recalled", "x", -RP_EREQUEST},
        {"alice", "bob", NULL, "c", "a-type-longer-than-16", "x", -RP_EREQUEST},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct req r = h_send_req(bad[i].to, bad[i].group, bad[i].cmid, bad[i].type, bad[i].body);
        uint64_t t = tag_new();
        chat_admin_send(h_chat(i % H_SHARDS), t, strv_c(bad[i].from), &r);
        const struct hadmin *a = done(t, i % H_SHARDS);
        if (a->err != bad[i].err)
            fprintf(stderr, "case %zu: err %d\n", i, a->err);
        CHECK(a->err == bad[i].err && a->msg[0]);
    }
    static char big[40000];
    memset(big, 'x', sizeof(big) - 1);
    struct req r = h_send_req("bob", NULL, "big", "text", big);
    uint64_t t = tag_new();
    chat_admin_send(h_chat(0), t, strv_c("alice"), &r);
    CHECK(done(t, 0)->err == -RP_ETOOLARGE);
    /* nothing of the above was appended */
    CHECK(asend(0, "alice", "bob", NULL, "after-bad", "ok")->seq == 4);
}

static const msgpack_object *greq(int conn, struct req *r)
{
    r->id = ++nid;
    r->has_id = true;
    h_request(conn, r);
    return h_reply(conn, r->id);
}

static void test_send_group(void)
{
    int o = h_hello("owner", "o1", false), o2 = h_hello("owner", "o2", false);
    int m = h_hello("mia", "m1", false), x = h_hello("xavier", "x1", false);
    struct strv mem[1] = {strv_c("mia")};
    struct req r = h_req(OP_GROUP_CREATE, 0);
    r.group = strv_c("ag");
    r.has_group = true;
    r.name = strv_c("Admin group");
    r.has_name = true;
    r.users = mem;
    r.nusers = 1;
    CHECK(h_is_ok(greq(o, &r)));
    h_drain(o);
    h_drain(o2);
    h_drain(m);
    h_drain(x);
    const struct hadmin *a = asend(1, "owner", NULL, "ag", "g1", "to all");
    CHECK(a->err == 0 && a->seq == 2 && strcmp(a->conv, "g:ag") == 0);
    int who[3] = {o, o2, m};
    for (int i = 0; i < 3; i++) {
        const msgpack_object *p = h_next_op(who[i], "msg");
        CHECK(p && h_u(p, "seq") == 2 && h_is_str(p, "dev", "") && h_is_str(p, "from", "owner"));
    }
    CHECK(h_next(x) == NULL);
    CHECK(asend(0, "xavier", NULL, "ag", "g2", "intruder")->err == -EPERM);
    CHECK(asend(0, "owner", NULL, "no-such", "g3", "?")->err == -ENOENT);
    /* a member with no session */
    CHECK(asend(0, "mia", NULL, "ag", "g4", "offline member")->seq == 3);
    CHECK(h_u(h_next_op(o, "msg"), "seq") == 3 && h_u(h_next_op(m, "msg"), "seq") == 3);
    /* dismissed: not_found */
    struct req d = h_req(OP_GROUP_DISMISS, 0);
    d.group = strv_c("ag");
    d.has_group = true;
    CHECK(h_is_ok(greq(o, &d)));
    CHECK(asend(1, "owner", NULL, "ag", "g5", "late")->err == -ENOENT);
    h_close(o);
    h_close(o2);
    h_close(m);
    h_close(x);
}

static void friend_op(int conn, int op, const char *peer)
{
    struct req r = h_req(op, 0);
    r.user = strv_c(peer);
    CHECK(h_is_ok(greq(conn, &r)));
}

static void test_friends_policy(void)
{
    h_cfg.dm_friends_only = true;
    int p = h_hello("pat", "p1", false), q = h_hello("quinn", "q1", false);
    /* with sessions: the home's friend list */
    CHECK(asend(0, "pat", "quinn", NULL, "f1", "hi")->err == -EPERM);
    CHECK(asend(1, "pat", "pat", NULL, "f2", "note to self")->err == 0);
    friend_op(p, OP_FRIEND_REQUEST, "quinn");
    CHECK(asend(1, "pat", "quinn", NULL, "f3", "pending")->err == -EPERM);
    friend_op(q, OP_FRIEND_ACCEPT, "pat");
    CHECK(asend(0, "pat", "quinn", NULL, "f4", "friends")->seq == 1);
    h_close(p);
    h_close(q);
    /* without a session: storage */
    CHECK(asend(1, "pat", "quinn", NULL, "f5", "offline")->seq == 2);
    CHECK(asend(0, "quinn", "pat", NULL, "f6", "back")->seq == 3);
    CHECK(asend(0, "pat", "ruth", NULL, "f7", "stranger")->err == -EPERM);
    p = h_hello("pat", "p1", false);
    friend_op(p, OP_FRIEND_REMOVE, "quinn");
    h_close(p);
    CHECK(asend(1, "pat", "quinn", NULL, "f8", "removed")->err == -EPERM);
    CHECK(asend(1, "quinn", "pat", NULL, "f9", "removed too")->err == -EPERM);
    h_cfg.dm_friends_only = false;
}

static void test_presence_kick(void)
{
    uint64_t t = tag_new();
    chat_admin_presence(h_chat(1), t, strv_c("kim"));
    const struct hadmin *a = done(t, 1);
    CHECK(a->err == 0 && !a->online && a->ndevices == 0);
    int k1 = h_hello("kim", "phone", true), k2 = h_hello("kim", "laptop", false);
    int l = h_hello("lee", "l1", false);
    for (unsigned sh = 0; sh < H_SHARDS; sh++) {
        t = tag_new();
        chat_admin_presence(h_chat(sh), t, strv_c("kim"));
        a = done(t, sh);
        CHECK(a->err == 0 && a->online && a->ndevices == 2);
        bool phone = false, laptop = false;
        for (uint32_t i = 0; i < 2; i++) {
            phone |= strcmp(a->devices[i], "phone") == 0;
            laptop |= strcmp(a->devices[i], "laptop") == 0;
        }
        CHECK(phone && laptop);
    }
    t = tag_new();
    chat_admin_kick(h_chat(0), t, strv_c("kim"));
    a = done(t, 0);
    CHECK(a->err == 0 && a->kicked == 2);
    CHECK(!h_conn(k1)->open && strcmp(h_conn(k1)->reason, "kicked") == 0);
    CHECK(!h_conn(k2)->open && strcmp(h_conn(k2)->reason, "kicked") == 0);
    CHECK(h_conn(l)->open);
    t = tag_new();
    chat_admin_presence(h_chat(0), t, strv_c("kim"));
    CHECK(!done(t, 0)->online);
    t = tag_new();
    chat_admin_kick(h_chat(1), t, strv_c("kim"));
    CHECK(done(t, 1)->kicked == 0);
    t = tag_new();
    chat_admin_kick(h_chat(1), t, strv_c("no/such"));
    CHECK(done(t, 1)->err == -RP_EREQUEST);
    t = tag_new();
    chat_admin_presence(h_chat(0), t, strv_c(""));
    CHECK(done(t, 0)->err == -RP_EREQUEST);
    /* a kicked user may come back */
    k1 = h_hello("kim", "phone", false);
    CHECK(h_conn(k1)->open);
    h_close(k1);
    h_close(l);
}

static void test_write_failure(void)
{
    h_fail_writes = 1;
    const struct hadmin *a = asend(0, "alice", "bob", NULL, "wf1", "lost");
    CHECK(a->err == -RP_ESTORAGE);
    /* the seq was given back, and the cmid is free again */
    a = asend(1, "alice", "bob", NULL, "wf1", "kept");
    CHECK(a->err == 0 && !a->dup && a->seq == 5);
}

static void test_restart(void)
{
    h_stop();
    h_start(dir, true);
    const struct hadmin *a = asend(1, "alice", "bob", NULL, "adm1", "after restart");
    CHECK(a->err == 0 && a->dup && a->seq == 2);
    a = asend(0, "alice", "bob", NULL, "new-after", "new");
    CHECK(a->err == 0 && !a->dup && a->seq == 6);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_admin.%d", (int)getpid());
    h_start(dir, false);
    test_send_direct();
    test_send_rules();
    test_send_group();
    test_friends_policy();
    test_presence_kick();
    test_write_failure();
    test_restart();
    h_stop();
    return h_finish(dir);
}
