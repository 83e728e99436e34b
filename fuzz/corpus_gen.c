/*
 * Seed corpus generator: writes valid inputs for every fuzz target, built
 * with the project's own encoders, into <dir>/<target>/. Usage:
 *   fuzz_corpus_gen fuzz/corpus
 */
#include "base/buf.h"
#include "protocol/enc.h"
#include "protocol/jwt.h"
#include "protocol/ws.h"
#include "storage/key.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

static int save(const char *target, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, target);
    if (mkdir(path, 0755) && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -errno;
    size_t w = fwrite(p, 1, n, f);
    int err = fclose(f);
    return w == n && err == 0 ? 0 : -EIO;
}

static void s(msgpack_packer *pk, const char *v)
{
    enc_pack_cstr(pk, v);
}

static void kvs(msgpack_packer *pk, const char *k, const char *v)
{
    s(pk, k);
    s(pk, v);
}

static void kvu(msgpack_packer *pk, const char *k, uint64_t v)
{
    s(pk, k);
    msgpack_pack_uint64(pk, v);
}

/* One request per op, and a few edge cases. */
static int gen_req(void)
{
    struct buf b;
    msgpack_packer pk;
    int err = 0;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_msgpack_write);

#define REQ(name, pairs, body)                                                                     \
    do {                                                                                           \
        buf_reset(&b);                                                                             \
        msgpack_pack_map(&pk, pairs);                                                              \
        body;                                                                                      \
        if (!err)                                                                                  \
            err = save("fuzz_req", name, b.data, b.len);                                           \
    } while (0)

    REQ("hello", 5,
        (kvs(&pk, "op", "hello"), kvu(&pk, "id", 1), kvs(&pk, "token", "a.b.c"),
         kvs(&pk, "device", "phone"), (s(&pk, "resume"), msgpack_pack_false(&pk))));
    REQ("ping", 2, (kvs(&pk, "op", "ping"), kvu(&pk, "id", 2)));
    REQ("send_to", 6,
        (kvs(&pk, "op", "send"), kvu(&pk, "id", 3), kvs(&pk, "to", "bob"), kvs(&pk, "cmid", "c1"),
         kvs(&pk, "type", "text"), kvs(&pk, "body", "hi")));
    REQ("send_group", 6,
        (kvs(&pk, "op", "send"), kvu(&pk, "id", 3), kvs(&pk, "group", "g1"), kvs(&pk, "cmid", "c1"),
         kvs(&pk, "type", "image"),
         (s(&pk, "body"), msgpack_pack_bin_with_body(&pk, "\x00\x01", 2))));
    REQ("ack", 3, (kvs(&pk, "op", "ack"), kvs(&pk, "conv", "d:alice:bob"), kvu(&pk, "seq", 5)));
    REQ("read", 4,
        (kvs(&pk, "op", "read"), kvu(&pk, "id", 4), kvs(&pk, "conv", "g:g1"), kvu(&pk, "seq", 5)));
    REQ("recall", 4,
        (kvs(&pk, "op", "recall"), kvu(&pk, "id", 4), kvs(&pk, "conv", "g:g1"),
         kvu(&pk, "seq", 5)));
    REQ("sync", 2, (kvs(&pk, "op", "sync"), kvu(&pk, "id", 5)));
    REQ("history", 5,
        (kvs(&pk, "op", "history"), kvu(&pk, "id", 6), kvs(&pk, "conv", "g:g1"),
         kvu(&pk, "before", 100), kvu(&pk, "limit", 20)));
    REQ("group_create", 5,
        (kvs(&pk, "op", "group.create"), kvu(&pk, "id", 7), kvs(&pk, "name", "Team"),
         kvs(&pk, "group", "g1"),
         (s(&pk, "members"), msgpack_pack_array(&pk, 2), s(&pk, "bob"), s(&pk, "carol"))));
    REQ("group_invite", 4,
        (kvs(&pk, "op", "group.invite"), kvu(&pk, "id", 8), kvs(&pk, "group", "g1"),
         (s(&pk, "users"), msgpack_pack_array(&pk, 1), s(&pk, "dave"))));
    REQ("group_kick", 4,
        (kvs(&pk, "op", "group.kick"), kvu(&pk, "id", 8), kvs(&pk, "group", "g1"),
         (s(&pk, "users"), msgpack_pack_array(&pk, 1), s(&pk, "dave"))));
    const char *simple[] = {"group.join", "group.leave", "group.dismiss", "group.info"};
    for (int i = 0; i < 4; i++)
        REQ(simple[i], 3, (kvs(&pk, "op", simple[i]), kvu(&pk, "id", 9), kvs(&pk, "group", "g1")));
    REQ("group_update", 6,
        (kvs(&pk, "op", "group.update"), kvu(&pk, "id", 10), kvs(&pk, "group", "g1"),
         kvs(&pk, "name", "N"), kvs(&pk, "notice", "hello all"),
         (s(&pk, "open"), msgpack_pack_true(&pk))));
    REQ("group_admin", 5,
        (kvs(&pk, "op", "group.admin"), kvu(&pk, "id", 11), kvs(&pk, "group", "g1"),
         kvs(&pk, "user", "bob"), (s(&pk, "admin"), msgpack_pack_true(&pk))));
    REQ("group_nick", 4,
        (kvs(&pk, "op", "group.nick"), kvu(&pk, "id", 12), kvs(&pk, "group", "g1"),
         kvs(&pk, "nick", "B")));
    REQ("group_remark", 4,
        (kvs(&pk, "op", "group.remark"), kvu(&pk, "id", 13), kvs(&pk, "group", "g1"),
         kvs(&pk, "remark", "work")));
    REQ("group_members", 5,
        (kvs(&pk, "op", "group.members"), kvu(&pk, "id", 14), kvs(&pk, "group", "g1"),
         kvs(&pk, "after", "bob"), kvu(&pk, "limit", 100)));
    REQ("group_list", 2, (kvs(&pk, "op", "group.list"), kvu(&pk, "id", 15)));
    REQ("friend_request", 4,
        (kvs(&pk, "op", "friend.request"), kvu(&pk, "id", 16), kvs(&pk, "user", "bob"),
         kvs(&pk, "note", "hi")));
    REQ("friend_accept", 3,
        (kvs(&pk, "op", "friend.accept"), kvu(&pk, "id", 17), kvs(&pk, "user", "bob")));
    REQ("friend_remove", 3,
        (kvs(&pk, "op", "friend.remove"), kvu(&pk, "id", 18), kvs(&pk, "user", "bob")));
    REQ("friend_list", 2, (kvs(&pk, "op", "friend.list"), kvu(&pk, "id", 19)));
    REQ("unknown_keys", 4,
        (kvs(&pk, "op", "ping"), kvu(&pk, "id", 20),
         (s(&pk, "x"), msgpack_pack_map(&pk, 1), s(&pk, "y"), msgpack_pack_array(&pk, 2),
          msgpack_pack_nil(&pk), msgpack_pack_double(&pk, 1.5)),
         (s(&pk, "e"), msgpack_pack_ext_with_body(&pk, "abcd", 4, 3))));
