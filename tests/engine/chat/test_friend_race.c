/*
 * Friend ops of a pair's two users that cross (each decided at its user's
 * home before the other's op arrived there) end the same on both sides:
 * live and after a crash that lost both forwards, also when the two ops
 * have the same time; and ops of one user waiting at the peer's home behind
 * a side that could not be written do not take the peer's own room.
 */
#include "harness.h"

#include "engine/chat/core.h"
#include "engine/chat/home.h"
#include "engine/chat/values.h"
#include "storage/key.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void op(int conn, int kind, uint32_t id, const char *user, bool settle)
{
    struct req r = h_req(kind, id);
    r.user = strv_c(user);
    if (settle)
        h_request(conn, &r);
    else
        h_request_nosettle(conn, &r);
}

/* "friend", "request" (from peer) or "none": what conn's friend.list says of peer */
static const char *view(int conn, uint32_t id, const char *peer)
{
    struct req r = h_req(OP_FRIEND_LIST, id);
    h_request(conn, &r);
    const msgpack_object *rep = h_reply(conn, id);
    const msgpack_object *f = h_get(rep, "friends"), *q = h_get(rep, "requests");
    for (uint32_t i = 0; f && i < f->via.array.size; i++)
        if (h_is_str(&f->via.array.ptr[i], "user", peer))
            return "friend";
    for (uint32_t i = 0; q && i < q->via.array.size; i++)
        if (h_is_str(&q->via.array.ptr[i], "from", peer))
            return "request";
    return "none";
}

/* Two users with different homes. */
static void pair(const char *pa, const char *pb, char *a, char *b)
{
    for (int i = 0;; i++) {
        snprintf(a, 32, "%s%d", pa, i);
        snprintf(b, 32, "%s%d", pb, i);
        if (h_home(a) != h_home(b))
            return;
    }
}

/* Two users with different homes (into a, b), online as *ca and *cb, a's
 * friend request to b answered and pushed; then the clock moves a second
 * and the messages between shards are held. */
static void requested(const char *pa, const char *pb, char *a, char *b, int *ca, int *cb)
{
    pair(pa, pb, a, b);
    *ca = h_hello(a, "d", false);
    *cb = h_hello(b, "d", false);
    op(*ca, OP_FRIEND_REQUEST, 1, b, true);
    h_drain(*ca);
    h_drain(*cb);
    h_now += 1000;
    h_hold_xmsgs[0] = h_hold_xmsgs[1] = true;
}

/* a withdraws its request while b accepts it, both ops at the same
 * millisecond; the forwards wait (and, with crash, are lost with a stop) */
static void test_crossing_at_the_same_time(bool crash)
{
    char a[32], b[32];
    int ca, cb;
    requested(crash ? "tca" : "tla", crash ? "tcb" : "tlb", a, b, &ca, &cb);
    CHECK(strcmp(view(cb, 2, a), "request") == 0);
    /* both ops get exactly h_now as their time */
    op(ca, OP_FRIEND_REMOVE, 3, b, false);
    op(cb, OP_FRIEND_ACCEPT, 4, a, false);
    h_settle();
    CHECK(h_is_ok(h_reply(ca, 3)) && h_is_ok(h_reply(cb, 4)));
    if (crash) {
        h_stop_abrupt(); /* the pending records stay, the forwards are gone */
        h_now += 1000;
        h_start(dir, true);
        h_hold_xmsgs[0] = h_hold_xmsgs[1] = false;
        ca = h_hello(a, "d", false);
        cb = h_hello(b, "d", false);
    } else {
        h_hold_xmsgs[0] = h_hold_xmsgs[1] = false;
        h_release_xmsgs();
    }
    const char *va = view(ca, 10, b), *vb = view(cb, 11, a);
    CHECK(strcmp(va, vb) == 0 && (strcmp(va, "friend") == 0 || strcmp(va, "none") == 0));
    h_close(ca);
    h_close(cb);
}

/* a withdraws its request (the later op) while b's accept of it is on its
 * way to a's home, where a is not loaded (offline) or still loading when it
 * comes: a's side is checked as stored, and both sides end as nothing */
