/*
 * The owner's dedup cache: when a send must ask storage about its cmid and
 * when memory alone decides, and that dedup holds either way.
 *
 * Reads of the owner's shard are held back (h_hold_reads): a send that needs
 * no storage read is answered while they are held, one that needs it is not
 * answered until they are released. The two users are homed on the other
 * shard, so every read held there is the owner's.
 */
#include "harness.h"

#include "engine/chat/core.h"
#include "protocol/req.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static char ua[16], ub[16], conv[40];
static unsigned osh; /* the conversation's owner shard */

/* Two users homed off the owner shard of their direct conversation. */
static void pick_users(void)
{
    for (int i = 0; i < 1000; i++) {
        for (int j = i + 1; j < 1000; j++) {
            snprintf(ua, sizeof(ua), "ua%03d", i);
            snprintf(ub, sizeof(ub), "ub%03d", j);
            snprintf(conv, sizeof(conv), "d:%s:%s", ua, ub);
            osh = h_owner(conv);
            if (h_home(ua) != osh && h_home(ub) != osh)
                return;
        }
    }
    CHECK(!"no pair of users homed off their owner");
}

static struct owner *own(void)
{
    return &h_chat(osh)->owner;
}

/* Send cmid with the owner's reads held: the reply that came while they were
 * held (they are let go then), or NULL (they stay held; *id to wait for). */
static const msgpack_object *send_held(int conn, const char *cmid, uint32_t *id)
{
    h_hold_reads[osh] = true;
    *id = h_send_to(conn, ub, cmid, "x");
    const msgpack_object *r = h_reply(conn, *id);
    if (r)
        h_hold_reads[osh] = false; /* nothing was held */
    return r;
}

/* The reply to id once the held reads are done. */
static const msgpack_object *release_reply(int conn, uint32_t id)
{
    h_release_reads();
    return h_reply(conn, id);
}

static void test_new_conv_reads_nothing(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, ub, "c1", "first");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(ok && h_is_ok(ok) && h_u(ok, "seq") == 1);
    /* loaded with no entry: no record can be in storage */
    ok = send_held(a1, "c2", &id);
    CHECK(ok && h_u(ok, "seq") == 2 && !h_get(ok, "dup"));
    ok = send_held(a1, "c1", &id);
    CHECK(ok && h_u(ok, "seq") == 1 && h_get(ok, "dup")); /* found in memory */
    CHECK(own()->dd_reads == 0 && own()->dd_reads_skipped == 2);
    h_close(a1);
}

static void test_restart_recent_reads(void)
{
    h_stop();
    h_start(dir, true);
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    /* the first send loads the conversation: its last entry is recent */
    uint32_t id = h_send_to(a1, ub, "n1", "after restart");
    CHECK(h_u(h_reply(a1, id), "seq") == 3);
    CHECK(own()->dd_reads == 1 && own()->dd_reads_skipped == 0);
    /* a cmid from before the restart is only in storage: it must be read */
    CHECK(send_held(a1, "c1", &id) == NULL);
    const msgpack_object *ok = release_reply(a1, id);
    CHECK(ok && h_is_ok(ok) && h_u(ok, "seq") == 1 && h_get(ok, "dup"));
    /* and a new one too (memory cannot rule it out) */
    CHECK(send_held(a1, "n2", &id) == NULL);
    ok = release_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == 4 && !h_get(ok, "dup"));
    /* one it wrote since the load is found in memory */
    ok = send_held(a1, "n1", &id);
    CHECK(ok && h_u(ok, "seq") == 3 && h_get(ok, "dup"));
    CHECK(own()->dd_reads == 3);
    h_close(a1);
}

static void test_restart_old_skips(void)
{
    h_stop();
    h_start(dir, true);
    /* the last entry is now older than the window: nothing in storage is live */
    h_now += h_cfg.dedup_window_ms + 1000;
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, ub, "o1", "later");
    CHECK(h_u(h_reply(a1, id), "seq") == 5);
    const msgpack_object *ok = send_held(a1, "o2", &id);
    CHECK(ok && h_u(ok, "seq") == 6 && !h_get(ok, "dup"));
    CHECK(own()->dd_reads == 0 && own()->dd_reads_skipped == 2);
    h_close(a1);
}

static void test_evicted_live_reads(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    char cmid[16];
    for (int i = 0; i < 10; i++) {
        snprintf(cmid, sizeof(cmid), "e%d", i);
        h_send_to(a1, ub, cmid, "x");
    }
    h_drain(a1);
    uint32_t before = own()->ndedup;
    CHECK(before >= 10);
    /* memory is crowded: live records older than a minute go, oldest first */
    own()->dedup_max = 4;
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup == before); /* none is a minute old yet */
    h_now += OWNER_DEDUP_MIN_MS + 1000;
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup == 4);
    own()->dedup_max = OWNER_DEDUP_MAX;
    /* e0 is live but only in storage now: the send waits for the read */
    uint32_t id;
    CHECK(send_held(a1, "e0", &id) == NULL);
    const msgpack_object *ok = release_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == 7 && h_get(ok, "dup"));
    /* e9 is still in memory */
    ok = send_held(a1, "e9", &id);
    CHECK(ok && h_u(ok, "seq") == 16 && h_get(ok, "dup"));
    /* and a new cmid must be read too while an evicted record may be live */
    CHECK(send_held(a1, "e10", &id) == NULL);
    ok = release_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == 17 && !h_get(ok, "dup"));
    h_close(a1);
}

