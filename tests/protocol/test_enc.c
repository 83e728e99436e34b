/*
 * Encoders: every frame is decoded back (prefix, pre-scan, msgpack-c) and its
 * fields compared; stored entries round trip through entry_decode and
 * re-encode to the same bytes; entry_decode refuses every malformed entry;
 * a reply packed by hand with enc_begin/enc_raw/enc_end nests stored entries.
 */
#include "check.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/enc.h"
#include "protocol/frame.h"
#include "protocol/mpscan.h"

#include <errno.h>
#include <string.h>

static msgpack_zone zone;

/* The next frame of b at *off, unpacked (after checking prefix and scan). */
static msgpack_object next_frame(const struct buf *b, size_t *off)
{
    CHECK(b->len - *off >= 4);
    const uint8_t *p = b->data + *off;
    uint32_t l = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    CHECK(l > 0 && b->len - *off - 4 >= l);
    CHECK(mpscan_map(p + 4, l) == 0);
    msgpack_object o;
    size_t used = 0;
    CHECK(msgpack_unpack((const char *)p + 4, l, &used, &zone, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK(used == l && o.type == MSGPACK_OBJECT_MAP);
    *off += 4 + l;
    return o;
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
            memcmp(kv->key.via.str.ptr, k, strlen(k)) == 0)
            return &kv->val;
    }
    return NULL;
}

static bool is_str(const msgpack_object *m, const char *k, const char *v)
{
    const msgpack_object *o = get(m, k);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(v) &&
           memcmp(o->via.str.ptr, v, strlen(v)) == 0;
}

static bool is_u(const msgpack_object *m, const char *k, uint64_t v)
{
    const msgpack_object *o = get(m, k);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 == v;
}

