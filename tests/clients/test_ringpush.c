/*
 * libringpush against a scripted peer on a loopback socket: the test plays
 * the server, writing frames before the client waits for them (the kernel
 * buffers them) and decoding what the client sent. Checks reply matching,
 * push queueing, fragmentation, malformed and oversized input, timeouts,
 * request encoding (str stays str, bin stays bin), token minting and the
 * JSON printer.
 */
#include "ops.h"
#include "ringpush.h"

#include "base/err.h"
#include "protocol/jwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

struct peer {
    struct rp_client *c;
    int fd; /* the server side */
};

static void peer_open(struct peer *p)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(ls, 1) == 0);
    socklen_t al = sizeof(a);
    CHECK(getsockname(ls, (struct sockaddr *)&a, &al) == 0);
    CHECK(rp_client_connect(&p->c, "127.0.0.1", ntohs(a.sin_port), 0) == 0);
    p->fd = accept(ls, NULL, NULL);
    CHECK(p->fd >= 0);
    close(ls);
    rp_client_set_timeout(p->c, 2000);
}

static void peer_close(struct peer *p)
{
    rp_client_free(p->c);
    if (p->fd >= 0)
        close(p->fd);
}

/* ---- the peer's frames ------------------------------------------------ */

static void write_all(int fd, const void *data, size_t len)
{
    const char *s = data;
    while (len) {
        ssize_t n = write(fd, s, len);
        CHECK(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

static void write_frame(int fd, const msgpack_sbuffer *sb)
{
    uint8_t h[4] = {(uint8_t)(sb->size >> 24), (uint8_t)(sb->size >> 16), (uint8_t)(sb->size >> 8),
                    (uint8_t)sb->size};
    write_all(fd, h, 4);
    write_all(fd, sb->data, sb->size);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* {"op": op, "id": id} (no id when id == 0) plus one extra str key/value if k is given. */
static void send_simple(int fd, const char *op, uint32_t id, const char *k, const char *v)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (id != 0) + (k != NULL));
    pk_str(&pk, "op");
    pk_str(&pk, op);
    if (id) {
        pk_str(&pk, "id");
        msgpack_pack_uint32(&pk, id);
    }
    if (k) {
        pk_str(&pk, k);
        pk_str(&pk, v);
    }
    write_frame(fd, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* Reads one frame the client sent and decodes it into *up (a map). */
static void read_request(int fd, msgpack_unpacked *up, char *store, size_t cap)
{
    uint8_t h[4];
    CHECK(recv(fd, h, 4, MSG_WAITALL) == 4);
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    CHECK(len > 0 && len <= cap);
    CHECK(recv(fd, store, len, MSG_WAITALL) == (ssize_t)len);
    size_t off = 0;
    msgpack_unpacked_init(up);
    CHECK(msgpack_unpack_next(up, store, len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == len);
    CHECK(up->data.type == MSGPACK_OBJECT_MAP);
}

static bool str_is(const msgpack_object *o, const char *key, const char *want)
{
    size_t len;
    const char *s = rp_obj_str(o, key, &len);
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- tests ------------------------------------------------------------ */

static void test_reply_and_pushes(void)
{
    struct peer p;
    peer_open(&p);
    send_simple(p.fd, "msg", 0, "conv", "d:a:b");
    send_simple(p.fd, "ok", 99, NULL, NULL); /* a reply to something else */
    send_simple(p.fd, "synced", 0, NULL, NULL);
    send_simple(p.fd, "ok", 1, "x", "y");
    struct rp_msg *m;
    CHECK(rp_sync(p.c, NULL, &m) == 0);
    CHECK(rp_msg_is(m, "ok") && rp_msg_code(m) == RP_CODE_OK && str_is(&m->obj, "x", "y"));
    uint64_t id;
    CHECK(rp_obj_uint(&m->obj, "id", &id) && id == 1);
    rp_msg_free(m);

    /* pushes come out in order; the stray reply is not a push */
    CHECK(rp_client_push(p.c, 0, &m) == 0 && rp_msg_is(m, "msg"));
    CHECK(str_is(&m->obj, "conv", "d:a:b"));
    rp_msg_free(m);
    CHECK(rp_client_push(p.c, 0, &m) == 0 && rp_msg_is(m, "synced"));
    rp_msg_free(m);
    CHECK(rp_client_push(p.c, 0, &m) == -ETIMEDOUT);
    CHECK(rp_client_next(p.c, &m) == 0 && rp_obj_uint(&m->obj, "id", &id) && id == 99);
    rp_msg_free(m);
    CHECK(rp_client_next(p.c, &m) == -EAGAIN);

    /* what the client sent */
    msgpack_unpacked up;
    char store[256];
    read_request(p.fd, &up, store, sizeof(store));
    CHECK(str_is(&up.data, "op", "sync") && rp_obj_uint(&up.data, "id", &id) && id == 1);
    CHECK(up.data.via.map.size == 2);
    msgpack_unpacked_destroy(&up);
    peer_close(&p);
}

static void test_error_reply_codes(void)
{
    struct peer p;
    peer_open(&p);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pk_str(&pk, "op");
    pk_str(&pk, "error");
    pk_str(&pk, "id");
    msgpack_pack_uint32(&pk, 1);
    pk_str(&pk, "code");
    pk_str(&pk, "forbidden");
    pk_str(&pk, "msg");
    pk_str(&pk, "not a member");
    write_frame(p.fd, &sb);
    msgpack_sbuffer_destroy(&sb);
    struct rp_msg *m;
    CHECK(rp_group_simple(p.c, "info", "g1", &m) == 0);
    CHECK(rp_msg_code(m) == RP_CODE_FORBIDDEN);
    CHECK(strcmp(rp_code_name(rp_msg_code(m)), "forbidden") == 0);
    rp_msg_free(m);

    /* a fatal error without id answers the pending call, then the peer closes */
    send_simple(p.fd, "error", 0, "code", "bad_frame");
    CHECK(rp_sync(p.c, NULL, &m) == 0);
    CHECK(rp_msg_code(m) == RP_CODE_BAD_FRAME);
    rp_msg_free(m);
    msgpack_unpacked up;
    char store[256];
    read_request(p.fd, &up, store, sizeof(store));
    msgpack_unpacked_destroy(&up);
    read_request(p.fd, &up, store, sizeof(store));
    msgpack_unpacked_destroy(&up);
    close(p.fd);
    p.fd = -1;
    int r = rp_sync(p.c, NULL, &m);
    CHECK(r == -RP_ECLOSED || r == -EPIPE || r == -ECONNRESET);
    CHECK(rp_client_closed(p.c) || r != -RP_ECLOSED);
    peer_close(&p);
}

static void test_byte_by_byte(void)
{
    struct peer p;
    peer_open(&p);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "op");
    pk_str(&pk, "msg");
    pk_str(&pk, "body");
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "\0\1\2", 3);
    uint8_t h[4] = {0, 0, 0, (uint8_t)sb.size};
    char all[64];
    memcpy(all, h, 4);
    memcpy(all + 4, sb.data, sb.size);
    size_t total = 4 + sb.size;
    msgpack_sbuffer_destroy(&sb);
    for (size_t i = 0; i < total; i++) {
        write_all(p.fd, all + i, 1);
        int got = 0;
        /* the byte may not be readable at once; wait for it without blocking forever */
        for (int spin = 0; spin < 1000; spin++) {
            got = rp_client_feed(p.c);
            CHECK(got >= 0);
            if (got > 0 || i + 1 < total)
                break;
            usleep(1000);
        }
        CHECK(got == (i + 1 == total ? 1 : 0));
    }
    struct rp_msg *m;
    CHECK(rp_client_next(p.c, &m) == 0);
    const msgpack_object *body = rp_obj_get(&m->obj, "body");
    CHECK(body && body->type == MSGPACK_OBJECT_BIN && body->via.bin.size == 3);
    CHECK(memcmp(body->via.bin.ptr, "\0\1\2", 3) == 0);
    rp_msg_free(m);
    peer_close(&p);
}

static void test_bad_input_from_server(void)
{
    struct peer p;
    struct rp_msg *m;
    /* not a map */
    peer_open(&p);
    write_all(p.fd, "\0\0\0\3\x93\1\2", 7); /* array of 3 with only 2 elements: truncated */
    write_all(p.fd, "\0\0\0\1\x90", 5);
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_EFRAME);
    CHECK(rp_client_feed(p.c) == -RP_EFRAME); /* sticky */
    CHECK(rp_sync(p.c, NULL, &m) == -RP_EFRAME);
    peer_close(&p);
    /* trailing bytes in a frame */
    peer_open(&p);
    write_all(p.fd, "\0\0\0\2\x80\xc0", 6);
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_EFRAME);
    peer_close(&p);
    /* length over max_frame, and zero length */
    peer_open(&p);
    write_all(p.fd, "\0\1\0\1", 4);
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_ETOOLARGE);
    peer_close(&p);
    peer_open(&p);
    write_all(p.fd, "\0\0\0\0", 4);
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_EFRAME);
    peer_close(&p);
}

