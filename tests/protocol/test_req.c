/*
 * Request decoding: every op decoded from frames built with msgpack-c, each
 * validation rule on its own, the id echo on errors, decoder reuse, and
 * truncation of a valid frame at every byte.
 */
#include "check.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/req.h"

#include <msgpack.h>
#include <string.h>

/* One key/value of a test frame. t: s str, b bin, u uint, i signed int, T/F bool,
 * n nil, f float, A array of comma-separated strs, N array of u generated ids,
 * M a nested map, x raw str bytes s with length u. */
struct kv {
    const char *k;
    char t;
    const char *s;
    uint64_t u;
};

#define S(k, v)                                                                                    \
    {                                                                                              \
        k, 's', v, 0                                                                               \
    }
#define U(k, v)                                                                                    \
    {                                                                                              \
        k, 'u', NULL, v                                                                            \
    }
#define I(k, v)                                                                                    \
    {                                                                                              \
        k, 'i', NULL, (uint64_t)(v)                                                                \
    }
#define BIN(k, v)                                                                                  \
    {                                                                                              \
        k, 'b', v, 0                                                                               \
    }
#define TRUE(k)                                                                                    \
    {                                                                                              \
        k, 'T', NULL, 0                                                                            \
    }
#define FALSE(k)                                                                                   \
    {                                                                                              \
        k, 'F', NULL, 0                                                                            \
    }

static struct buf fb;
static struct req_decoder dec;
static struct req_limits lim = {.max_body = 100, .max_users = 500};
static struct req rq;
static const char *msg;

static void pack_kv(msgpack_packer *pk, const struct kv *e)
{
    msgpack_pack_str_with_body(pk, e->k, strlen(e->k));
    switch (e->t) {
    case 's':
        msgpack_pack_str_with_body(pk, e->s, strlen(e->s));
        break;
    case 'x':
        msgpack_pack_str_with_body(pk, e->s, e->u);
        break;
    case 'b':
        msgpack_pack_bin_with_body(pk, e->s, strlen(e->s));
        break;
    case 'u':
        msgpack_pack_uint64(pk, e->u);
        break;
    case 'i':
        msgpack_pack_int64(pk, (int64_t)e->u);
        break;
    case 'T':
        msgpack_pack_true(pk);
        break;
    case 'F':
        msgpack_pack_false(pk);
        break;
    case 'n':
        msgpack_pack_nil(pk);
        break;
    case 'f':
        msgpack_pack_double(pk, 1.0);
        break;
    case 'M':
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "x", 1);
        msgpack_pack_array(pk, 2);
        msgpack_pack_nil(pk);
        msgpack_pack_nil(pk);
        break;
    case 'A': {
        size_t n = 0;
        const char *p = e->s;
        if (*p)
            for (n = 1; *p; p++)
                n += *p == ',';
        msgpack_pack_array(pk, n);
        p = e->s;
        while (n--) {
            const char *c = strchr(p, ',');
            size_t l = c ? (size_t)(c - p) : strlen(p);
            msgpack_pack_str_with_body(pk, p, l);
            p += l + 1;
        }
        break;
    }
    case 'N':
        msgpack_pack_array(pk, e->u);
        for (uint64_t i = 0; i < e->u; i++) {
            char id[32];
            int l = snprintf(id, sizeof(id), "user%llu", (unsigned long long)i);
            msgpack_pack_str_with_body(pk, id, (size_t)l);
        }
        break;
    }
}

static void build(const struct kv *kv, size_t n)
{
    msgpack_packer pk;
    buf_reset(&fb);
    msgpack_packer_init(&pk, &fb, buf_msgpack_write);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++)
        pack_kv(&pk, &kv[i]);
    CHECK(!buf_failed(&fb));
}

static int decode_kv(const struct kv *kv, size_t n)
{
    build(kv, n);
    return req_decode(&dec, &lim, fb.data, (uint32_t)fb.len, &rq, &msg);
}

#define DEC(...)                                                                                   \
    ({                                                                                             \
        const struct kv kv_[] = {__VA_ARGS__};                                                     \
        decode_kv(kv_, sizeof(kv_) / sizeof(kv_[0]));                                              \
    })

#define SV_EQ(v, c) (v.len == strlen(c) && memcmp(v.p, c, v.len) == 0)

