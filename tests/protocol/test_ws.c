/*
 * WebSocket framing (protocol/ws.h), fed byte sequences whole and byte by
 * byte: what closes the connection closes it with the status RFC 6455 gives
 * the reason (1002 for a frame that breaks the framing rules, 1003 for text,
 * 1009 for a message over the limit), a client's empty close is echoed empty,
 * and pings are answered. The upgrade answer selects no subprotocol.
 */
#include "check.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/ws.h"

#include <stdio.h>
#include <string.h>

static unsigned messages;

static bool on_msg(void *arg, const uint8_t *msg, size_t len)
{
    (void)arg;
    (void)msg;
    (void)len;
    messages++;
    return true;
}

/* A masked client frame (zero mask key: the payload goes as it is). */
static size_t client_frame(uint8_t *out, uint8_t b0, const uint8_t *payload, size_t n)
{
    size_t off = 0;
    out[off++] = b0;
    if (n < 126) {
        out[off++] = (uint8_t)(0x80 | n);
    } else {
        out[off++] = 0x80 | 126;
        out[off++] = (uint8_t)(n >> 8);
        out[off++] = (uint8_t)n;
    }
    memset(out + off, 0, 4);
    off += 4;
    memcpy(out + off, payload, n);
    return off + n;
}

/* Feeds p[0..n) whole or one byte at a time; returns ws_feed's last answer
 * and appends every output byte to out. */
static int feed(const uint8_t *p, size_t n, bool bytewise, struct buf *out)
{
    struct ws *ws = ws_new(1024, on_msg, NULL);
    CHECK(ws);
    int r = 0;
    for (size_t off = 0; off < n && !r;) {
        size_t k = bytewise ? 1 : n;
        r = ws_feed(ws, p + off, k);
        off += k;
        size_t len;
        const uint8_t *o = ws_take_output(ws, &len);
        if (o)
            CHECK(buf_append(out, o, len) == 0);
    }
    ws_free(ws);
    return r;
}

/* The input closes the connection, and the last thing sent is a close with
 * this status (0: a close with no body). */
static void closes_with(const uint8_t *p, size_t n, unsigned status)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct buf out;
        buf_init(&out);
        CHECK(feed(p, n, bytewise, &out) == -RP_ECLOSED);
        if (status) {
            CHECK(out.len >= 4);
            const uint8_t *c = out.data + out.len - 4;
            CHECK(c[0] == 0x88 && c[1] == 2 && (unsigned)(c[2] << 8 | c[3]) == status);
        } else {
            CHECK(out.len >= 2 && out.data[out.len - 2] == 0x88 && out.data[out.len - 1] == 0);
        }
        buf_deinit(&out);
    }
}

static void test_close_status(void)
{
    uint8_t f[512], big[200];
    size_t n;
    memset(big, 'x', sizeof(big));

    n = client_frame(f, 0x89, big, 126); /* ping over 125 bytes */
    closes_with(f, n, 1002);
    n = client_frame(f, 0x09, big, 1); /* ping without FIN */
    closes_with(f, n, 1002);
    static const uint8_t len63[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    closes_with(len63, sizeof(len63), 1002);
    static const uint8_t short16[] = {0x82, 0x80 | 126, 0, 5, 0, 0, 0, 0, 0x80, 0, 0, 0, 0};
    closes_with(short16, sizeof(short16), 1002);
    n = client_frame(f, 0x88, (const uint8_t *)"\x03", 1); /* close with a 1-byte body */
    closes_with(f, n, 1002);
    n = client_frame(f, 0x83, big, 1); /* reserved opcode */
    closes_with(f, n, 1002);
    static const uint8_t unmasked[] = {0x82, 0x01, 0x80};
    closes_with(unmasked, sizeof(unmasked), 1002);
    n = client_frame(f, 0x81, (const uint8_t *)"hi", 2); /* text */
    closes_with(f, n, 1003);
    n = client_frame(f, 0x81, (const uint8_t *)"\x81\xa2op", 4); /* text, not UTF-8: still 1003 */
    closes_with(f, n, 1003);
    n = client_frame(f, 0x01, (const uint8_t *)"\xff", 1); /* its first fragment is enough */
    closes_with(f, n, 1003);
    n = client_frame(f, 0x80, big, 0); /* a continuation with nothing to continue */
    closes_with(f, n, 1002);
    n = client_frame(f, 0x02, big, 3);
    n += client_frame(f + n, 0x82, big, 3); /* a new message inside a fragmented one */
    closes_with(f, n, 1002);
    /* a client's close is echoed: with its status, or empty when it had none */
    n = client_frame(f, 0x88, (const uint8_t *)"\x03\xe8", 2);
    closes_with(f, n, 1000);
    n = client_frame(f, 0x88, big, 0);
    closes_with(f, n, 0);
    /* over max_msg (1024) in fragments */
    uint8_t all[8 * 256];
    size_t total = 0;
    total += client_frame(all, 0x02, big, 200);
    for (int i = 0; i < 5; i++)
        total += client_frame(all + total, i == 4 ? 0x80 : 0x00, big, 200);
    closes_with(all, total, 1009);
}

static void test_ping_and_message(void)
{
    uint8_t f[64];
    size_t n = client_frame(f, 0x89, (const uint8_t *)"k", 1);
    n += client_frame(f + n, 0x82, (const uint8_t *)"\x80", 1);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct buf out;
        buf_init(&out);
        messages = 0;
        CHECK(feed(f, n, bytewise, &out) == 0);
        CHECK(messages == 1);
        CHECK(out.len == 3 && memcmp(out.data, "\x8a\x01k", 3) == 0);
        buf_deinit(&out);
    }
}