static void test_failed_write_reads(void)
{
    h_stop();
    h_start(dir, true);
    h_now += h_cfg.dedup_window_ms + 1000; /* everything before is out of the window */
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, ub, "f0", "x");
    CHECK(h_is_ok(h_reply(a1, id)));
    CHECK(send_held(a1, "f1", &id) != NULL);
    h_fail_writes = 1;
    id = h_send_to(a1, ub, "f2", "lost");
    CHECK(h_is_err(h_reply(a1, id), "unavailable"));
    /* storage is asked again after a failed write */
    CHECK(send_held(a1, "f2", &id) == NULL);
    const msgpack_object *ok = release_reply(a1, id);
    CHECK(ok && h_is_ok(ok) && !h_get(ok, "dup"));
    h_close(a1);
}

static void test_expiry(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, ub, "x1", "x");
    uint64_t seq = h_u(h_reply(a1, id), "seq");
    CHECK(own()->ndedup > 0);
    h_now += h_cfg.dedup_window_ms; /* exactly the window: still live */
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup > 0);
    CHECK(h_get(h_reply(a1, h_send_to(a1, ub, "x1", "x")), "dup"));
    h_now += 1;
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup == 0 && own()->dq_head == NULL && own()->dq_tail == NULL);
    /* past the window the cmid is new */
    id = h_send_to(a1, ub, "x1", "x");
    const msgpack_object *ok = h_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == seq + 1 && !h_get(ok, "dup"));
    h_close(a1);
}

/*
 * The window holds to the millisecond where a send is staged, not only at the
 * tick (once a second): a record in memory past it is not a dup, and neither
 * is one read from storage while it was live that aged past it before the
 * send was staged.
 */
static void test_expiry_between_ticks(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint32_t id = h_send_to(a1, ub, "t1", "x");
    uint64_t seq = h_u(h_reply(a1, id), "seq");
    h_now += h_cfg.dedup_window_ms + 1; /* no tick since */
    CHECK(own()->ndedup > 0);
    const msgpack_object *ok = h_reply(a1, h_send_to(a1, ub, "t1", "x"));
    CHECK(ok && h_u(ok, "seq") == seq + 1 && !h_get(ok, "dup"));
    CHECK(h_is_ok(h_reply(a1, h_send_to(a1, ub, "t2", "x"))));
    h_close(a1);
    /* t2 only in storage (a restart), read while live, staged after */
    h_stop();
    h_start(dir, true);
    a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    CHECK(h_is_ok(h_reply(a1, h_send_to(a1, ub, "t3", "x"))));
    CHECK(send_held(a1, "t2", &id) == NULL);
    h_now += h_cfg.dedup_window_ms + 1;
    ok = release_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == seq + 4 && !h_get(ok, "dup"));
    h_close(a1);
}

/*
 * A clock that was ahead once does not stop the expiry queue: the records
 * made then and after (whose time, the conversation's, stays ahead) age as
 * time passes and are evicted under pressure like any other.
 */
static void test_clock_ahead_once(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    uint64_t t0 = h_now;
    h_now = t0 + 10ull * 86400000;
    CHECK(h_is_ok(h_reply(a1, h_send_to(a1, ub, "ahead", "x"))));
    h_now = t0;
    char cmid[16];
    for (int i = 0; i < 10; i++) {
        snprintf(cmid, sizeof(cmid), "c%d", i);
        CHECK(h_is_ok(h_reply(a1, h_send_to(a1, ub, cmid, "x"))));
    }
    own()->dedup_max = 4;
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup >= 11); /* those 11 are not a minute old */
    h_now += OWNER_DEDUP_MIN_MS + 1000;
    chat_on_tick(h_chat(osh));
    CHECK(own()->ndedup == 4);
    own()->dedup_max = OWNER_DEDUP_MAX;
    /* evicted, live in storage: the retry reads it and gets the original */
    uint32_t id;
    CHECK(send_held(a1, "ahead", &id) == NULL);
    const msgpack_object *ok = release_reply(a1, id);
    CHECK(ok && h_get(ok, "dup"));
    h_close(a1);
}

/*
 * Past dedup_hard records memory is full: the oldest go at once (the flush
 * after the send that passed it), however young, and dedup still holds
 * through storage.
 */