#undef REQ
    buf_deinit(&b);
    return err;
}

static struct entry sample_entry(int i)
{
    struct entry e = {.conv = strv_c(i ? "g:team" : "d:alice:bob"),
                      .seq = 1 + (uint64_t)i,
                      .from = strv_c("alice"),
                      .dev = strv_c(i == 2 ? "" : "phone"),
                      .cmid = strv_c("c-1"),
                      .type = strv_c("text"),
                      .body = strv_c("hello"),
                      .ts = 1700000000000ull + (uint64_t)i};
    return e;
}

static int gen_entry_and_frames(void)
{
    struct buf b, data, stream;
    msgpack_packer pk;
    int err = 0;
    buf_init(&b);
    buf_init(&data);
    buf_init(&stream);
    msgpack_packer_init(&pk, &data, buf_msgpack_write);
    msgpack_pack_map(&pk, 3);
    kvs(&pk, "kind", "invite");
    s(&pk, "users");
    msgpack_pack_array(&pk, 1);
    s(&pk, "bob");
    kvu(&pk, "count", 1);

    for (int i = 0; i < 5 && !err; i++) {
        struct entry e = sample_entry(i);
        if (i == 3) {
            e.type = strv_c("event");
            e.data_raw = data.data;
            e.data_len = (uint32_t)data.len;
        }
        if (i == 4) {
            e.type = strv_c("recall");
            e.has_target = true;
            e.target = 2;
            e.body_bin = true;
            e.body = (struct strv){"", 0};
        }
        char name[32];
        buf_reset(&b);
        enc_entry(&b, &e);
        snprintf(name, sizeof(name), "entry%d", i);
        err = save("fuzz_entry", name, b.data, b.len);
        enc_entry_frame(&stream, &e);
    }

    /* frame streams: [k-1][k sizes][max_frame/16][frames...] */
    enc_ok(&stream, 1);
    enc_error(&stream, true, 2, CODE_BAD_REQUEST, "missing token");
    enc_bye(&stream, "slow");
    static const uint8_t heads[][6] = {
        {0, 255, 255}, {2, 0, 1, 7, 255}, {3, 3, 200, 1, 9, 255}, {0, 0, 255}};
    for (int i = 0; i < 4 && !err; i++) {
        size_t k = (size_t)heads[i][0] + 1;
        buf_reset(&b);
        buf_append(&b, heads[i], k + 2);
        buf_append(&b, stream.data, stream.len);
        char name[32];
        snprintf(name, sizeof(name), "stream%d", i);
        err = save("fuzz_frame", name, b.data, b.len);
    }
    buf_deinit(&b);
    buf_deinit(&data);
    buf_deinit(&stream);
    return err;
}