static void test_crossing_with_the_peer_not_loaded(bool loading)
{
    char a[32], b[32];
    int ca, cb;
    requested(loading ? "lda" : "ofa", loading ? "ldb" : "ofb", a, b, &ca, &cb);
    op(cb, OP_FRIEND_ACCEPT, 2, a, false); /* time t */
    h_settle();
    h_now += 1;
    op(ca, OP_FRIEND_REMOVE, 3, b, false); /* time t+1: the later op */
    h_settle();
    CHECK(h_is_ok(h_reply(cb, 2)) && h_is_ok(h_reply(ca, 3)));
    h_close(ca); /* a is no longer loaded at its home */
    if (loading) {
        h_hold_reads[h_home(a)] = true;
        ca = h_hello_nosettle(a, "d", false);
        h_settle();
    }
    h_hold_xmsgs[0] = h_hold_xmsgs[1] = false;
    h_release_xmsgs(); /* b's accept reaches a's home */
    if (loading) {
        h_hold_reads[h_home(a)] = false;
        h_release_reads();
        h_settle();
    } else {
        ca = h_hello(a, "d", false);
    }
    const char *va = view(ca, 10, b), *vb = view(cb, 11, a);
    CHECK(strcmp(va, "none") == 0 && strcmp(vb, "none") == 0);
    h_close(ca);
    h_close(cb);
}

/* a's side of b is parked (its write failed) at b's home; 400 ops of a
 * follow; b's own accept waits with them instead of being refused, and once
 * the side is written everything ends the same on both sides */
static void test_peer_ops_behind_a_parked_side(void)
{
    char a[32], b[32];
    pair("qa", "qb", a, b);
    int ca = h_hello(a, "d", false), cb = h_hello(b, "d", false);
    h_hold_writes = true;
    op(ca, OP_FRIEND_REQUEST, 1, b, true);
    h_fail_writes = 1; /* the first write released is b's side: parked */
    h_release_writes();
    CHECK(h_is_ok(h_reply(ca, 1)));
    uint32_t id = 100;
    for (int i = 0; i < 200; i++) {
        op(ca, OP_FRIEND_REMOVE, id++, b, true);
        op(ca, OP_FRIEND_REQUEST, id++, b, true);
    }
    for (uint32_t i = 100; i < id; i++)
        CHECK(h_is_ok(h_reply(ca, i)));
    CHECK(strcmp(view(cb, 8, a), "none") == 0); /* nothing of a's written at b's home yet */
    op(cb, OP_FRIEND_ACCEPT, 9, a, true);
    CHECK(h_reply(cb, 9) == NULL); /* waits behind the parked side, not refused */
    chat_on_tick(h_chat(h_home(b)));
    h_settle();
    CHECK(h_is_ok(h_reply(cb, 9))); /* a's last op was a request */
    CHECK(strcmp(view(ca, 20, b), "friend") == 0 && strcmp(view(cb, 21, a), "friend") == 0);
    h_close(ca);
    h_close(cb);
}

/* A user who asks and then withdraws from 9,999 users (with its one friend,
 * as many as it may ask) keeps a removal mark of each while here; once its
 * entries reach 10,000 again, the marks older than a minute go. Its next
 * load is cut by the removal rows (9,999 of them come first), which that
 * load clears: a friend past them is back at the load after. */
static void test_old_removal_marks_go(void)
{
    const char *x = "marker";
    int cx = h_hello(x, "d", false), cz = h_hello("zzfriend", "d", false);
    op(cx, OP_FRIEND_REQUEST, 900, "zzfriend", true);
    op(cz, OP_FRIEND_ACCEPT, 901, x, true);
    CHECK(h_is_ok(h_reply(cz, 901)));
    h_close(cz);
    char peer[32];
    uint32_t id = 1000;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 9999; i++) {
            snprintf(peer, sizeof(peer), "mk%d", i);
            op(cx, pass ? OP_FRIEND_REMOVE : OP_FRIEND_REQUEST, id++, peer, false);
            if (i % 500 == 499) {
                h_settle();
                h_drain(cx);
            }
        }
        h_settle();
        h_drain(cx);
    }
    struct user *u = home_user(h_chat(h_home(x)), strv_c(x));
    CHECK(u && map_count(&u->friends) == 10000); /* marks now, and the friend */
    h_now += 100000; /* op times run ahead of a still clock: one ms per op */
    for (int i = 0; i < 1100; i++) {
        snprintf(peer, sizeof(peer), "mn%d", i);
        op(cx, OP_FRIEND_REQUEST, id++, peer, false);
    }
    h_settle();
    h_drain(cx);
    u = home_user(h_chat(h_home(x)), strv_c(x));
    CHECK(u && map_count(&u->friends) < 1300);
    h_close(cx);
    cx = h_hello(x, "d", false); /* cut: 10,000 removal rows come first */
    u = home_user(h_chat(h_home(x)), strv_c(x));
    CHECK(u && u->friends_cut && strcmp(view(cx, 5000, "zzfriend"), "none") == 0);
    h_close(cx);
    cx = h_hello(x, "d", false);
    CHECK(strcmp(view(cx, 5001, "zzfriend"), "friend") == 0);
    h_close(cx);
}