static void test_timeout(void)
{
    struct peer p;
    peer_open(&p);
    rp_client_set_timeout(p.c, 150);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(rp_ping(p.c) == -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    CHECK(ms >= 140 && ms < 2000);
    /* the late pong is still delivered to nobody as a push, and a new ping works */
    send_simple(p.fd, "pong", 1, NULL, NULL);
    send_simple(p.fd, "pong", 2, NULL, NULL);
    CHECK(rp_ping(p.c) == 0);
    peer_close(&p);
}

/* The reply to the hello (id 1): ok, announcing max_frame, and shard unless < 0. */
static void send_hello_ok(int fd, uint64_t max_frame, int shard)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, shard < 0 ? 3 : 4);
    pk_str(&pk, "op");
    pk_str(&pk, "ok");
    pk_str(&pk, "id");
    msgpack_pack_uint32(&pk, 1);
    pk_str(&pk, "max_frame");
    msgpack_pack_uint64(&pk, max_frame);
    if (shard >= 0) {
        pk_str(&pk, "shard");
        msgpack_pack_uint32(&pk, (uint32_t)shard);
    }
    write_frame(fd, &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void test_hello_and_send_encoding(void)
{
    struct peer p;
    peer_open(&p);
    send_hello_ok(p.fd, 128, 3); /* a small max_frame, and a shard */
    struct rp_msg *m;
    CHECK(rp_client_shard(p.c) == -1);
    CHECK(rp_hello(p.c, "tok", "dev", true, &m) == 0 && rp_msg_is(m, "ok"));
    rp_msg_free(m);
    CHECK(rp_client_shard(p.c) == 3);

    msgpack_unpacked up;
    char store[512];
    read_request(p.fd, &up, store, sizeof(store));
    CHECK(str_is(&up.data, "op", "hello") && str_is(&up.data, "token", "tok"));
    CHECK(str_is(&up.data, "device", "dev") && rp_obj_bool(&up.data, "resume", false));
    msgpack_unpacked_destroy(&up);

    /* argument checks and the frame limit (now 128) */
    CHECK(rp_send(p.c, "bob", "g", "c1", "text", "x", 1, false, &m) == -RP_EREQUEST);
    CHECK(rp_send(p.c, NULL, NULL, "c1", "text", "x", 1, false, &m) == -RP_EREQUEST);
    char big[200];
    memset(big, 'a', sizeof(big));
    CHECK(rp_send(p.c, "bob", NULL, "c1", "text", big, sizeof(big), false, &m) == -RP_ETOOLARGE);

    /* a bin body and a str body, with the reply of each pre-written */
    send_simple(p.fd, "ok", 2, "conv", "d:alice:bob");
    send_simple(p.fd, "ok", 3, "conv", "g:g1");
    CHECK(rp_send(p.c, "bob", NULL, "c1", "file", "\xff\0", 2, true, &m) == 0);
    CHECK(str_is(&m->obj, "conv", "d:alice:bob"));
    rp_msg_free(m);
    CHECK(rp_send(p.c, NULL, "g1", "c2", "text", "hi", 2, false, &m) == 0);
    rp_msg_free(m);
    read_request(p.fd, &up, store, sizeof(store));
    const msgpack_object *body = rp_obj_get(&up.data, "body");
    CHECK(str_is(&up.data, "op", "send") && str_is(&up.data, "to", "bob"));
    CHECK(!rp_obj_get(&up.data, "group") && str_is(&up.data, "cmid", "c1"));
    CHECK(str_is(&up.data, "type", "file"));
    CHECK(body && body->type == MSGPACK_OBJECT_BIN && body->via.bin.size == 2);
    CHECK(memcmp(body->via.bin.ptr, "\xff\0", 2) == 0);
    msgpack_unpacked_destroy(&up);
    read_request(p.fd, &up, store, sizeof(store));
    CHECK(str_is(&up.data, "group", "g1") && !rp_obj_get(&up.data, "to"));
    CHECK(str_is(&up.data, "body", "hi"));
    msgpack_unpacked_destroy(&up);

    /* ack carries no id */
    CHECK(rp_ack(p.c, "g:g1", 7) == 0);
    read_request(p.fd, &up, store, sizeof(store));
    uint64_t seq;
    CHECK(str_is(&up.data, "op", "ack") && !rp_obj_get(&up.data, "id"));
    CHECK(rp_obj_uint(&up.data, "seq", &seq) && seq == 7);
    msgpack_unpacked_destroy(&up);

    /* frames from the server above the announced max_frame are refused */
    memset(store, 0, sizeof(store));
    write_all(p.fd, "\0\0\0\xc8", 4); /* 200 > 128 */
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_ETOOLARGE);
    peer_close(&p);
}