static int gen_jwt(void)
{
    static const uint8_t key[] = "fuzz-key";
    struct buf b;
    int err = 0;
    buf_init(&b);
    /* mode 0: a token signed with the harness key */
    buf_put_u8(&b, 0);
    jwt_sign_hs256("alice", 5, 4000000000ull, key, sizeof(key) - 1, &b);
    err = save("fuzz_jwt", "signed", b.data, b.len);
    /* mode 1: signing inputs that the harness signs: valid, expired, alg none */
    static const char *const inputs[] = {
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDAwMDAwMDAwMH0",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IiLCJleHAiOjF9",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDAwMDAwMDAwMH0",
    };
    for (int i = 0; i < 3 && !err; i++) {
        char name[32];
        buf_reset(&b);
        buf_put_u8(&b, 1);
        buf_append(&b, inputs[i], strlen(inputs[i]));
        snprintf(name, sizeof(name), "input%d", i);
        err = save("fuzz_jwt", name, b.data, b.len);
    }
    /* mode 3: header and claims JSON that the harness encodes and signs: a
     * valid token with a fractional exp and an nbf, then tokens the claims
     * checks refuse (U+0000, a duplicate name, trailing data, nbf ahead) */
    static const char *const json[] = {
        "{\"sub\":\"alice\",\"exp\":4000000000.5,\"nbf\":1600000000.25}",
        "{\"sub\":\"alice\\u0000mallory\",\"exp\":4000000000}",
        "{\"sub\":\"mallory\",\"sub\":\"carol\",\"exp\":4000000000}",
        "{\"sub\":\"alice\",\"exp\":4000000000} {}",
        "{\"sub\":\"alice\",\"exp\":4000000000,\"nbf\":4000000000}",
    };
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    for (int i = 0; i < 5 && !err; i++) {
        char name[32];
        buf_reset(&b);
        buf_put_u8(&b, 3);
        buf_append(&b, hdr, sizeof(hdr) - 1);
        buf_put_u8(&b, 0xff);
        buf_append(&b, json[i], strlen(json[i]));
        snprintf(name, sizeof(name), "json%d", i);
        err = save("fuzz_jwt", name, b.data, b.len);
    }
    buf_deinit(&b);
    return err;
}