/* A bad_request whose error reply can echo id 7 and knows the op. */
#define BAD(op_, ...)                                                                              \
    do {                                                                                           \
        CHECK(DEC(__VA_ARGS__) == -RP_EREQUEST);                                                   \
        CHECK(msg != NULL);                                                                        \
        CHECK(rq.has_id &&rq.id == 7 && rq.op == op_);                                             \
    } while (0)

static void test_session_ops(void)
{
    CHECK(DEC(S("op", "hello"), U("id", 1), S("token", "abc.def.ghi"), S("device", "phone-1")) ==
          0);
    CHECK(msg == NULL);
    CHECK(rq.op == OP_HELLO && rq.has_id && rq.id == 1);
    CHECK(SV_EQ(rq.token, "abc.def.ghi") && SV_EQ(rq.device, "phone-1") && rq.resume);
    CHECK(DEC(S("op", "hello"), U("id", 1), S("token", "t"), S("device", "d"), FALSE("resume")) ==
          0);
    CHECK(!rq.resume);
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("device", "d"));
    CHECK(strstr(msg, "token"));
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("token", "t"));
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("token", "t"), S("device", "a b"));
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("token", "t"), S("device", ""));
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("token", "t"),
        S("device", "0123456789abcdef0123456789abcdefX")); /* 33 */
    CHECK(DEC(S("op", "hello"), U("id", 7), S("token", "t"),
              S("device", "0123456789abcdef0123456789abcdef")) == 0); /* 32 */
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), S("token", "t"), S("device", "d"), U("resume", 1));
    BAD(OP_HELLO, S("op", "hello"), U("id", 7), BIN("token", "t"), S("device", "d"));
    /* an empty token decodes: verifying it is the hello's job (unauthorized) */
    CHECK(DEC(S("op", "hello"), U("id", 7), S("token", ""), S("device", "d")) == 0);
    CHECK(rq.op == OP_HELLO && rq.token.len == 0 && SV_EQ(rq.device, "d"));

    CHECK(DEC(S("op", "ping"), U("id", 4294967295u)) == 0);
    CHECK(rq.op == OP_PING && rq.id == 4294967295u);
    CHECK(DEC(S("op", "sync"), U("id", 3)) == 0 && rq.op == OP_SYNC);
}

static void test_id_and_op(void)
{
    /* ack alone needs no id */
    CHECK(DEC(S("op", "ack"), S("conv", "d:a:b"), U("seq", 9)) == 0);
    CHECK(rq.op == OP_ACK && !rq.has_id && rq.seq == 9 && SV_EQ(rq.conv, "d:a:b"));
    CHECK(DEC(S("op", "ping")) == -RP_EREQUEST && !rq.has_id && rq.op == OP_PING);
    /* a bad id cannot be echoed, but the op is known (a bad ping is still a
     * ping: bad_request before hello too, not "hello first") */
    CHECK(DEC(S("op", "ping"), I("id", -1)) == -RP_EREQUEST && !rq.has_id && rq.op == OP_PING);
    CHECK(DEC(S("op", "ping"), U("id", 4294967296ull)) == -RP_EREQUEST && !rq.has_id &&
          rq.op == OP_PING);
    CHECK(DEC(S("op", "ping"), S("id", "1")) == -RP_EREQUEST && !rq.has_id && rq.op == OP_PING);
    CHECK(DEC(S("op", "ping"), {"id", 'f', NULL, 0}) == -RP_EREQUEST && !rq.has_id &&
          rq.op == OP_PING);
    CHECK(DEC(S("op", "ping"), {"id", 'n', NULL, 0}) == -RP_EREQUEST && !rq.has_id &&
          rq.op == OP_PING && strstr(msg, "id"));
    CHECK(DEC({"id", 'n', NULL, 0}, S("op", "hello"), S("token", "t"), S("device", "d")) ==
              -RP_EREQUEST &&
          !rq.has_id && rq.op == OP_HELLO);
    /* both bad: the id's error, no op */
    CHECK(DEC(S("op", "fly"), S("id", "1")) == -RP_EREQUEST && !rq.has_id && rq.op == OP__COUNT &&
          strstr(msg, "id"));
    /* a non-negative value in a signed format is an integer all the same */
    CHECK(DEC(S("op", "ping"), I("id", 5)) == 0 && rq.id == 5);
    /* unknown op: id echoed, op unknown */
    CHECK(DEC(S("op", "fly"), U("id", 7)) == -RP_EREQUEST);
    CHECK(rq.has_id && rq.id == 7 && rq.op == OP__COUNT && strstr(msg, "op"));
    CHECK(DEC(U("op", 1), U("id", 7)) == -RP_EREQUEST && rq.has_id && rq.op == OP__COUNT);
    CHECK(DEC(U("id", 7)) == -RP_EREQUEST && rq.has_id);
    /* unknown keys, of any shape, are ignored; the last of a repeated key wins */
    CHECK(DEC(S("op", "ping"), {"zzz", 'M', NULL, 0}, U("id", 1), {"n", 'n', NULL, 0},
              U("id", 2)) == 0);
    CHECK(rq.id == 2);
    /* keys must be strings: anything else is not a frame (bad_frame) */
    static const uint8_t intkey[] = {0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0x01, 0x01};
    CHECK(req_decode(&dec, &lim, intkey, sizeof(intkey), &rq, &msg) == -RP_EFRAME);
    /* op names round trip */
    for (int i = 0; i < OP__COUNT; i++)
        CHECK(op_from_name(strv_c(op_name((enum op)i))) == i);
    CHECK(strcmp(op_name(OP_GROUP_CREATE), "group.create") == 0);
    CHECK(op_from_name(strv_c("group.")) == -1);
}

