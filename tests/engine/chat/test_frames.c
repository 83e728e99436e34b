/*
 * Every frame the server sends fits max_frame (PROTOCOL §1), at the smallest
 * max_frame allowed and with everything at its longest: ids, cmid, type, a
 * body of the largest size config lets through, a group's name and notice,
 * a kick of more users than an event lists. The harness checks the size of
 * every frame it is sent; here each kind of frame is made at its largest.
 */
#include "harness.h"

#include "engine/chat/chat.h"
#include "protocol/ident.h"
#include "protocol/req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t nid = 1;
static char *made[64];
static unsigned nmade;

/* A string of n bytes: prefix, then fill up to n. Kept for the whole run. */
static const char *longest(const char *prefix, char fill, size_t n)
{
    char *s = malloc(n + 1);
    CHECK(s && nmade < sizeof(made) / sizeof(made[0]));
    made[nmade++] = s;
    size_t p = strlen(prefix);
    memcpy(s, prefix, p);
    memset(s + p, fill, n - p);
    s[n] = '\0';
    return s;
}

static const msgpack_object *call(int conn, struct req *r)
{
    r->id = ++nid;
    r->has_id = true;
    h_request(conn, r);
    return h_reply(conn, r->id);
}

/* The msgs of a history page of conv before seq (0: the newest). */
static const msgpack_object *history(int conn, const char *conv, uint64_t before)
{
    struct req r = h_req(OP_HISTORY, 0);
    r.conv = strv_c(conv);
    if (before) {
        r.before = before;
        r.has_before = true;
    }
    const msgpack_object *ok = call(conn, &r);
    CHECK(h_is_ok(ok));
    return ok;
}

static void test_messages_at_their_longest(void)
{
    const char *a = longest("fa", 'a', IDENT_USER_MAX);
    const char *b = longest("fb", 'b', IDENT_USER_MAX);
    const char *dev = longest("d", 'd', IDENT_DEVICE_MAX);
    const char *type = longest("x", 't', REQ_TYPE_MAX);
    const char *body = longest("", 'y', h_cfg.max_body);
    char conv[IDENT_CONV_MAX + 1];
    snprintf(conv, sizeof(conv), "d:%s:%s", a, b);

    int ca = h_hello(a, dev, false);
    int cb = h_hello(b, dev, false);
    h_drain(ca);
    h_drain(cb);
    for (int i = 0; i < 2; i++) {
        const char *cmid = longest(i ? "c1" : "c0", 'c', REQ_CMID_MAX);
        struct req r = h_send_req(b, NULL, cmid, type, body);
        r.body_bin = i == 1;
        CHECK(h_is_ok(call(ca, &r)));
        const msgpack_object *m = h_next_op(cb, "msg");
        CHECK(m && h_u(m, "seq") == (uint64_t)i + 1);
        CHECK(h_get(m, "body")->via.str.size == h_cfg.max_body);
    }
    /* history: one entry a page, each whole */
    const msgpack_object *ok = history(cb, conv, 0);
    const msgpack_object *msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 1 && h_u(&msgs->via.array.ptr[0], "seq") == 2);
    CHECK(h_get(ok, "more")->via.boolean);
    ok = history(cb, conv, 2);
    msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 1 && h_u(&msgs->via.array.ptr[0], "seq") == 1);
    /* catch-up on a new device */
    int cb2 = h_hello(b, "second", true);
    CHECK(h_is_ok(h_next(cb2)));
    for (uint64_t seq = 1; seq <= 2; seq++) {
        const msgpack_object *m = h_next(cb2);
        CHECK(h_is_str(m, "op", "msg") && h_u(m, "seq") == seq);
    }
    CHECK(h_is_str(h_next(cb2), "op", "synced"));
    h_close(ca);
    h_close(cb);
    h_close(cb2);
}

static void test_group_frames_at_their_longest(void)
{
    enum { N = 25 };
    const char *own = longest("go", 'o', IDENT_USER_MAX);
    const char *gid = longest("gg", 'g', IDENT_USER_MAX);
    const char *name = longest("n", 'n', REQ_NAME_MAX);
    const char *notice = longest("t", 't', REQ_NOTICE_MAX);
    const char *remark = longest("r", 'r', REQ_REMARK_MAX);
    struct strv users[N];
    for (int i = 0; i < N; i++) {
        char p[8];
        snprintf(p, sizeof(p), "m%02d", i);
        users[i] = strv_c(longest(p, 'm', IDENT_USER_MAX));
    }
    int co = h_hello(own, "d", false);
    int cm = h_hello(users[0].p, "d", false);
    h_drain(co);
    h_drain(cm);

    struct req r = h_req(OP_GROUP_CREATE, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    r.name = strv_c(name);
    r.has_name = true;
    r.users = users;
    r.nusers = N;
    CHECK(h_is_ok(call(co, &r)));
    r = h_req(OP_GROUP_UPDATE, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    r.name = strv_c(longest("m", 'n', REQ_NAME_MAX));
    r.has_name = true;
    r.notice = strv_c(notice);
    r.has_notice = true;
    CHECK(h_is_ok(call(co, &r)));
    r = h_req(OP_GROUP_REMARK, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    r.remark = strv_c(remark);
    CHECK(h_is_ok(call(co, &r)));
    r = h_req(OP_GROUP_INFO, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    const msgpack_object *ok = call(co, &r);
    CHECK(h_is_ok(ok) && h_get(ok, "notice")->via.str.size == REQ_NOTICE_MAX);
    r = h_req(OP_GROUP_MEMBERS, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    CHECK(h_is_ok(call(co, &r)));
    /* a kick of all but the one online: its event lists 20 */
    r = h_req(OP_GROUP_KICK, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    r.users = users + 1;
    r.nusers = N - 1;
    CHECK(h_is_ok(call(co, &r)));
    int events = 0;
    const msgpack_object *m;
    while ((m = h_next_op(cm, "msg")))
        events += h_is_str(m, "type", "event");
    CHECK(events == 3); /* create, update, kick */
    char conv[2 + IDENT_USER_MAX + 1];
    snprintf(conv, sizeof(conv), "g:%s", gid);
    ok = history(cm, conv, 0);
    CHECK(h_get(ok, "msgs")->via.array.size == 3);
    h_close(co);
    h_close(cm);
}

int main(void)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_frames.%d", (int)getpid());
    /* the smallest max_frame config takes, and the body it then allows */
    h_cfg.max_frame = CHAT_MAX_FRAME_MIN;
    h_cfg.max_body = CHAT_MAX_FRAME_MIN - CHAT_FRAME_RESERVE;
    h_start(dir, false);
    test_messages_at_their_longest();
    test_group_frames_at_their_longest();
    h_stop();
    while (nmade)
        free(made[--nmade]);
    return h_finish(dir);
}