/* A server announcing a huge max_frame raises the client's bound only up to
 * RP_MAX_FRAME_CAP: a frame declared past it is refused, not allocated. */
static void test_announced_max_frame_is_capped(void)
{
    struct peer p;
    peer_open(&p);
    send_hello_ok(p.fd, 1ull << 30, -1);
    struct rp_msg *m;
    CHECK(rp_hello(p.c, "tok", "dev", false, &m) == 0 && rp_msg_is(m, "ok"));
    rp_msg_free(m);
    write_all(p.fd, "\x04\0\0\0", 4); /* 64 MiB: under the announced 1 GiB, over the cap */
    usleep(20000);
    CHECK(rp_client_feed(p.c) == -RP_ETOOLARGE);
    peer_close(&p);
}

static void test_keepalive(void)
{
    struct peer p;
    peer_open(&p);
    CHECK(rp_client_tick(p.c) == INT32_MAX); /* no keepalive before hello */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "op");
    pk_str(&pk, "ok");
    pk_str(&pk, "id");
    msgpack_pack_uint32(&pk, 1);
    pk_str(&pk, "heartbeat_ms");
    msgpack_pack_uint32(&pk, 100);
    write_frame(p.fd, &sb);
    msgpack_sbuffer_destroy(&sb);
    struct rp_msg *m;
    CHECK(rp_hello(p.c, "tok", "dev", false, &m) == 0 && rp_msg_is(m, "ok"));
    rp_msg_free(m);
    int t = rp_client_tick(p.c);
    CHECK(t > 0 && t <= 100);
    /* a blocking wait of 350 ms pings about every 100 ms of silence */
    CHECK(rp_client_push(p.c, 350, &m) == -ETIMEDOUT);
    msgpack_unpacked up;
    char store[256];
    read_request(p.fd, &up, store, sizeof(store));
    CHECK(str_is(&up.data, "op", "hello"));
    msgpack_unpacked_destroy(&up);
    uint64_t id, ids[3], last = 0;
    int pings = 0;
    for (; pings < 3; pings++) {
        read_request(p.fd, &up, store, sizeof(store));
        CHECK(str_is(&up.data, "op", "ping") && rp_obj_uint(&up.data, "id", &id));
        CHECK(id > last);
        ids[pings] = last = id;
        msgpack_unpacked_destroy(&up);
    }
    /* past the next keepalive's time, so the wait below sends another before
     * it reads these: the pongs to every keepalive still unanswered are
     * swallowed, oldest last, and an unrelated one is not */
    usleep(150000);
    send_simple(p.fd, "pong", (uint32_t)ids[1], NULL, NULL);
    send_simple(p.fd, "pong", (uint32_t)ids[2], NULL, NULL);
    send_simple(p.fd, "pong", 777, NULL, NULL);
    send_simple(p.fd, "pong", (uint32_t)ids[0], NULL, NULL);
    CHECK(rp_client_push(p.c, 100, &m) == -ETIMEDOUT);
    CHECK(rp_client_next(p.c, &m) == 0 && rp_obj_uint(&m->obj, "id", &id) && id == 777);
    rp_msg_free(m);
    CHECK(rp_client_next(p.c, &m) == -EAGAIN);
    peer_close(&p);
}