static void test_send(void)
{
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "bob"), S("cmid", "c-1"), S("type", "text"),
              S("body", "hi")) == 0);
    CHECK(rq.op == OP_SEND && SV_EQ(rq.to, "bob") && !rq.has_group && SV_EQ(rq.cmid, "c-1"));
    CHECK(SV_EQ(rq.type, "text") && SV_EQ(rq.body, "hi") && !rq.body_bin);
    CHECK(DEC(S("op", "send"), U("id", 7), S("group", "g1"), S("cmid", "c"), S("type", "image"),
              BIN("body", "\x01\x02")) == 0);
    CHECK(rq.has_group && SV_EQ(rq.group, "g1") && rq.body_bin && rq.body.len == 2);
    CHECK(DEC(S("op", "send"), U("id", 7), S("group", "g1"), S("cmid", "c"), S("type", "t"),
              S("body", "")) == 0);
    /* cmid is any UTF-8, 1..64 bytes */
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "\xe6\xb6\x88 x:y"),
              S("type", "t"), S("body", "")) == 0);
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "\xff"), S("type", "t"),
        S("body", ""));
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "\xc0\x80"), S("type", "t"),
        S("body", "")); /* overlong NUL */
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", ""), S("type", "t"),
        S("body", ""));
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"),
        S("cmid", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX"),
        S("type", "t"), S("body", ""));
    /* exactly one of to and group */
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("group", "g"), S("cmid", "c"),
        S("type", "t"), S("body", ""));
    CHECK(strstr(msg, "to"));
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("cmid", "c"), S("type", "t"), S("body", ""));
    /* ids */
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b:c"), S("cmid", "c"), S("type", "t"),
        S("body", ""));
    CHECK(DEC(S("op", "send"), U("id", 7),
              S("to", "A-Za-z0-9_.@-0123456789abcdef0123456789abcdef0123456789abcdef012"),
              S("cmid", "c"), S("type", "t"), S("body", "")) == 0); /* 64 */
    BAD(OP_SEND, S("op", "send"), U("id", 7),
        S("to", "A-Za-z0-9_.@-0123456789abcdef0123456789abcdef0123456789abcdef0123"),
        S("cmid", "c"), S("type", "t"), S("body", ""));
    /* type: 1..16, not reserved */
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", ""),
        S("body", ""));
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"),
        S("type", "0123456789abcdefX"), S("body", ""));
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"),
              S("type", "0123456789abcdef"), S("body", "")) == 0);
    const char *reserved[] = {"event", "recall", "recalled"};
    for (int i = 0; i < 3; i++) {
        BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"),
            S("type", reserved[i]), S("body", ""));
        CHECK(strstr(msg, "reserved"));
    }
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "events"),
              S("body", "")) == 0);
    /* body: str or bin, at most max_body */
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "t"),
        U("body", 1));
    BAD(OP_SEND, S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "t"));
    static char big[102];
    memset(big, 'x', 101);
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "t"),
              S("body", big)) == -RP_ETOOLARGE);
    CHECK(rq.has_id && rq.id == 7 && rq.op == OP_SEND && msg);
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "t"),
              BIN("body", big)) == -RP_ETOOLARGE);
    big[100] = 0;
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "b"), S("cmid", "c"), S("type", "t"),
              S("body", big)) == 0);
    CHECK(rq.body.len == 100);
}