static void test_replies(void)
{
    struct buf b;
    size_t off = 0;
    msgpack_object o;
    buf_init(&b);

    CHECK(enc_ok(&b, 42) == 0);
    CHECK(enc_pong(&b, 4294967295u) == 0);
    CHECK(enc_bye(&b, "replaced") == 0);
    CHECK(enc_synced(&b) == 0);
    CHECK(enc_error(&b, true, 9, CODE_TOO_LARGE, "body too large") == 0);
    CHECK(enc_error(&b, false, 0, CODE_BAD_FRAME, NULL) == 0);
    CHECK(enc_hello_ok(&b, 1, strv_c("alice"), strv_c("phone"), 30000, 1700000000123ull, 65536,
                       3) == 0);
    CHECK(enc_send_ok(&b, 2, strv_c("d:a:b"), 17, 1700000000999ull, false) == 0);
    CHECK(enc_send_ok(&b, 3, strv_c("g:x"), 5, 6, true) == 0);
    CHECK(enc_read_push(&b, strv_c("d:a:b"), strv_c("a"), 12) == 0);
    CHECK(enc_friend_push(&b, "request", strv_c("from"), strv_c("bob"), strv_c("hi"), true) == 0);
    CHECK(enc_friend_push(&b, "added", strv_c("user"), strv_c("bob"), strv_c(""), false) == 0);

    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 2 && is_str(&o, "op", "ok") && is_u(&o, "id", 42));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 2 && is_str(&o, "op", "pong") && is_u(&o, "id", 4294967295u));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 2 && is_str(&o, "op", "bye") && is_str(&o, "reason", "replaced"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 1 && is_str(&o, "op", "synced"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 4 && is_str(&o, "op", "error") && is_u(&o, "id", 9));
    CHECK(is_str(&o, "code", "too_large") && is_str(&o, "msg", "body too large"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 3 && !get(&o, "id") && is_str(&o, "code", "bad_frame"));
    CHECK(is_str(&o, "msg", "bad_frame"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 8 && is_str(&o, "op", "ok") && is_u(&o, "id", 1));
    CHECK(is_str(&o, "user", "alice") && is_str(&o, "device", "phone"));
    CHECK(is_u(&o, "heartbeat_ms", 30000) && is_u(&o, "server_time", 1700000000123ull));
    CHECK(is_u(&o, "max_frame", 65536) && is_u(&o, "shard", 3));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 5 && is_str(&o, "conv", "d:a:b") && is_u(&o, "seq", 17));
    CHECK(is_u(&o, "ts", 1700000000999ull) && !get(&o, "dup"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 6 && get(&o, "dup")->type == MSGPACK_OBJECT_BOOLEAN);
    CHECK(get(&o, "dup")->via.boolean);
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 4 && is_str(&o, "op", "read") && is_str(&o, "user", "a"));
    CHECK(is_u(&o, "seq", 12) && is_str(&o, "conv", "d:a:b"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 4 && is_str(&o, "op", "friend") && is_str(&o, "event", "request"));
    CHECK(is_str(&o, "from", "bob") && is_str(&o, "note", "hi"));
    o = next_frame(&b, &off);
    CHECK(o.via.map.size == 3 && is_str(&o, "event", "added") && is_str(&o, "user", "bob"));
    CHECK(off == b.len);

    /* the same stream through the frame decoder, byte by byte */
    struct frame_dec d;
    frame_dec_init(&d, 65536);
    int frames = 0;
    for (size_t i = 0; i < b.len; i++) {
        const uint8_t *f;
        uint32_t fl;
        CHECK(frame_next(&d, b.data + i, 1, &f, &fl) == 1);
        frames += f != NULL;
    }
    CHECK(frames == 12);
    frame_dec_deinit(&d);

    /* a failed buffer reports -ENOMEM */
    b.oom = true;
    CHECK(enc_ok(&b, 1) == -ENOMEM);
    buf_deinit(&b);
}

static void test_codes(void)
{
    static const char *const names[CODE__COUNT] = {
        "bad_frame", "bad_request",  "unauthorized", "forbidden",   "not_found", "conflict",
        "too_large", "rate_limited", "expired",      "unavailable", "internal"};
    for (int i = 0; i < CODE__COUNT; i++)
        CHECK(strcmp(code_name((enum err_code)i), names[i]) == 0);
    CHECK(strcmp(code_name(CODE__COUNT), "internal") == 0);
    CHECK(code_from_err(-RP_EFRAME) == CODE_BAD_FRAME);
    CHECK(code_from_err(-RP_EREQUEST) == CODE_BAD_REQUEST);
    CHECK(code_from_err(-RP_EAUTH) == CODE_UNAUTHORIZED);
    CHECK(code_from_err(-EPERM) == CODE_FORBIDDEN);
    CHECK(code_from_err(-ENOENT) == CODE_NOT_FOUND);
    CHECK(code_from_err(-EEXIST) == CODE_CONFLICT);
    CHECK(code_from_err(-RP_ETOOLARGE) == CODE_TOO_LARGE);
    CHECK(code_from_err(-EAGAIN) == CODE_RATE_LIMITED);
    CHECK(code_from_err(-RP_EEXPIRED) == CODE_EXPIRED);
    CHECK(code_from_err(-RP_ESTORAGE) == CODE_UNAVAILABLE);
    CHECK(code_from_err(-ENOMEM) == CODE_INTERNAL);
}

static void pack_data(struct buf *b)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, buf_msgpack_write);
    msgpack_pack_map(&pk, 3);
    enc_pack_cstr(&pk, "kind");
    enc_pack_cstr(&pk, "invite");
    enc_pack_cstr(&pk, "users");
    msgpack_pack_array(&pk, 2);
    enc_pack_cstr(&pk, "bob");
    enc_pack_cstr(&pk, "carol");
    enc_pack_cstr(&pk, "count");
    msgpack_pack_uint32(&pk, 2);
}

static bool sv_eq(struct strv a, struct strv b)
{
    return strv_eq(a, b);
}

static bool entry_eq(const struct entry *a, const struct entry *b)
{
    return sv_eq(a->conv, b->conv) && a->seq == b->seq && sv_eq(a->from, b->from) &&
           sv_eq(a->dev, b->dev) && sv_eq(a->cmid, b->cmid) && sv_eq(a->type, b->type) &&
           sv_eq(a->body, b->body) && a->body_bin == b->body_bin && a->ts == b->ts &&
           (a->data_raw != NULL) == (b->data_raw != NULL) && a->data_len == b->data_len &&
           (!a->data_raw || memcmp(a->data_raw, b->data_raw, a->data_len) == 0) &&
           a->has_target == b->has_target && a->target == b->target;
}

