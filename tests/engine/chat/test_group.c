/* Groups through the chat layer: create/invite/join/kick/leave/dismiss/update/
 * admin/nick/remark/info/members/list, their permission rules and events, a
 * kicked member receiving the kick event and nothing after, joined_seq. */
#include "harness.h"

#include "protocol/req.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static uint32_t nid = 1;

static const msgpack_object *greq(int conn, struct req *r)
{
    r->id = ++nid;
    r->has_id = true;
    h_request(conn, r);
    return h_reply(conn, r->id);
}

static struct req gr(int op, const char *gid)
{
    struct req r = h_req(op, 0);
    r.group = strv_c(gid);
    r.has_group = true;
    return r;
}

static const msgpack_object *event(int conn, const char *kind)
{
    const msgpack_object *m;
    while ((m = h_next_op(conn, "msg")))
        if (h_is_str(m, "type", "event") && h_is_str(h_get(m, "data"), "kind", kind))
            return m;
    return NULL;
}

/*
 * A member's login may read its membership from storage before its home has
 * the entries committed with or before the join: the entries before the
 * join that arrive after the login are not pushed to it, the join and what
 * follows are. (With resume, the catch-up's own floor also keeps them out;
 * without, only the join's seq does.)
 */
static void test_entries_before_a_join_that_a_login_read_first(const char *gid, bool resume)
{
    char user[32], owner[32], peer[32], conv[40];
    snprintf(conv, sizeof(conv), "g:%s", gid);
    unsigned home = (h_owner(conv) + 1) % H_SHARDS;
    int i = 0;
    do
        snprintf(user, sizeof(user), "%s-late%d", gid, i++);
    while (h_home(user) != home);
    do
        snprintf(peer, sizeof(peer), "%s-peer%d", gid, i++);
    while (h_home(peer) != home);
    do
        snprintf(owner, sizeof(owner), "%s-lead%d", gid, i++);
    while (h_home(owner) != h_owner(conv));
    /* a member online at the new member's home: the entries go there */
    int o = h_hello(owner, "d", false), p = h_hello(peer, "d", false);
    h_drain(o);
    h_drain(p);
    struct strv ps[1] = {strv_c(peer)};
    struct req r = gr(OP_GROUP_CREATE, gid);
    r.name = strv_c("Race");
    r.has_name = true;
    r.users = ps;
    r.nusers = 1;
    CHECK(h_is_ok(greq(o, &r)));
    /* the deliveries to the new member's home wait, its login does not */
    h_hold_xmsgs[home] = true;
    uint32_t id = h_send_group(o, gid, "before", "not yours");
    CHECK(h_u(h_reply(o, id), "seq") == 2);
    struct strv us[1] = {strv_c(user)};
    r = gr(OP_GROUP_INVITE, gid);
    r.users = us;
    r.nusers = 1;
    CHECK(h_is_ok(greq(o, &r)));
    int l = h_hello(user, "d", resume);
    CHECK(h_is_ok(h_next(l)));
    h_release_xmsgs();
    h_settle();
    id = h_send_group(o, gid, "after", "yours");
    CHECK(h_u(h_reply(o, id), "seq") == 4);
    const msgpack_object *m = h_next_op(l, "msg");
    CHECK(m && h_u(m, "seq") == 3 && h_is_str(h_get(m, "data"), "kind", "invite"));
    m = h_next_op(l, "msg");
    CHECK(m && h_u(m, "seq") == 4);
    CHECK(h_next_op(l, "msg") == NULL);
    CHECK(h_count_op(p, "msg") == 4);
    h_close(l);
    h_close(p);
    h_close(o);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rp_test_chat_group.%d", (int)getpid());
    h_start(dir, false);
    int o = h_hello("owner", "d", false), a = h_hello("ann", "d", false);
    int b = h_hello("ben", "d", false), x = h_hello("xavier", "d", false);
    h_drain(o);
    h_drain(a);
    h_drain(b);
    h_drain(x);

    /* create with members; conflict on a taken id */
    struct strv mem[2] = {strv_c("ann"), strv_c("ben")};
    struct req r = gr(OP_GROUP_CREATE, "g1");
    r.name = strv_c("Team");
    r.has_name = true;
    r.users = mem;
    r.nusers = 2;
    const msgpack_object *ok = greq(o, &r);
    CHECK(h_is_ok(ok) && h_is_str(ok, "group", "g1") && h_is_str(ok, "conv", "g:g1"));
    const msgpack_object *ev = event(a, "create");
    CHECK(ev && h_u(ev, "seq") == 1 && h_is_str(ev, "from", "owner"));
    CHECK(h_u(h_get(ev, "data"), "count") == 3);
    CHECK(h_is_str(h_get(ev, "data"), "by", "owner"));
    CHECK(event(o, "create") == NULL); /* not to the acting device */
    CHECK(h_is_err(greq(x, &r), "conflict"));
    /* a generated id */
    struct req r2 = h_req(OP_GROUP_CREATE, 0);
    r2.name = strv_c("Solo");
    r2.has_name = true;
    ok = greq(x, &r2);
    CHECK(h_is_ok(ok) && h_get(ok, "group") && h_get(ok, "group")->via.str.size > 0);

    /* sends: members only; no such group */
    CHECK(event(b, "create"));
    uint32_t id = h_send_group(a, "g1", "m1", "hello");
    CHECK(h_u(h_reply(a, id), "seq") == 2);
    CHECK(h_u(h_next_op(b, "msg"), "seq") == 2 && h_u(h_next_op(o, "msg"), "seq") == 2);
    id = h_send_group(x, "g1", "m1", "intruder");
    CHECK(h_is_err(h_reply(x, id), "forbidden"));
    id = h_send_group(x, "nope", "m1", "?");
    CHECK(h_is_err(h_reply(x, id), "not_found"));

    /* permissions */
    struct strv xs[1] = {strv_c("xavier")};
    r = gr(OP_GROUP_KICK, "g1");
    r.users = mem + 1;
    r.nusers = 1;
    CHECK(h_is_err(greq(a, &r), "forbidden")); /* a plain member cannot kick */
    r = gr(OP_GROUP_LEAVE, "g1");
    CHECK(h_is_err(greq(o, &r), "forbidden")); /* the owner cannot leave */
    r = gr(OP_GROUP_JOIN, "g1");
    CHECK(h_is_err(greq(x, &r), "forbidden")); /* not open */
    r = gr(OP_GROUP_UPDATE, "g1");
    r.open = true;
    r.has_open = true;
    CHECK(h_is_err(greq(a, &r), "forbidden"));
    r = gr(OP_GROUP_ADMIN, "g1");
    r.user = strv_c("ann");
    r.admin = true;
    r.has_admin = true;
    CHECK(h_is_err(greq(a, &r), "forbidden"));
    CHECK(h_is_ok(greq(o, &r)));
    ev = event(b, "admin");
    CHECK(ev && h_get(h_get(ev, "data"), "admin")->via.boolean);
    /* an admin updates; the event carries the changed fields */
    r = gr(OP_GROUP_UPDATE, "g1");
    r.open = true;
    r.has_open = true;
    r.notice = strv_c("be nice");
    r.has_notice = true;
    CHECK(h_is_ok(greq(a, &r)));
    ev = event(b, "update");
    CHECK(ev && h_is_str(h_get(ev, "data"), "notice", "be nice"));
    CHECK(h_get(h_get(ev, "data"), "open")->via.boolean && !h_get(h_get(ev, "data"), "name"));

    /* open: xavier joins and reads from his joined_seq */
    r = gr(OP_GROUP_JOIN, "g1");
    CHECK(h_is_ok(greq(x, &r)));
    ev = event(o, "join");
    uint64_t joined = h_u(ev, "seq");
    CHECK(h_u(h_get(ev, "data"), "count") == 1);
    struct req hr = h_req(OP_HISTORY, 0);
    hr.conv = strv_c("g:g1");
    ok = greq(x, &hr);
    const msgpack_object *msgs = h_get(ok, "msgs");
    CHECK(msgs->via.array.size == 1 && h_u(&msgs->via.array.ptr[0], "seq") == joined);
    ok = greq(o, &hr);
    CHECK(h_get(ok, "msgs")->via.array.size == joined);
    /* and his unread count starts there: the join event, his own doing, is read */
    struct req sr = h_req(OP_SYNC, 0);
    ok = greq(x, &sr);
    const msgpack_object *sc = h_get(ok, "convs"), *g1 = NULL;
    for (uint32_t i = 0; sc && i < sc->via.array.size; i++)
        if (h_is_str(&sc->via.array.ptr[i], "conv", "g:g1"))
            g1 = &sc->via.array.ptr[i];
    CHECK(g1 && h_u(g1, "unread") == 0 && h_u(g1, "read_seq") == joined);

    /* members and info */
    r = gr(OP_GROUP_MEMBERS, "g1");
    ok = greq(x, &r);
    const msgpack_object *ms = h_get(ok, "members");
    CHECK(ms->via.array.size == 4 && !h_get(ok, "more")->via.boolean);
    CHECK(h_is_str(&ms->via.array.ptr[0], "user", "ann")); /* sorted by id */
    CHECK(h_is_str(&ms->via.array.ptr[0], "role", "admin"));
    CHECK(h_is_str(&ms->via.array.ptr[2], "role", "owner"));
    CHECK(h_u(&ms->via.array.ptr[3], "joined_seq") == joined);
    r = gr(OP_GROUP_MEMBERS, "g1");
    r.limit = 2;
    r.has_limit = true;
    r.after_user = strv_c("ann");
    r.has_after = true;
    ok = greq(x, &r);
    ms = h_get(ok, "members");
    CHECK(ms->via.array.size == 2 && h_get(ok, "more")->via.boolean);
    CHECK(h_is_str(&ms->via.array.ptr[0], "user", "ben"));
    r = gr(OP_GROUP_REMARK, "g1");
    r.remark = strv_c("my note");
    CHECK(h_is_ok(greq(b, &r)));
    r = gr(OP_GROUP_NICK, "g1");
    r.nick = strv_c("benny");
    CHECK(h_is_ok(greq(b, &r)));
    CHECK(event(o, "nick"));
    r = gr(OP_GROUP_INFO, "g1");
    ok = greq(b, &r);
    CHECK(h_is_str(ok, "name", "Team") && h_is_str(ok, "owner", "owner") && h_u(ok, "count") == 4 &&
          h_is_str(ok, "remark", "my note"));
    uint64_t last = h_u(ok, "last_seq");
    ok = greq(o, &r);
    CHECK(h_is_str(ok, "remark", "")); /* the remark is private */
    CHECK(h_u(ok, "last_seq") == last);
    /* changes that change nothing succeed with no entry and no event */
    h_drain(o);
    r = gr(OP_GROUP_ADMIN, "g1");
    r.user = strv_c("ann");
    r.admin = true;
    r.has_admin = true;
    CHECK(h_is_ok(greq(o, &r))); /* ann is an admin already */
    r.user = strv_c("ben");
    r.admin = false;
    CHECK(h_is_ok(greq(o, &r))); /* ben is a plain member */
    r = gr(OP_GROUP_UPDATE, "g1");
    r.name = strv_c("Team");
    r.has_name = true;
    r.notice = strv_c("be nice");
    r.has_notice = true;
    r.open = true;
    r.has_open = true;
    CHECK(h_is_ok(greq(a, &r)));
    r = gr(OP_GROUP_NICK, "g1");
    r.nick = strv_c("benny");
    CHECK(h_is_ok(greq(b, &r)));
    r = gr(OP_GROUP_INFO, "g1");
    CHECK(h_u(greq(o, &r), "last_seq") == last);
    CHECK(h_next_op(o, "msg") == NULL);
    r = h_req(OP_GROUP_LIST, 0);
    ok = greq(b, &r);
    const msgpack_object *gl = h_get(ok, "groups");
    CHECK(gl->via.array.size == 1 && h_is_str(&gl->via.array.ptr[0], "name", "Team") &&
          h_is_str(&gl->via.array.ptr[0], "role", "member"));

    /* kick: the kicked member gets the kick event and nothing after */
    id = h_send_group(x, "g1", "x1", "before the kick");
    ok = h_reply(x, id);
    CHECK(h_is_ok(ok));
    uint64_t x1_seq = h_u(ok, "seq");
    h_drain(x);
    r = gr(OP_GROUP_KICK, "g1");
    r.users = xs;
    r.nusers = 1;
    CHECK(h_is_ok(greq(a, &r)));
    ev = event(x, "kick");
    CHECK(ev);
    const msgpack_object *ku = &h_get(h_get(ev, "data"), "users")->via.array.ptr[0];
    CHECK(ku->type == MSGPACK_OBJECT_STR && ku->via.str.size == 6 &&
          memcmp(ku->via.str.ptr, "xavier", 6) == 0);
    id = h_send_group(o, "g1", "after-kick", "secret");
    CHECK(h_is_ok(h_reply(o, id)));
    CHECK(h_count_op(x, "msg") == 0);
    id = h_send_group(x, "g1", "x2", "let me in");
    CHECK(h_is_err(h_reply(x, id), "forbidden"));
    /* a retry of what was stored before the kick gets the original */
    id = h_send_group(x, "g1", "x1", "before the kick");
    ok = h_reply(x, id);
    CHECK(h_is_ok(ok) && h_u(ok, "seq") == x1_seq && h_get(ok, "dup"));
    ok = greq(x, &hr);
    CHECK(h_is_err(ok, "forbidden"));
    /* an admin cannot kick the owner */
    struct strv os[1] = {strv_c("owner")};
    r = gr(OP_GROUP_KICK, "g1");
    r.users = os;
    r.nusers = 1;
    CHECK(h_is_err(greq(a, &r), "forbidden"));

    /* leave, then dismiss: later sends and joins are not_found */
    r = gr(OP_GROUP_LEAVE, "g1");
    CHECK(h_is_ok(greq(b, &r)));
    CHECK(event(o, "leave"));
    r = gr(OP_GROUP_DISMISS, "g1");
    CHECK(h_is_err(greq(a, &r), "forbidden"));
    CHECK(h_is_ok(greq(o, &r)));
    CHECK(event(a, "dismiss"));
    id = h_send_group(o, "g1", "post", "x");
    CHECK(h_is_err(h_reply(o, id), "not_found"));
    id = h_send_group(o, "g1", "after-kick", "secret"); /* a retry: the original */
    ok = h_reply(o, id);
    CHECK(h_is_ok(ok) && h_get(ok, "dup"));
    r = gr(OP_GROUP_JOIN, "g1");
    CHECK(h_is_err(greq(x, &r), "not_found"));

    /* state survives a restart (loaded lazily) */
    h_stop();
    h_start(dir, true);
    o = h_hello("owner", "d", false);
    h_drain(o);
    id = h_send_group(o, "g1", "post2", "x");
    CHECK(h_is_err(h_reply(o, id), "not_found"));
    h_close(o);
    test_entries_before_a_join_that_a_login_read_first("jr", false);
    test_entries_before_a_join_that_a_login_read_first("jq", true);
    h_stop();
    return h_finish(dir);
}