static void test_conv_ops(void)
{
    static const enum op conv_ops[] = {OP_READ, OP_RECALL};
    for (int i = 0; i < 2; i++) {
        const char *name = op_name(conv_ops[i]);
        CHECK(DEC(S("op", name), U("id", 7), S("conv", "g:team"), U("seq", UINT64_MAX)) == 0);
        CHECK(rq.op == conv_ops[i] && rq.seq == UINT64_MAX && SV_EQ(rq.conv, "g:team"));
        CHECK(DEC(S("op", name), U("id", 7), S("conv", "d:alice:bob"), U("seq", 0)) == 0);
        CHECK(DEC(S("op", name), U("id", 7), S("conv", "d:bob:bob"), U("seq", 1)) == 0);
        const char *bad[] = {"d:bob:alice", "d:alice", "d::bob", "d:a:",  "g:",     "g:a:b",
                             "x:abc",       "gteam",   "",       "g:a b", "d:a:b:c"};
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
            BAD(conv_ops[i], S("op", name), U("id", 7), S("conv", bad[j]), U("seq", 1));
        BAD(conv_ops[i], S("op", name), U("id", 7), S("conv", "g:a"), I("seq", -1));
        BAD(conv_ops[i], S("op", name), U("id", 7), S("conv", "g:a"), S("seq", "1"));
        BAD(conv_ops[i], S("op", name), U("id", 7), S("conv", "g:a"));
        BAD(conv_ops[i], S("op", name), U("id", 7), U("seq", 1));
    }
    CHECK(DEC(S("op", "history"), U("id", 7), S("conv", "g:a")) == 0);
    CHECK(rq.op == OP_HISTORY && !rq.has_before && !rq.has_after && !rq.has_limit);
    CHECK(DEC(S("op", "history"), U("id", 7), S("conv", "g:a"), U("before", 10), U("limit", 200)) ==
          0);
    CHECK(rq.has_before && rq.before == 10 && rq.has_limit && rq.limit == 200);
    CHECK(DEC(S("op", "history"), U("id", 7), S("conv", "g:a"), U("after", 0), U("limit", 1)) == 0);
    CHECK(rq.has_after && rq.after == 0 && rq.limit == 1);
    BAD(OP_HISTORY, S("op", "history"), U("id", 7), S("conv", "g:a"), U("after", 1),
        U("before", 5));
    BAD(OP_HISTORY, S("op", "history"), U("id", 7), S("conv", "g:a"), U("limit", 0));
    BAD(OP_HISTORY, S("op", "history"), U("id", 7), S("conv", "g:a"), U("limit", 201));
    BAD(OP_HISTORY, S("op", "history"), U("id", 7), S("conv", "g:a"), I("before", -3));
    BAD(OP_HISTORY, S("op", "history"), U("id", 7));
}