static void roundtrip(const struct entry *e)
{
    struct buf b, b2;
    struct entry d;
    buf_init(&b);
    buf_init(&b2);
    CHECK(enc_entry(&b, e) == 0);
    CHECK(entry_decode(b.data, (uint32_t)b.len, &d) == 0);
    CHECK(entry_eq(e, &d));
    CHECK(enc_entry(&b2, &d) == 0);
    CHECK(b2.len == b.len && memcmp(b.data, b2.data, b.len) == 0);
    /* truncated at each byte, and with a trailing byte */
    for (size_t k = 0; k < b.len; k++)
        CHECK(entry_decode(b.data, (uint32_t)k, &d) == -RP_EFRAME);
    buf_put_u8(&b, 0xc0);
    CHECK(entry_decode(b.data, (uint32_t)b.len, &d) == -RP_EFRAME);
    /* the push frame is the prefix plus the stored bytes */
    buf_reset(&b2);
    CHECK(enc_entry_frame(&b2, e) == 0);
    CHECK(b2.len == b.len - 1 + 4 && memcmp(b2.data + 4, b.data, b.len - 1) == 0);
    size_t off = 0;
    msgpack_object o = next_frame(&b2, &off);
    CHECK(is_str(&o, "op", "msg") && is_u(&o, "seq", e->seq) && is_u(&o, "ts", e->ts));
    buf_reset(&b2);
    CHECK(enc_frame_raw(&b2, b.data, (uint32_t)b.len - 1) == 0);
    CHECK(b2.len == b.len - 1 + 4 && memcmp(b2.data + 4, b.data, b.len - 1) == 0);
    buf_deinit(&b);
    buf_deinit(&b2);
}

static void test_entries(void)
{
    struct entry e = {
        .conv = strv_c("d:alice:bob"),
        .seq = 1,
        .from = strv_c("alice"),
        .dev = strv_c("phone"),
        .cmid = strv_c("c-1"),
        .type = strv_c("text"),
        .body = strv_c("hello"),
        .ts = 1700000000000ull,
    };
    roundtrip(&e);
    e.body = (struct strv){"\x00\x01\xff", 3};
    e.body_bin = true;
    e.seq = UINT64_MAX;
    roundtrip(&e);
    e.dev = strv_c("");
    e.body = strv_c("");
    roundtrip(&e);

    struct buf data;
    buf_init(&data);
    pack_data(&data);
    e.type = strv_c("event");
    e.data_raw = data.data;
    e.data_len = (uint32_t)data.len;
    roundtrip(&e);
    e.data_raw = NULL;
    e.data_len = 0;
    e.type = strv_c("recall");
    e.has_target = true;
    e.target = 7;
    roundtrip(&e);
    buf_deinit(&data);
}

/* Hand-built entry maps that entry_decode must refuse. */
static void test_entry_rejects(void)
{
    static const char *const keys[] = {"op",   "conv", "seq",  "from", "dev",
                                       "cmid", "type", "body", "ts"};
    struct entry d;
    /* each required field missing in turn */
    for (int skip = 0; skip < 9; skip++) {
        for (int wrong = 0; wrong < 2; wrong++) {
            struct buf b;
            msgpack_packer pk;
            buf_init(&b);
            msgpack_packer_init(&pk, &b, buf_msgpack_write);
            msgpack_pack_map(&pk, wrong ? 9 : 8);
            for (int i = 0; i < 9; i++) {
                if (i == skip && !wrong)
                    continue;
                enc_pack_cstr(&pk, keys[i]);
                bool num = i == 2 || i == 8;
                if (i == skip) /* the wrong type */
                    num ? enc_pack_cstr(&pk, "1") : msgpack_pack_int(&pk, -1);
                else if (num)
                    msgpack_pack_uint64(&pk, 5);
                else
                    enc_pack_cstr(&pk, i == 0 ? "msg" : "x");
            }
            CHECK(entry_decode(b.data, (uint32_t)b.len, &d) == -RP_EFRAME);
            buf_deinit(&b);
        }
    }
    /* op other than msg; data not a map; target not an integer */
    const char *extra[] = {"op", "data", "target"};
    for (int x = 0; x < 3; x++) {
        struct buf b;
        msgpack_packer pk;
        buf_init(&b);
        msgpack_packer_init(&pk, &b, buf_msgpack_write);
        msgpack_pack_map(&pk, 10);
        for (int i = 0; i < 9; i++) {
            enc_pack_cstr(&pk, keys[i]);
            if (i == 2 || i == 8)
                msgpack_pack_uint64(&pk, 5);
            else
                enc_pack_cstr(&pk, i == 0 ? "msg" : "x");
        }
        enc_pack_cstr(&pk, extra[x]);
        if (x == 2)
            msgpack_pack_int(&pk, -2);
        else
            msgpack_pack_array(&pk, 0);
        CHECK(entry_decode(b.data, (uint32_t)b.len, &d) == -RP_EFRAME);
        buf_deinit(&b);
    }
}