/* A client frame: FIN, opcode, masked with a fixed key, as browsers send it. */
static void ws_client_frame(struct buf *b, uint8_t opcode, bool fin, const void *p, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    buf_put_u8(b, (uint8_t)((fin ? 0x80 : 0) | opcode));
    if (n < 126) {
        buf_put_u8(b, (uint8_t)(0x80 | n));
    } else if (n <= 0xffff) {
        buf_put_u8(b, 0x80 | 126);
        buf_put_be16(b, (uint16_t)n);
    } else {
        buf_put_u8(b, 0x80 | 127);
        buf_put_be64(b, n);
    }
    buf_append(b, mask, 4);
    for (size_t i = 0; i < n; i++)
        buf_put_u8(b, ((const uint8_t *)p)[i] ^ mask[i % 4]);
}

/* fuzz_ws: [mode][max_msg/8][k-1][k sizes][bytes] */
static int gen_ws(void)
{
    static const char hs[] =
        "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    static const char hs404[] = "GET /other HTTP/1.1\r\nHost: x\r\n\r\n";
    struct buf b, msg;
    msgpack_packer pk;
    int err = 0;
    buf_init(&b);
    buf_init(&msg);
    buf_append(&b, "\x01\x00\x01\x10\x40", 5);
    buf_append(&b, hs, sizeof(hs) - 1);
    err = save("fuzz_ws", "handshake", b.data, b.len);
    buf_reset(&b);
    buf_append(&b, "\x01\x00\x00\x00", 4);
    buf_append(&b, hs404, sizeof(hs404) - 1);
    if (!err)
        err = save("fuzz_ws", "handshake404", b.data, b.len);

    msgpack_packer_init(&pk, &msg, buf_msgpack_write);
    msgpack_pack_map(&pk, 2);
    kvs(&pk, "op", "ping");
    kvu(&pk, "id", 1);
    /* whole messages, a fragmented one with a ping in between, a close */
    buf_reset(&b);
    buf_append(&b, "\x00\x20\x02\x03\x00\x10", 6);
    ws_client_frame(&b, 0x2, true, msg.data, msg.len);
    ws_client_frame(&b, 0x2, false, msg.data, 3);
    ws_client_frame(&b, 0x9, true, "hb", 2);
    ws_client_frame(&b, 0x0, true, msg.data + 3, msg.len - 3);
    ws_client_frame(&b, 0x2, true, msg.data, msg.len);
    ws_client_frame(&b, 0x8, true, "\x03\xe8", 2);
    if (!err)
        err = save("fuzz_ws", "frames", b.data, b.len);
    /* a message over the limit, a text message */
    buf_reset(&b);
    buf_append(&b, "\x00\x01\x00\x07", 4);
    uint8_t big[300];
    memset(big, 0x61, sizeof(big));
    ws_client_frame(&b, 0x2, true, big, sizeof(big));
    if (!err)
        err = save("fuzz_ws", "too_big", b.data, b.len);
    buf_reset(&b);
    buf_append(&b, "\x00\x20\x00\x05", 4);
    ws_client_frame(&b, 0x1, true, "text", 4);
    if (!err)
        err = save("fuzz_ws", "text", b.data, b.len);
    buf_deinit(&b);
    buf_deinit(&msg);
    return err;
}