static void test_group_ops(void)
{
    CHECK(DEC(S("op", "group.create"), U("id", 7), S("name", "Team \xf0\x9f\x9a\x80")) == 0);
    CHECK(rq.op == OP_GROUP_CREATE && rq.has_name && !rq.has_group && !rq.has_members);
    CHECK(rq.nusers == 0);
    CHECK(DEC(S("op", "group.create"), U("id", 7), S("name", "n"), S("group", "g1"),
              {"members", 'A', "alice,bob,carol", 0}) == 0);
    CHECK(rq.has_group && SV_EQ(rq.group, "g1") && rq.has_members && rq.nusers == 3);
    CHECK(SV_EQ(rq.users[0], "alice") && SV_EQ(rq.users[2], "carol"));
    CHECK(DEC(S("op", "group.create"), U("id", 7), S("name", "n"), {"members", 'N', NULL, 500}) ==
          0);
    CHECK(rq.nusers == 500 && SV_EQ(rq.users[499], "user499"));
    CHECK(DEC(S("op", "group.create"), U("id", 7), S("name", "n"), {"members", 'N', NULL, 501}) ==
          -RP_ETOOLARGE);
    CHECK(rq.has_id && rq.id == 7 && rq.op == OP_GROUP_CREATE);
    BAD(OP_GROUP_CREATE, S("op", "group.create"), U("id", 7), S("name", "n"),
        {"members", 'A', "alice,b b", 0});
    BAD(OP_GROUP_CREATE, S("op", "group.create"), U("id", 7), S("name", "n"),
        S("members", "alice"));
    BAD(OP_GROUP_CREATE, S("op", "group.create"), U("id", 7));
    BAD(OP_GROUP_CREATE, S("op", "group.create"), U("id", 7), S("name", ""));

    static const enum op users_ops[] = {OP_GROUP_INVITE, OP_GROUP_KICK};
    for (int i = 0; i < 2; i++) {
        const char *name = op_name(users_ops[i]);
        CHECK(DEC(S("op", name), U("id", 7), S("group", "g"), {"users", 'A', "x", 0}) == 0);
        CHECK(rq.op == users_ops[i] && rq.nusers == 1 && SV_EQ(rq.users[0], "x"));
        BAD(users_ops[i], S("op", name), U("id", 7), S("group", "g"));
        BAD(users_ops[i], S("op", name), U("id", 7), {"users", 'A', "x", 0});
        CHECK(DEC(S("op", name), U("id", 7), S("group", "g"), {"users", 'N', NULL, 501}) ==
              -RP_ETOOLARGE);
    }
    static const enum op group_only[] = {OP_GROUP_JOIN, OP_GROUP_LEAVE, OP_GROUP_DISMISS,
                                         OP_GROUP_INFO};
    for (int i = 0; i < 4; i++) {
        CHECK(DEC(S("op", op_name(group_only[i])), U("id", 7), S("group", "g.1@x")) == 0);
        CHECK(rq.op == group_only[i] && SV_EQ(rq.group, "g.1@x"));
        BAD(group_only[i], S("op", op_name(group_only[i])), U("id", 7));
        BAD(group_only[i], S("op", op_name(group_only[i])), U("id", 7), S("group", "g/1"));
    }
    CHECK(DEC(S("op", "group.update"), U("id", 7), S("group", "g"), FALSE("open")) == 0);
    CHECK(rq.has_open && !rq.open && !rq.has_name && !rq.has_notice);
    CHECK(DEC(S("op", "group.update"), U("id", 7), S("group", "g"), S("notice", "")) == 0);
    CHECK(rq.has_notice && rq.notice.len == 0);
    BAD(OP_GROUP_UPDATE, S("op", "group.update"), U("id", 7), S("group", "g"));
    BAD(OP_GROUP_UPDATE, S("op", "group.update"), U("id", 7), S("group", "g"), U("open", 1));
    CHECK(DEC(S("op", "group.admin"), U("id", 7), S("group", "g"), S("user", "u"), TRUE("admin")) ==
          0);
    CHECK(rq.has_admin && rq.admin && SV_EQ(rq.user, "u"));
    BAD(OP_GROUP_ADMIN, S("op", "group.admin"), U("id", 7), S("group", "g"), S("user", "u"));
    BAD(OP_GROUP_ADMIN, S("op", "group.admin"), U("id", 7), S("group", "g"), S("user", "u"),
        S("admin", "yes"));
    CHECK(DEC(S("op", "group.nick"), U("id", 7), S("group", "g"), S("nick", "Bobby")) == 0);
    CHECK(SV_EQ(rq.nick, "Bobby"));
    BAD(OP_GROUP_NICK, S("op", "group.nick"), U("id", 7), S("group", "g"));
    CHECK(DEC(S("op", "group.remark"), U("id", 7), S("group", "g"), S("remark", "work")) == 0);
    CHECK(SV_EQ(rq.remark, "work"));
    CHECK(DEC(S("op", "group.members"), U("id", 7), S("group", "g")) == 0);
    CHECK(!rq.has_after && !rq.has_limit);
    CHECK(DEC(S("op", "group.members"), U("id", 7), S("group", "g"), S("after", "bob"),
              U("limit", 500)) == 0);
    CHECK(rq.has_after && SV_EQ(rq.after_user, "bob") && rq.limit == 500);
    BAD(OP_GROUP_MEMBERS, S("op", "group.members"), U("id", 7), S("group", "g"), U("limit", 501));
    BAD(OP_GROUP_MEMBERS, S("op", "group.members"), U("id", 7), S("group", "g"), U("after", 3));
    CHECK(DEC(S("op", "group.list"), U("id", 7)) == 0 && rq.op == OP_GROUP_LIST);
}