/* b withdraws (a mark at t2) while a's older accept (t1) waits on its way
 * to b's home for over a minute, during which b's entries pass 10,000 and
 * the mark goes: the accept is checked against b's stored removal row. */
static void test_a_pruned_mark_still_counts(void)
{
    char a[32], b[32];
    pair("pra", "prb", a, b);
    unsigned hb = h_home(b), ha = h_home(a);
    int ca = h_hello(a, "d", false), cb = h_hello(b, "d", false);
    op(cb, OP_FRIEND_REQUEST, 1, a, true); /* b asks a */
    h_drain(ca);
    h_drain(cb);
    h_now += 100000; /* past the op times earlier tests ran ahead to */
    h_hold_xmsgs[hb] = true;
    op(ca, OP_FRIEND_ACCEPT, 2, b, true); /* t1; its forward to b's home waits */
    h_now += 1;
    op(cb, OP_FRIEND_REMOVE, 3, a, true); /* t2 > t1 */
    CHECK(h_is_ok(h_reply(ca, 2)) && h_is_ok(h_reply(cb, 3)));
    h_now += 100000;
    char peer[32];
    uint32_t id = 100;
    for (int i = 0, n = 0; n < 10100; i++) {
        snprintf(peer, sizeof(peer), "pp%d", i);
        if (h_home(peer) != ha)
            continue; /* forwards to a's home, not held */
        n++;
        op(cb, OP_FRIEND_REQUEST, id++, peer, false);
        if (n % 500 == 0) {
            h_settle();
            h_drain(cb);
        }
    }
    h_settle();
    h_drain(cb);
    struct user *u = home_user(h_chat(hb), strv_c(b));
    CHECK(u && !map_get(&u->friends, a, (uint32_t)strlen(a))); /* the mark went */
    h_hold_xmsgs[hb] = false;
    h_release_xmsgs();
    const char *va = view(ca, 10, b), *vb = view(cb, 11, a);
    CHECK(strcmp(va, "none") == 0 && strcmp(vb, "none") == 0);
    h_close(ca);
    h_close(cb);
}

/* n stored requests to user from peers <prefix>00000.. (both sides, as a
 * friend.request writes them), without the ops. */
static void stored_requests(const char *user, const char *prefix, int n)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    char peer[32];
    for (int i = 0; i < n; i++) {
        snprintf(peer, sizeof(peer), "%s%05d", prefix, i);
        struct friend_rec asking = {.state = FRIEND_ASKING, .ts = h_now - 1000},
                          asked = {.state = FRIEND_ASKED, .ts = h_now - 1000};
        buf_reset(&k);
        buf_reset(&v);
        CHECK(stg_key_friend(&k, user, strlen(user), peer, strlen(peer)) == 0 &&
              val_friend_encode(&v, &asking) == 0);
        h_put_raw(STG_CF_FRIEND, k.data, k.len, v.data, v.len);
        buf_reset(&k);
        buf_reset(&v);
        CHECK(stg_key_friend(&k, peer, strlen(peer), user, strlen(user)) == 0 &&
              val_friend_encode(&v, &asked) == 0);
        h_put_raw(STG_CF_FRIEND, k.data, k.len, v.data, v.len);
    }
    buf_deinit(&k);
    buf_deinit(&v);
}

static uint8_t mem_state(const char *user, const char *peer)
{
    struct user *u = home_user(h_chat(h_home(user)), strv_c(user));
    const struct ufriend *f = u ? map_get(&u->friends, peer, (uint32_t)strlen(peer)) : NULL;
    return f ? f->state : 0xff;
}

/* A user has at most 10,000 friends and requests: past that its new
 * requests are refused, the requests it receives are stored but not kept in
 * memory, and every stored request can still be accepted (it was
 * not_found once the user's rows were cut, at a login or while online). */
