/* The sweep of pending friend sides after a start (engine/chat/friend.c):
 * every side a past run left is written without its user logging in, over
 * many pages, and a load that fails is done again at a later tick. */
#include "harness.h"

#include "engine/chat/core.h"
#include "engine/chat/home.h"
#include "engine/chat/values.h"

#include "base/buf.h"
#include "storage/key.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

#define PAST_RUN 999999u /* no run of the harness has this id */

enum { PENDING, ROW };

static bool has(int what, const char *user, const char *peer, uint64_t ts)
{
    struct buf k;
    buf_init(&k);
    CHECK((what == PENDING ? stg_key_friend_pending(&k, user, strlen(user), peer, strlen(peer), ts)
                           : stg_key_friend(&k, user, strlen(user), peer, strlen(peer))) == 0);
    bool r = h_has_raw(STG_CF_FRIEND, k.data, k.len);
    buf_deinit(&k);
    return r;
}

/* A request from peer to user whose side at user a past run did not write. */
static void put_pending(const char *user, const char *peer, uint64_t ts)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    struct friend_rec r = {.state = FRIEND_ASKING, .ts = ts, .note = {"", 0}, .run = PAST_RUN};
    CHECK(stg_key_friend_pending(&k, user, strlen(user), peer, strlen(peer), ts) == 0);
    CHECK(val_friend_encode(&v, &r) == 0);
    h_put_raw(STG_CF_FRIEND, k.data, k.len, v.data, v.len);
    buf_deinit(&k);
    buf_deinit(&v);
}

static void tick(void)
{
    for (unsigned i = 0; i < H_SHARDS; i++)
        chat_on_tick(h_chat(i));
    h_settle();
}

static bool loaded(const char *user)
{
    return home_user(h_chat(h_home(user)), (struct strv){user, (uint32_t)strlen(user)}) != NULL;
}

/* 300 records of 100 users: pages of the sweep end inside a user's records */
static void test_pages(void)
{
    char u[32], p[32];
    uint64_t ts = h_now - 100;
    for (int i = 0; i < 100; i++) {
        snprintf(u, sizeof(u), "swu%d", i);
        for (int j = 0; j < 3; j++) {
            snprintf(p, sizeof(p), "swp%d", j);
            put_pending(u, p, ts + (uint64_t)j);
        }
    }
    h_stop();
    h_start(dir, true);
    tick();
    for (int i = 0; i < 100; i++) {
        snprintf(u, sizeof(u), "swu%d", i);
        for (int j = 0; j < 3; j++) {
            snprintf(p, sizeof(p), "swp%d", j);
            CHECK(!has(PENDING, u, p, ts + (uint64_t)j) && has(ROW, u, p, 0));
        }
        CHECK(!loaded(u)); /* let go again */
    }
    int c = h_hello("swu7", "d", false);
    CHECK(h_next_op(c, "friend") == NULL); /* written before: nothing to replay */
    h_close(c);
}

/* a load that fails leaves the record; the sweep does it again after a pause */
static void test_failed_load(void)
{
    uint64_t ts = h_now - 50;
    put_pending("swf", "swq", ts);
    h_stop();
    h_start(dir, true);
    h_fail_reads = 1;
    h_fail_reads_cf = STG_CF_CURSOR; /* one of the user's load reads */
    tick();
    CHECK(h_fail_reads == 0);
    CHECK(has(PENDING, "swf", "swq", ts) && !has(ROW, "swf", "swq", 0) && !loaded("swf"));
    tick(); /* a pause of a tick after a failure */
    CHECK(has(PENDING, "swf", "swq", ts));
    tick();
    CHECK(!has(PENDING, "swf", "swq", ts) && has(ROW, "swf", "swq", 0) && !loaded("swf"));
}

/*
 * The sweep finds its user loading for a hello, and the hello closes before
 * the load ends: the sweep waits for that load, which goes on (a login alone
 * would stop it), and the record is written.
 */
static void test_login_load_joined(void)
{
    uint64_t ts = h_now - 40;
    const char *u = "swl";
    put_pending(u, "swm", ts);
    h_stop();
    h_start(dir, true);
    struct chat *hc = h_chat(h_home(u));
    h_hold_reads[h_home(u)] = true; /* the hello's first load read waits */
    int b = h_hello_nosettle(u, "d1", false);
    for (int i = 0; i < 5; i++)
        h_step();
    h_hold_reads[h_home(u)] = false; /* that read stays held; the sweep's run */
    chat_on_tick(hc);
    for (int i = 0; i < 2000 && hc->home.sweep_loads == 0; i++) {
        h_step();
        usleep(1000);
    }
    CHECK(hc->home.sweep_loads == 1); /* the login's load, joined */
    uint64_t abandoned = hc->stats.user_loads_abandoned;
    h_close(b);
    CHECK(hc->stats.user_loads_abandoned == abandoned);
    h_release_reads();
    for (int i = 0; i < 3; i++)
        tick();
    CHECK(!has(PENDING, u, "swm", ts) && has(ROW, u, "swm", 0) && !loaded(u));
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_sweep.%d", (int)getpid());
    h_start(dir, false);
    test_pages();
    test_failed_load();
    test_login_load_joined();
    h_stop();
    return h_finish(dir);
}