/* A history-like reply packed by its caller with stored entries spliced in raw. */
static void test_hand_packed(void)
{
    struct buf stored, b;
    buf_init(&stored);
    buf_init(&b);
    struct entry e = {.conv = strv_c("g:t"),
                      .from = strv_c("a"),
                      .dev = strv_c("d"),
                      .cmid = strv_c("c"),
                      .type = strv_c("text"),
                      .body = strv_c("x")};
    size_t at[3];
    for (int i = 0; i < 3; i++) {
        at[i] = stored.len;
        e.seq = (uint64_t)i + 1;
        e.ts = 100 + (uint64_t)i;
        CHECK(enc_entry(&stored, &e) == 0);
    }
    msgpack_packer pk;
    size_t start = b.len;
    enc_begin(&b, &pk);
    msgpack_pack_map(&pk, 5);
    enc_pack_cstr(&pk, "op");
    enc_pack_cstr(&pk, "ok");
    enc_pack_cstr(&pk, "id");
    msgpack_pack_uint32(&pk, 8);
    enc_pack_cstr(&pk, "conv");
    enc_pack_strv(&pk, e.conv);
    enc_pack_cstr(&pk, "msgs");
    msgpack_pack_array(&pk, 3);
    CHECK(enc_raw(&b, stored.data + at[0], stored.len - at[0]) == 0);
    enc_pack_cstr(&pk, "more");
    msgpack_pack_false(&pk);
    CHECK(enc_end(&b, start) == 0);

    size_t off = 0;
    msgpack_object o = next_frame(&b, &off);
    const msgpack_object *msgs = get(&o, "msgs");
    CHECK(msgs && msgs->type == MSGPACK_OBJECT_ARRAY && msgs->via.array.size == 3);
    for (uint32_t i = 0; i < 3; i++)
        CHECK(is_u(&msgs->via.array.ptr[i], "seq", i + 1ull));
    CHECK(get(&o, "more")->type == MSGPACK_OBJECT_BOOLEAN);

    /* an empty frame is a caller bug */
    start = b.len;
    enc_begin(&b, &pk);
    CHECK(enc_end(&b, start) == -RP_ETOOLARGE);
    buf_deinit(&stored);
    buf_deinit(&b);
}

/* enc_ok_begin: the caller's fields follow op and id in one map. */
static void test_ok_begin(void)
{
    struct buf b;
    size_t off = 0;
    msgpack_packer pk;
    buf_init(&b);
    size_t start = enc_ok_begin(&b, &pk, 77, 1);
    enc_pack_cstr(&pk, "seq");
    msgpack_pack_uint64(&pk, 5);
    CHECK(start == 0 && enc_end(&b, start) == 0);
    msgpack_object o = next_frame(&b, &off);
    CHECK(o.via.map.size == 3 && is_str(&o, "op", "ok") && is_u(&o, "id", 77));
    CHECK(is_u(&o, "seq", 5) && off == b.len);
    buf_deinit(&b);
}

int main(void)
{
    msgpack_zone_init(&zone, 4096);
    test_replies();
    test_ok_begin();
    test_codes();
    test_entries();
    test_entry_rejects();
    test_hand_packed();
    msgpack_zone_destroy(&zone);
    printf("test_enc: ok\n");
    return 0;
}