/* fuzz_http: [mode][k-1][k sizes][bytes] */
static int gen_http(void)
{
    static const char *const streams[] = {
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /metrics HTTP/1.1\r\nAuthorization: Bearer fuzz-admin-key\r\n\r\n",
        "POST /v1/messages HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Type: "
        "application/json\r\n"
        "Content-Length: 64\r\n\r\n"
        "{\"from\":\"alice\",\"to\":\"bob\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "POST /v1/backup HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "8\r\n{\"dir\":\"\r\n8\r\n/tmp/b\"}\r\n0\r\n\r\n",
        "GET /v1/users/alice HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        "POST /v1/users/bob/kick HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    };
    static const char *const bodies[] = {
        ("{\"from\":\"alice\",\"group\":\"g1\",\"type\":\"image\",\"body\":\"\\u00e9\\n\","
         "\"cmid\":\"c-2\"}"),
        "{\"from\":\"alice\",\"to\":\"bob\",\"type\":\"event\",\"body\":\"x\",\"cmid\":\"c\"}",
        "{\"dir\":\"/var/backups/rp\"}",
    };
    struct buf b;
    int err = 0;
    buf_init(&b);
    for (int i = 0; i < 4 && !err; i++) {
        char name[32];
        buf_reset(&b);
        buf_append(&b, i % 2 ? "\x00\x02\x00\x05\x30" : "\x00\x00\x07", i % 2 ? 5 : 3);
        buf_append(&b, streams[i], strlen(streams[i]));
        snprintf(name, sizeof(name), "requests%d", i);
        err = save("fuzz_http", name, b.data, b.len);
    }
    for (int i = 0; i < 3 && !err; i++) {
        char name[32];
        buf_reset(&b);
        buf_append(&b, "\x01\x00\x00", 3);
        buf_append(&b, bodies[i], strlen(bodies[i]));
        snprintf(name, sizeof(name), "body%d", i);
        err = save("fuzz_http", name, b.data, b.len);
    }
    buf_deinit(&b);
    return err;
}

/* fuzz_key: [mode][...]; even: a key from the encoders, odd: parts */
static int gen_key(void)
{
    struct buf b, k;
    int err = 0;
    buf_init(&b);
    buf_init(&k);
    for (int i = 0; i < 4 && !err; i++) {
        switch (i) {
        case 0:
            stg_key_log(&k, "d:alice:bob", 11, 42);
            break;
        case 1:
            stg_key_cursor(&k, "alice", 5, "phone", 5, "g:team", 6);
            break;
        case 2:
            stg_key_dedup(&k, "g:team", 6, "bob", 3, "c-1", 3);
            break;
        default:
            stg_key_member(&k, "g:team", 6, "carol", 5);
        }
        char name[32];
        buf_reset(&b);
        buf_put_u8(&b, 0);
        buf_append(&b, k.data, k.len);
        snprintf(name, sizeof(name), "key%d", i);
        err = save("fuzz_key", name, b.data, b.len);
    }
    static const uint8_t parts[] = {1,   6,   'g', ':', 't', 'e', 'a', 'm', 3, 'b',
                                    'o', 'b', 2,   'c', '1', 0,   0,   0,   0, 0,
                                    0,   1,   0,   0,   0,   0,   0,   0,   1, 0};
    if (!err)
        err = save("fuzz_key", "parts", parts, sizeof(parts));
    buf_deinit(&b);
    buf_deinit(&k);
    return err;
}

/*
 * fuzz_chat scripts (see fuzz/fuzz_chat.c for the step bytes). Menu ops:
 * 0/1 send, 2 ack, 3 read, 4 recall, 5 sync, 6 history, 7 group.create,
 * 8 invite, 9 join, 10 kick, 11 leave, 12 dismiss, 13 update, 14 admin,
 * 15 info, 16 members, 17 friend.request, 18 friend.accept.
 */
#define OPEN(u, d)           0, u, d
#define CLOSE(c)             1, c
#define MENU(c, op, a, b, x) 2, c, op, a, b, x
#define TICK(s)              4, s
#define STEP                 5
#define STEP_STORAGE(p)      0x85, p
#define SETTLE               6, 0
#define SETTLE_READS_FIRST   6, 0xff
#define FAIL(n)              7, n