static void test_friend_cap(void)
{
    /* cut at login: 10,050 stored requests, 10,000 read */
    stored_requests("capr", "cq", 10050);
    int cr = h_hello("capr", "d", false);
    struct user *u = home_user(h_chat(h_home("capr")), strv_c("capr"));
    CHECK(u && u->friends_cut && map_count(&u->friends) == 10000);
    op(cr, OP_FRIEND_REQUEST, 101, "capnew", true);
    CHECK(h_is_err(h_reply(cr, 101), "too_large"));
    CHECK(mem_state("capr", "cq10040") == 0xff); /* not in memory */
    op(cr, OP_FRIEND_ACCEPT, 102, "cq10040", true);
    CHECK(h_is_ok(h_reply(cr, 102)));
    CHECK(mem_state("capr", "cq10040") == FRIEND_YES);
    op(cr, OP_FRIEND_ACCEPT, 103, "cq00001", true);
    CHECK(h_is_ok(h_reply(cr, 103)));
    op(cr, OP_FRIEND_ACCEPT, 104, "cqnone", true); /* nothing stored: still not_found */
    CHECK(h_is_err(h_reply(cr, 104), "not_found"));
    h_close(cr);
    int cp = h_hello("cq10040", "d", false);
    CHECK(strcmp(view(cp, 105, "capr"), "friend") == 0);
    h_close(cp);

    /* cut while online: 9,999 stored, then two requests arrive */
    stored_requests("capo", "co", 9999);
    int co = h_hello("capo", "d", false);
    u = home_user(h_chat(h_home("capo")), strv_c("capo"));
    CHECK(u && !u->friends_cut && map_count(&u->friends) == 9999);
    int w1 = h_hello("capw1", "d", false), w2 = h_hello("capw2", "d", false);
    op(w1, OP_FRIEND_REQUEST, 106, "capo", true);
    op(w2, OP_FRIEND_REQUEST, 107, "capo", true);
    CHECK(h_is_ok(h_reply(w1, 106)) && h_is_ok(h_reply(w2, 107)));
    u = home_user(h_chat(h_home("capo")), strv_c("capo"));
    CHECK(u && u->friends_cut && map_count(&u->friends) == 10000); /* w2's is stored only */
    CHECK(mem_state("capo", "capw2") == 0xff);
    op(co, OP_FRIEND_ACCEPT, 108, "capw2", true);
    CHECK(h_is_ok(h_reply(co, 108)));
    CHECK(strcmp(view(w2, 109, "capo"), "friend") == 0);
    op(co, OP_FRIEND_REQUEST, 110, "capw3", true); /* full */
    CHECK(h_is_err(h_reply(co, 110), "too_large"));
    h_close(co);
    h_close(w1);
    h_close(w2);

    /* an accept that waited behind the peer's side of the request (being
     * written, and then not held): it reads the stored row too */
    stored_requests("capq", "cz", 10050);
    char p[32];
    for (int i = 0;; i++) { /* a peer with another home */
        snprintf(p, sizeof(p), "capp%d", i);
        if (h_home(p) != h_home("capq"))
            break;
    }
    int cq = h_hello("capq", "d", false), cp2 = h_hello(p, "d", false);
    unsigned hq = h_home("capq");
    h_hold_xmsgs[hq] = true;
    op(cp2, OP_FRIEND_REQUEST, 111, "capq", true); /* p's side is written */
    CHECK(h_is_ok(h_reply(cp2, 111)));
    h_hold_writes = true;
    h_hold_xmsgs[hq] = false;
    h_release_xmsgs(); /* capq's side: read (not held), then being written */
    CHECK(h_held_writes(hq) > 0);
    op(cq, OP_FRIEND_ACCEPT, 112, p, true); /* waits behind it */
    CHECK(h_reply(cq, 112) == NULL);
    h_hold_writes = false;
    h_release_writes();
    CHECK(h_is_ok(h_reply(cq, 112)));
    CHECK(mem_state("capq", p) == FRIEND_YES);
    h_close(cq);
    h_close(cp2);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_friend_race.%d", (int)getpid());
    h_start(dir, false);
    test_crossing_at_the_same_time(false);
    test_crossing_at_the_same_time(true);
    test_crossing_with_the_peer_not_loaded(false);
    test_crossing_with_the_peer_not_loaded(true);
    test_peer_ops_behind_a_parked_side();
    test_old_removal_marks_go();
    test_a_pruned_mark_still_counts();
    test_friend_cap();
    h_stop();
    return h_finish(dir);
}
