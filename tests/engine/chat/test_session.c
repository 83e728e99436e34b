/* Sessions and friends: replacement (bye replaced), max_devices (conflict and
 * close), live pushes held during catch-up without duplicates, friend
 * request/accept/list/remove with pushes, dm_policy friends. */
#include "harness.h"

#include "protocol/ident.h"
#include "protocol/req.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

/*
 * A device logs in while its user's state is still being read (the reads of
 * its home shard are held back), and messages arrive meanwhile:
 * - the hello is answered only once the state is loaded (and the user is in
 *   the group online index), so nothing durable after the ok can miss it;
 * - a direct message delivered during the load is held and pushed after the
 *   ok, with resume false too (it used to be held and never pushed);
 * - a group message after the ok is pushed.
 * Then again after the user's last session closed (its state dropped and read
 * anew). The sender and the conversations' owners are on the other shard, so
 * the held reads do not hold up the sends.
 */
static void login_while_loading(bool resume)
{
    const char *me = resume ? "rita" : "rob";
    char rcpt[16] = "", conv[IDENT_CONV_MAX + 1], gconv[IDENT_CONV_MAX + 1], gid[16] = "";
    for (int i = 0; i < 100 && !rcpt[0]; i++) {
        char cand[16];
        snprintf(cand, sizeof(cand), "%s%d", resume ? "ra" : "rn", i);
        uint32_t n = ident_conv_direct(conv, strv_c(me), strv_c(cand));
        conv[n] = 0;
        if (h_home(cand) != h_home(me) && h_owner(conv) != h_home(cand))
            snprintf(rcpt, sizeof(rcpt), "%s", cand);
    }
    CHECK(rcpt[0]);
    for (int i = 0; i < 100 && !gid[0]; i++) {
        char cand[16];
        snprintf(cand, sizeof(cand), "%s-g%d", me, i);
        uint32_t n = ident_conv_group(gconv, strv_c(cand));
        gconv[n] = 0;
        if (h_owner(gconv) != h_home(rcpt))
            snprintf(gid, sizeof(gid), "%s", cand);
    }
    CHECK(gid[0]);
    int s = h_hello(me, "s", false);
    struct strv mem[1] = {strv_c(rcpt)};
    struct req g = h_req(OP_GROUP_CREATE, 77);
    g.group = strv_c(gid);
    g.has_group = true;
    g.name = strv_c("race");
    g.has_name = true;
    g.users = mem;
    g.nusers = 1;
    h_request(s, &g);
    CHECK(h_is_ok(h_reply(s, 77)));
    h_drain(s);

    for (int round = 0; round < 2; round++) {
        char cmid[32];
        h_hold_reads[h_home(rcpt)] = true;
        int r = h_hello_nosettle(rcpt, "d", resume);
        h_settle();
        CHECK(h_next(r) == NULL); /* not online yet: no hello ok */
        snprintf(cmid, sizeof(cmid), "dm%d", round);
        uint32_t id = h_send_to(s, rcpt, cmid, "while loading");
        const msgpack_object *ok = h_reply(s, id);
        CHECK(h_is_ok(ok));
        uint64_t dseq = h_u(ok, "seq");
        CHECK(h_next(r) == NULL);
        h_release_reads();
        CHECK(h_is_ok(h_next(r)));
        /* the direct message: held, then pushed (catch-up or live) */
        const msgpack_object *m = h_next_op(r, "msg");
        while (m && !h_is_str(m, "conv", conv))
            m = h_next_op(r, "msg");
        CHECK(m && h_u(m, "seq") == dseq);
        if (resume)
            CHECK(h_next_op(r, "synced"));
        h_drain(r);
        /* online now: a group message and a direct one are pushed at once */
        snprintf(cmid, sizeof(cmid), "g%d", round);
        id = h_send_group(s, gid, cmid, "after the ok");
        ok = h_reply(s, id);
        CHECK(h_is_ok(ok));
        uint64_t gseq = h_u(ok, "seq");
        m = h_next_op(r, "msg");
        CHECK(m && h_is_str(m, "conv", gconv) && h_u(m, "seq") == gseq);
        snprintf(cmid, sizeof(cmid), "dm%db", round);
        id = h_send_to(s, rcpt, cmid, "after the ok");
        ok = h_reply(s, id);
        m = h_next_op(r, "msg");
        CHECK(m && h_is_str(m, "conv", conv) && h_u(m, "seq") == h_u(ok, "seq"));
        /* ack everything, so the next round's catch-up is only the new */
        struct req ak = h_req(OP_ACK, 0);
        ak.has_id = false;
        ak.conv = strv_c(conv);
        ak.seq = h_u(ok, "seq");
        h_request(r, &ak);
        ak.conv = strv_c(gconv);
        ak.seq = gseq;
        h_request(r, &ak);
        h_close(r); /* the user's only session: its state is dropped */
    }
    h_close(s);
}