static void test_token(void)
{
    const char key[] = "k3y";
    char *tok;
    CHECK(rp_token_mint("alice", 60, key, 3, &tok) == 0);
    struct jwt_claims cl;
    uint64_t now = (uint64_t)time(NULL);
    CHECK(jwt_verify_hs256(tok, strlen(tok), (const uint8_t *)key, 3, now, &cl) == 0);
    CHECK(cl.sub_len == 5 && memcmp(cl.sub, "alice", 5) == 0);
    CHECK(cl.exp >= now + 59 && cl.exp <= now + 61);
    CHECK(jwt_verify_hs256(tok, strlen(tok), (const uint8_t *)"k3z", 3, now, &cl) == -RP_EAUTH);
    CHECK(jwt_verify_hs256(tok, strlen(tok), (const uint8_t *)key, 3, now + 61, &cl) ==
          -RP_EEXPIRED);
    free(tok);
    CHECK(rp_token_mint("bad user", 60, key, 3, &tok) == -EINVAL);
    CHECK(rp_token_mint("", 60, key, 3, &tok) == -EINVAL);
}

static void test_json(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pk_str(&pk, "s");
    pk_str(&pk, "a\"b\\\n\x01");
    /* str values need not be UTF-8: a bad byte prints as U+FFFD, good ones as they are */
    pk_str(&pk, "u");
    pk_str(&pk, "\xc3\xa9\xff\xe2\x82\xac\xed\xa0\x80\xc3");
    pk_str(&pk, "f");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, 0.5);
    msgpack_pack_double(&pk, NAN);
    msgpack_pack_double(&pk, -INFINITY);
    pk_str(&pk, "b");
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "\x0a\xff", 2);
    pk_str(&pk, "a");
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, -5);
    msgpack_pack_uint64(&pk, 18446744073709551615ull);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    CHECK(msgpack_unpack_next(&up, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    CHECK(f && rp_obj_print_json(f, &up.data) == 0);
    fclose(f);
    const char *want = "{\"s\":\"a\\\"b\\\\\\n\\u0001\","
                       "\"u\":\"\xc3\xa9\\ufffd\xe2\x82\xac\\ufffd\\ufffd\\ufffd\\ufffd\","
                       "\"f\":[0.5,null,null],\"b\":{\"$bin\":\"0aff\"},"
                       "\"a\":[-5,18446744073709551615,true,null]}";
    if (strcmp(out, want) != 0)
        fprintf(stderr, "got  %s\nwant %s\n", out, want);
    CHECK(strcmp(out, want) == 0);
    free(out);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

static void test_connect_refused(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t al = sizeof(a);
    CHECK(getsockname(s, (struct sockaddr *)&a, &al) == 0);
    close(s); /* the port is now closed */
    struct rp_client *c = NULL;
    CHECK(rp_client_connect(&c, "127.0.0.1", ntohs(a.sin_port), 0) == -ECONNREFUSED);
    CHECK(c == NULL);
}

int main(void)
{
    test_reply_and_pushes();
    test_error_reply_codes();
    test_byte_by_byte();
    test_bad_input_from_server();
    test_timeout();
    test_hello_and_send_encoding();
    test_announced_max_frame_is_capped();
    test_keepalive();
    test_token();
    test_json();
    test_connect_refused();
    printf("test_ringpush: ok\n");
    return 0;
}