static void test_memory_full_evicts_young(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    char cmid[16];
    uint64_t first = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(cmid, sizeof(cmid), "h%d", i);
        const msgpack_object *ok = h_reply(a1, h_send_to(a1, ub, cmid, "x"));
        CHECK(ok && h_is_ok(ok));
        if (i == 0)
            first = h_u(ok, "seq");
    }
    uint32_t before = own()->ndedup;
    CHECK(before >= 10);
    own()->dedup_hard = 4;
    CHECK(h_is_ok(h_reply(a1, h_send_to(a1, ub, "h10", "x")))); /* no tick, no time */
    CHECK(own()->ndedup == 4);
    own()->dedup_hard = OWNER_DEDUP_HARD;
    uint32_t id;
    CHECK(send_held(a1, "h0", &id) == NULL); /* only storage knows it */
    const msgpack_object *ok = release_reply(a1, id);
    CHECK(ok && h_u(ok, "seq") == first && h_get(ok, "dup"));
    ok = send_held(a1, "h10", &id); /* kept: among the newest */
    CHECK(ok && h_u(ok, "seq") == first + 10 && h_get(ok, "dup"));
    h_close(a1);
}

/*
 * A retry whose storage read ran before its original was durable, and whose
 * answer (not found) comes only after the original's record has left memory
 * (young, memory full): the answer is stale, the retry reads again and is
 * answered dup.
 */
static void test_read_answered_after_an_eviction(void)
{
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    own()->dedup_hard = 0; /* everything leaves memory: the conversation reads storage */
    chat_on_tick(h_chat(osh));
    own()->dedup_hard = OWNER_DEDUP_HARD;
    CHECK(own()->ndedup == 0);
    h_hold_reads[osh] = true;
    h_keep_done[osh] = 2; /* the retry's read */
    uint32_t id1 = h_send_to(a1, ub, "pz", "x");
    uint32_t id2 = h_send_to(a1, ub, "pz", "x");
    CHECK(h_reply(a1, id1) == NULL && h_reply(a1, id2) == NULL);
    h_release_reads(); /* neither finds pz; the original is written */
    CHECK(h_kept(osh));
    const msgpack_object *ok = h_reply(a1, id1);
    CHECK(ok && h_is_ok(ok) && !h_get(ok, "dup"));
    uint64_t seq = h_u(ok, "seq");
    own()->dedup_hard = 0; /* the original's record leaves memory */
    chat_on_tick(h_chat(osh));
    own()->dedup_hard = OWNER_DEDUP_HARD;
    h_release_kept(osh);
    ok = h_reply(a1, id2);
    CHECK(ok && h_is_ok(ok) && h_u(ok, "seq") == seq && h_get(ok, "dup"));
    h_close(a1);
}

/*
 * The requests waiting in a shard's conversations are bounded in bytes: while
 * a conversation cannot take them (here its load waits), those past
 * OWNER_QUEUED_BYTES are answered `unavailable` at once, and the others are
 * served once it is ready.
 */
static void test_queued_bytes_bound(void)
{
    char peer[16], cv2[40], cmid[16];
    for (int i = 0;; i++) {
        CHECK(i < 1000);
        snprintf(peer, sizeof(peer), "uq%03d", i);
        snprintf(cv2, sizeof(cv2), "d:%s:%s", ua, peer);
        if (h_owner(cv2) == osh)
            break;
    }
    static char body[32000];
    memset(body, 'q', sizeof(body));
    const uint32_t n = OWNER_QUEUED_BYTES / sizeof(body) + 64, id0 = 100000;
    int a1 = h_hello(ua, "a1", false);
    h_drain(a1);
    h_hold_reads[osh] = true; /* the conversation's load waits */
    for (uint32_t i = 0; i < n; i++) {
        struct req r = h_req(OP_SEND, id0 + i);
        snprintf(cmid, sizeof(cmid), "q%u", i);
        r.to = strv_c(peer);
        r.cmid = strv_c(cmid);
        r.type = strv_c("text");
        r.body = (struct strv){body, sizeof(body)};
        h_request_nosettle(a1, &r);
        h_step();
    }
    for (int i = 0; i < 10; i++)
        h_step();
    CHECK(own()->queued_bytes <= OWNER_QUEUED_BYTES);
    CHECK(own()->queued_bytes > OWNER_QUEUED_BYTES - 64 * sizeof(body));
    h_release_reads();
    uint32_t ok = 0, busy = 0;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *m = h_reply(a1, id0 + i);
        ok += m && h_is_ok(m);
        busy += m && h_is_err(m, "unavailable");
    }
    CHECK(ok + busy == n && busy >= 64 && ok > n - 128);
    CHECK(own()->queued_bytes == 0);
    h_close(a1);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_owner.%d", (int)getpid());
    h_start(dir, false);
    pick_users();
    test_new_conv_reads_nothing();
    test_restart_recent_reads();
    test_restart_old_skips();
    test_evicted_live_reads();
    test_failed_write_reads();
    test_expiry();
    test_expiry_between_ticks();
    test_clock_ahead_once();
    test_memory_full_evicts_young();
    test_read_answered_after_an_eviction();
    test_queued_bytes_bound();
    h_stop();
    return h_finish(dir);
}