static void test_friend_ops(void)
{
    CHECK(DEC(S("op", "friend.request"), U("id", 7), S("user", "bob"), S("note", "hi, it's me")) ==
          0);
    CHECK(rq.op == OP_FRIEND_REQUEST && SV_EQ(rq.user, "bob") && rq.has_note);
    CHECK(SV_EQ(rq.note, "hi, it's me"));
    CHECK(DEC(S("op", "friend.request"), U("id", 7), S("user", "bob")) == 0 && !rq.has_note);
    BAD(OP_FRIEND_REQUEST, S("op", "friend.request"), U("id", 7), S("note", "x"));
    BAD(OP_FRIEND_REQUEST, S("op", "friend.request"), U("id", 7), S("user", "bob"), U("note", 1));
    CHECK(DEC(S("op", "friend.accept"), U("id", 7), S("user", "bob")) == 0);
    CHECK(rq.op == OP_FRIEND_ACCEPT);
    CHECK(DEC(S("op", "friend.remove"), U("id", 7), S("user", "bob")) == 0);
    CHECK(rq.op == OP_FRIEND_REMOVE);
    BAD(OP_FRIEND_REMOVE, S("op", "friend.remove"), U("id", 7), S("user", ""));
    CHECK(DEC(S("op", "friend.list"), U("id", 7)) == 0 && rq.op == OP_FRIEND_LIST);
}

static void test_frames(void)
{
    static const uint8_t bomb[] = {0xdd, 0x97, 0x00, 0x00, 0x00};
    CHECK(req_decode(&dec, &lim, bomb, sizeof(bomb), &rq, &msg) == -RP_EFRAME);
    CHECK(req_decode(&dec, &lim, (const uint8_t *)"\x91\x01", 2, &rq, &msg) == -RP_EFRAME);
    CHECK(req_decode(&dec, &lim, (const uint8_t *)"\x80\xc0", 2, &rq, &msg) == -RP_EFRAME);
    CHECK(req_decode(&dec, &lim, (const uint8_t *)"\x80", 1, &rq, NULL) == -RP_EREQUEST);

    /* truncated at each byte: never exactly one map */
    CHECK(DEC(S("op", "send"), U("id", 7), S("to", "bob"), S("cmid", "c-1"), S("type", "text"),
              BIN("body", "hello")) == 0);
    uint8_t copy[256];
    size_t n = fb.len;
    CHECK(n < sizeof(copy));
    memcpy(copy, fb.data, n);
    for (size_t k = 0; k < n; k++)
        CHECK(req_decode(&dec, &lim, copy, (uint32_t)k, &rq, &msg) == -RP_EFRAME);
    CHECK(req_decode(&dec, &lim, copy, (uint32_t)n, &rq, &msg) == 0);
    /* views point into the frame */
    CHECK((const uint8_t *)rq.body.p > copy && (const uint8_t *)rq.body.p < copy + n);
}

/* {"op":op,"id":7,key:[[[...nil...]]]} with depth arrays, into fb. */
static void deep_frame(const char *op, const char *key, unsigned depth)
{
    msgpack_packer pk;
    buf_reset(&fb);
    msgpack_packer_init(&pk, &fb, buf_msgpack_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint32(&pk, 7);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    for (unsigned i = 0; i < depth; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    CHECK(!buf_failed(&fb));
}

/* PROTOCOL §2: unknown keys are ignored, whatever their values; only bytes
 * that are not exactly one map are a bad frame. Nesting is not limited. */
static void test_deep_values(void)
{
    for (unsigned depth = 30; depth <= 3 * 4096; depth = depth < 34 ? depth + 1 : depth * 4) {
        deep_frame("ping", "extra", depth);
        CHECK(req_decode(&dec, &lim, fb.data, (uint32_t)fb.len, &rq, &msg) == 0);
        CHECK(rq.op == OP_PING && rq.has_id && rq.id == 7);
        /* the innermost array one element short: not one map */
        fb.data[fb.len - 2] = 0x92;
        CHECK(req_decode(&dec, &lim, fb.data, (uint32_t)fb.len, &rq, &msg) == -RP_EFRAME);
        /* under a known key it is a value of the wrong type: bad_request, id echoed */
        deep_frame("history", "conv", depth);
        CHECK(req_decode(&dec, &lim, fb.data, (uint32_t)fb.len, &rq, &msg) == -RP_EREQUEST);
        CHECK(rq.op == OP_HISTORY && rq.has_id && rq.id == 7 && strstr(msg, "conv"));
    }
}

int main(void)
{
    buf_init(&fb);
    CHECK(req_decoder_init(&dec) == 0);
    test_session_ops();
    test_id_and_op();
    test_send();
    test_conv_ops();
    test_group_ops();
    test_friend_ops();
    test_frames();
    test_deep_values();
    req_decoder_deinit(&dec);
    buf_deinit(&fb);
    printf("test_req: ok\n");
    return 0;
}