static const msgpack_object *greq(int conn, int op, const char *gid, const char *user)
{
    static uint32_t id = 5000;
    struct strv users[1] = {strv_c(user)};
    struct req r = h_req(op, ++id);
    r.group = strv_c(gid);
    r.has_group = true;
    r.name = strv_c("n");
    r.has_name = op == OP_GROUP_CREATE;
    r.users = users;
    r.nusers = 1;
    h_request(conn, &r);
    return h_reply(conn, r.id);
}

/*
 * A member removed while their state is loading: the group's last seq read
 * at load is past the kick, whose delivery is still on its way to the home.
 * The catch-up ends with the kick event, and nothing after it is pushed.
 */
static void removed_while_loading(void)
{
    char u[16] = "", o[16] = "", g[16] = "", conv[IDENT_CONV_MAX + 1];
    for (int i = 0; i < 100 && (!*u || !*o || !*g); i++) {
        if (!*u && (snprintf(u, sizeof(u), "rwu%d", i), h_home(u) != 0))
            u[0] = 0;
        if (!*o && (snprintf(o, sizeof(o), "rwo%d", i), h_home(o) != 1))
            o[0] = 0;
        snprintf(g, sizeof(g), "rwg%d", i);
        conv[ident_conv_group(conv, strv_c(g))] = 0;
        if (h_owner(conv) != 1)
            g[0] = 0;
    }
    CHECK(*u && *o && *g);
    int oc = h_hello(o, "d", false);
    CHECK(h_is_ok(greq(oc, OP_GROUP_CREATE, g, u)));
    CHECK(h_is_ok(h_reply(oc, h_send_group(oc, g, "before", "before the kick"))));
    /* u logs in: the read of its conversations runs now (its completion
     * waits to be polled); what u's home reads and receives after is held */
    int uc = h_hello_nosettle(u, "d", true);
    usleep(200000);
    h_hold_reads[0] = true;
    h_hold_xmsgs[0] = true;
    CHECK(h_is_ok(greq(oc, OP_GROUP_KICK, g, u))); /* seq 3, after create and "before" */
    const msgpack_object *ok = h_reply(oc, h_send_group(oc, g, "after", "not for u"));
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == 4);
    h_release_reads();
    h_release_xmsgs();
    uint64_t top = 0;
    bool kicked = false;
    const msgpack_object *m;
    while ((m = h_next(uc))) {
        if (h_is_str(m, "op", "msg") && h_is_str(m, "conv", conv)) {
            top = h_u(m, "seq");
            kicked |= h_is_str(h_get(m, "data"), "kind", "kick");
        }
    }
    /* (had the storage thread been slower than the pause above, the read
     * would have found u removed already: nothing to catch up) */
    CHECK(top <= 3 && (top < 3 || kicked));
    h_close(uc);
    h_close(oc);
}