static int gen_chat(void)
{
    /* two users talk; the second reconnects and catches up */
    static const uint8_t dm[] = {OPEN(0, 0),
                                 OPEN(1, 0),
                                 SETTLE,
                                 MENU(0, 0, 1, 0, 1),
                                 MENU(1, 0, 0, 0, 2),
                                 SETTLE,
                                 CLOSE(1),
                                 MENU(0, 0, 1, 0, 3),
                                 SETTLE,
                                 OPEN(1, 0),
                                 SETTLE,
                                 MENU(2, 2, 0, 0, 3),
                                 MENU(2, 6, 0, 0, 0),
                                 SETTLE};
    /* a group: create with members, send, kick, send, leave, dismiss */
    static const uint8_t group[] = {OPEN(0, 0),           OPEN(1, 1), OPEN(2, 0),           SETTLE,
                                    MENU(0, 7, 0, 1, 2),  SETTLE,     MENU(0, 1, 0, 1, 1),  SETTLE,
                                    MENU(0, 10, 0, 1, 0), STEP,       MENU(0, 1, 0, 1, 2),  SETTLE,
                                    MENU(2, 11, 0, 1, 0), SETTLE,     MENU(0, 12, 0, 1, 0), SETTLE};
    /* an open group joined, an admin, a recall and history; time moves on */
    static const uint8_t admin[] = {OPEN(0, 0),
                                    OPEN(3, 2),
                                    SETTLE,
                                    MENU(0, 7, 1, 1, 4),
                                    SETTLE,
                                    MENU(0, 13, 1, 1, 1),
                                    SETTLE,
                                    MENU(1, 9, 1, 1, 0),
                                    SETTLE,
                                    MENU(0, 14, 1, 3, 1),
                                    MENU(1, 1, 1, 1, 0),
                                    SETTLE,
                                    MENU(0, 4, 1, 1, 1),
                                    TICK(200),
                                    MENU(1, 4, 1, 1, 2),
                                    SETTLE,
                                    MENU(1, 16, 1, 1, 0),
                                    MENU(1, 6, 1, 1, 3),
                                    SETTLE};
    /* friends, and failed writes under a send */
    static const uint8_t friends[] = {OPEN(0, 0),
                                      OPEN(1, 0),
                                      SETTLE,
                                      MENU(0, 17, 1, 0, 0),
                                      SETTLE,
                                      MENU(1, 18, 0, 0, 0),
                                      SETTLE,
                                      FAIL(1),
                                      MENU(0, 0, 1, 0, 1),
                                      SETTLE,
                                      MENU(0, 0, 1, 0, 1),
                                      STEP_STORAGE(0x55),
                                      MENU(1, 5, 0, 0, 0),
                                      SETTLE_READS_FIRST};
    static const struct {
        const char *name;
        const uint8_t *p;
        size_t n;
    } scripts[] = {{"dm", dm, sizeof(dm)},
                   {"group", group, sizeof(group)},
                   {"admin", admin, sizeof(admin)},
                   {"friends", friends, sizeof(friends)}};
    int err = 0;
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]) && !err; i++)
        err = save("fuzz_chat", scripts[i].name, scripts[i].p, scripts[i].n);

    /* a request frame of bytes (step 3): a direct send from the encoders */
    struct buf b;
    msgpack_packer pk;
    buf_init(&b);
    static const uint8_t head[] = {OPEN(0, 0), OPEN(1, 0), SETTLE, 3, 0, 0};
    buf_append(&b, head, sizeof(head));
    size_t at = b.len - 1;
    msgpack_packer_init(&pk, &b, buf_msgpack_write);
    msgpack_pack_map(&pk, 6);
    kvs(&pk, "op", "send");
    kvu(&pk, "id", 7);
    kvs(&pk, "to", "u1");
    kvs(&pk, "cmid", "x");
    kvs(&pk, "type", "text");
    kvs(&pk, "body", "hi");
    b.data[at] = (uint8_t)(b.len - at - 1);
    static const uint8_t tail[] = {SETTLE};
    buf_append(&b, tail, sizeof(tail));
    if (!err)
        err = save("fuzz_chat", "frame", b.data, b.len);
    buf_deinit(&b);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus folder>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) && errno != EEXIST) {
        perror(root);
        return 1;
    }
    int err = gen_req();
    if (!err)
        err = gen_entry_and_frames();
    if (!err)
        err = gen_jwt();
    if (!err)
        err = gen_ws();
    if (!err)
        err = gen_http();
    if (!err)
        err = gen_key();
    if (!err)
        err = gen_chat();
    if (err) {
        fprintf(stderr, "corpus_gen: %s\n", strerror(-err));
        return 1;
    }
    return 0;
}