static void test_no_subprotocol(void)
{
    static const char req[] =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v1\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    struct buf reply;
    buf_init(&reply);
    CHECK(ws_handshake((const uint8_t *)req, sizeof(req) - 1, &reply) == (int)sizeof(req) - 1);
    CHECK(buf_append(&reply, "", 1) == 0);
    CHECK(strstr((const char *)reply.data, "101 Switching Protocols"));
    CHECK(strstr((const char *)reply.data, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    CHECK(!strstr((const char *)reply.data, "Sec-WebSocket-Protocol"));
    CHECK(!strstr((const char *)reply.data, "Sec-WebSocket-Extensions"));
    buf_deinit(&reply);
}

/* The upgrade request head: its answer's status line, and what ws_handshake
 * returned. */
static int upgrade(const char *head, char *status, size_t cap)
{
    struct buf reply;
    buf_init(&reply);
    int r = ws_handshake((const uint8_t *)head, strlen(head), &reply);
    CHECK(buf_append(&reply, "", 1) == 0);
    size_t n = strcspn((const char *)reply.data, "\r");
    snprintf(status, cap, "%.*s", (int)n, (const char *)reply.data);
    if (strstr(status, "426"))
        CHECK(strstr((const char *)reply.data, "\r\nSec-WebSocket-Version: 13\r\n"));
    buf_deinit(&reply);
    return r;
}

#define KEY  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define REST "Upgrade: websocket\r\nConnection: Upgrade\r\n" KEY "Sec-WebSocket-Version: 13\r\n"

static void test_handshake(void)
{
    static char big[WS_HANDSHAKE_MAX + 64];
    char st[64];
    struct {
        const char *head;
        const char *status;
    } cases[] = {
        {"GET /ws HTTP/1.1\r\nHost: x\r\n" REST "\r\n", "HTTP/1.1 101 Switching Protocols"},
        {"GET /ws?token=abc HTTP/1.1\r\nHost: x\r\n" REST "\r\n",
         "HTTP/1.1 101 Switching Protocols"},
        /* absolute form (RFC 7230 §5.3.2) */
        {"GET http://x/ws HTTP/1.1\r\nHost: x\r\n" REST "\r\n", "HTTP/1.1 101 Switching Protocols"},
        /* lines ending in a bare LF (RFC 7230 §3.5) */
        {"GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n",
         "HTTP/1.1 101 Switching Protocols"},
        /* Connection on two lines: one list */
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Connection: Upgrade\r\n" KEY "Sec-WebSocket-Version: 13\r\n\r\n",
         "HTTP/1.1 101 Switching Protocols"},
        {"GET /other HTTP/1.1\r\nHost: x\r\n" REST "\r\n", "HTTP/1.1 404 Not Found"},
        {"GET /ws HTTP/1.0\r\nHost: x\r\n" REST "\r\n", "HTTP/1.1 400 Bad Request"},
        {"GET /ws HTTP/1.1\r\n" REST "\r\n", "HTTP/1.1 400 Bad Request"}, /* no Host */
        {"GET /ws HTTP/1.1\r\nHost: x\r\nHost: y\r\n" REST "\r\n", "HTTP/1.1 400 Bad Request"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "HTTP/1.1 400 Bad Request"}, /* a key that is not base64 */
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEY
         "Sec-WebSocket-Version: 8\r\n\r\n",
         "HTTP/1.1 426 Upgrade Required"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEY KEY
         "Sec-WebSocket-Version: 13\r\n\r\n",
         "HTTP/1.1 400 Bad Request"}, /* two keys */
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEY "\r\n",
         "HTTP/1.1 400 Bad Request"}, /* no version */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = upgrade(cases[i].head, st, sizeof(st));
        CHECK(strcmp(st, cases[i].status) == 0);
        CHECK((r > 0) == (strstr(st, "101") != NULL));
        if (r > 0)
            CHECK(r == (int)strlen(cases[i].head));
    }
    /* long headers and query strings are fine while the head fits its bound */
    int n = snprintf(big, sizeof(big), "GET /ws?q=");
    memset(big + n, 'q', 3000);
    n += 3000;
    n += snprintf(big + n, sizeof(big) - (size_t)n, " HTTP/1.1\r\nHost: x\r\nConnection: ");
    memset(big + n, 'k', 3000);
    n += 3000;
    snprintf(big + n, sizeof(big) - (size_t)n,
             ", Upgrade\r\nUpgrade: websocket\r\n" KEY "Sec-WebSocket-Version: 13\r\n\r\n");
    CHECK(upgrade(big, st, sizeof(st)) > 0 && strstr(st, "101"));
    /* past it: 431 */
    n = snprintf(big, sizeof(big), "GET /ws HTTP/1.1\r\nHost: x\r\nX: ");
    memset(big + n, 'x', WS_HANDSHAKE_MAX);
    big[n + WS_HANDSHAKE_MAX] = 0;
    CHECK(upgrade(big, st, sizeof(st)) == -RP_ETOOLARGE && strstr(st, "431"));
    /* not complete yet: nothing */
    CHECK(upgrade("GET /ws HTTP/1.1\r\nHost: x\r\n", st, sizeof(st)) == 0);
}

int main(void)
{
    test_close_status();
    test_ping_and_message();
    test_no_subprotocol();
    test_handshake();
    printf("test_ws: ok\n");
    return 0;
}