static const msgpack_object *freq(int conn, int op, const char *user, uint32_t id)
{
    struct req r = h_req(op, id);
    r.user = strv_c(user);
    h_request(conn, &r);
    return h_reply(conn, id);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_session.%d", (int)getpid());
    h_start(dir, false);

    /* replacement */
    int a1 = h_hello("amy", "phone", false);
    int a2 = h_hello("amy", "phone", false);
    CHECK(!h_conn(a1)->open && strcmp(h_conn(a1)->reason, "replaced") == 0);
    CHECK(h_conn(a2)->open && h_is_ok(h_next(a2)));
    /* max_devices */
    h_cfg.max_devices = 2;
    int a3 = h_hello("amy", "laptop", false);
    int a4 = h_hello("amy", "tablet", false);
    CHECK(h_conn(a3)->open);
    const msgpack_object *e = h_next(a4);
    CHECK(h_is_err(e, "conflict") && h_u(e, "id") == 1 && !h_conn(a4)->open);
    h_cfg.max_devices = 10;
    h_drain(a3);

    /* friends */
    int b1 = h_hello("bill", "d", false);
    h_drain(b1);
    CHECK(h_is_err(freq(a2, OP_FRIEND_ACCEPT, "bill", 1), "not_found"));
    struct req r = h_req(OP_FRIEND_REQUEST, 2);
    r.user = strv_c("bill");
    r.note = strv_c("hi, it's amy");
    r.has_note = true;
    h_request(a2, &r);
    CHECK(h_is_ok(h_reply(a2, 2)));
    e = h_next_op(b1, "friend");
    CHECK(e && h_is_str(e, "event", "request") && h_is_str(e, "from", "amy") &&
          h_is_str(e, "note", "hi, it's amy"));
    r = h_req(OP_FRIEND_LIST, 3);
    h_request(b1, &r);
    e = h_reply(b1, 3);
    CHECK(h_get(e, "requests")->via.array.size == 1 && h_get(e, "friends")->via.array.size == 0);
    /* dm_policy friends: not yet */
    h_cfg.dm_friends_only = true;
    uint32_t id = h_send_to(a2, "bill", "f1", "x");
    CHECK(h_is_err(h_reply(a2, id), "forbidden"));
    CHECK(h_is_ok(freq(b1, OP_FRIEND_ACCEPT, "amy", 4)));
    e = h_next_op(a2, "friend");
    CHECK(e && h_is_str(e, "event", "added") && h_is_str(e, "user", "bill"));
    CHECK(h_is_str(h_next_op(a3, "friend"), "user", "bill"));
    e = h_next_op(b1, "friend");
    CHECK(e && h_is_str(e, "event", "added") && h_is_str(e, "user", "amy"));
    id = h_send_to(a2, "bill", "f2", "now we can");
    CHECK(h_is_ok(h_reply(a2, id)));
    r = h_req(OP_FRIEND_LIST, 5);
    h_request(a2, &r);
    e = h_reply(a2, 5);
    CHECK(h_get(e, "friends")->via.array.size == 1 && h_get(e, "requests")->via.array.size == 0);
    /* friendships survive a fresh login (read from storage) */
    h_close(b1);
    b1 = h_hello("bill", "d", false);
    h_drain(b1);
    id = h_send_to(b1, "amy", "f3", "back");
    CHECK(h_is_ok(h_reply(b1, id)));
    CHECK(h_is_ok(freq(b1, OP_FRIEND_REMOVE, "amy", 6)));
    CHECK(h_is_str(h_next_op(a2, "friend"), "event", "removed"));
    id = h_send_to(a2, "bill", "f4", "?");
    CHECK(h_is_err(h_reply(a2, id), "forbidden"));
    CHECK(h_is_err(freq(b1, OP_FRIEND_REMOVE, "amy", 7), "not_found"));
    h_cfg.dm_friends_only = false;

    /* a live push during catch-up is held, then not duplicated */
    h_close(b1);
    b1 = h_hello("bill", "d2", true); /* settles: catch-up done */
    int n = 0;
    uint64_t last = 0;
    const msgpack_object *m;
    while ((m = h_next(b1))) {
        if (h_is_str(m, "op", "msg")) {
            CHECK(h_u(m, "seq") > last);
            last = h_u(m, "seq");
            n++;
        }
    }
    CHECK(n == 2 && last == 2);

    /* an ack not yet durable still counts at the device's next login */
    h_hold_writes = true;
    h_ack(b1, "d:amy:bill", 2);
    h_close(b1);
    b1 = h_hello("bill", "d2", true);
    CHECK(h_is_ok(h_next(b1)));
    CHECK(h_is_str(h_next(b1), "op", "synced")); /* nothing to catch up */
    h_close(b1);
    h_release_writes();
    b1 = h_hello("bill", "d2", true);
    CHECK(h_is_ok(h_next(b1)) && h_is_str(h_next(b1), "op", "synced"));
    h_close(b1);

    login_while_loading(false);
    login_while_loading(true);
    removed_while_loading();
    /* a session replaced (or kicked) before its user's state is loaded still
     * has its hello answered, then the bye */
    h_hold_reads[h_home("rex")] = true;
    int x1 = h_hello_nosettle("rex", "d", false);
    h_settle();
    int x2 = h_hello_nosettle("rex", "d", false);
    int x3 = h_hello_nosettle("rex", "e", true);
    h_settle();
    CHECK(h_is_ok(h_next(x1)) && !h_conn(x1)->open && strcmp(h_conn(x1)->reason, "replaced") == 0);
    CHECK(h_next(x2) == NULL && h_next(x3) == NULL);
    memset(&h_admin[63], 0, sizeof(h_admin[63]));
    chat_admin_kick(h_chat(0), 63, strv_c("rex"));
    h_settle();
    CHECK(h_admin[63].calls == 1 && h_admin[63].err == 0 && h_admin[63].kicked == 2);
    CHECK(h_is_ok(h_next(x2)) && !h_conn(x2)->open && strcmp(h_conn(x2)->reason, "kicked") == 0);
    CHECK(h_is_ok(h_next(x3)) && h_next(x3) == NULL); /* no synced: it never started */
    h_release_reads();
    int x4 = h_hello("rex", "d", false);
    CHECK(h_is_ok(h_next(x4)));
    h_close(x4);

    /* stopping with storage work in flight releases everything (LeakSanitizer
     * checks): a send, an ack and a friend request written, a login read */
    h_stop();
    h_start(dir, true);
    int s1 = h_hello("sam", "s1", true);
    struct req sr = h_req(OP_SEND, 900);
    sr.to = strv_c("tom");
    sr.cmid = strv_c("inflight");
    sr.type = strv_c("text");
    sr.body = strv_c("x");
    h_request_nosettle(s1, &sr);
    struct req fr = h_req(OP_FRIEND_REQUEST, 901);
    fr.user = strv_c("tom");
    h_request_nosettle(s1, &fr);
    struct req ack = h_req(OP_ACK, 0);
    ack.has_id = false;
    ack.conv = strv_c("d:bill:amy");
    ack.seq = 1;
    h_request_nosettle(s1, &ack);
    for (int i = 0; i < 3; i++)
        h_step();
    chat_on_hello(h_chat(1), ((conn_id_t)60 << 32) | 7u, strv_c("ursula"), strv_c("u1"), true, 1);
    h_stop_abrupt();
    return h_finish(dir);
}
