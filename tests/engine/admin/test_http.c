/*
 * The admin HTTP reader fed whole, byte by byte and truncated at every byte;
 * pipelining, chunked bodies, the head and body bounds, malformed input; and
 * the response writers read back.
 */
#define _GNU_SOURCE
#include "base/err.h"
#include "engine/admin/http.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

static const char post_req[] = "POST /v1/backup?x=1 HTTP/1.1\r\n"
                               "Host: localhost\r\n"
                               "authorization: Bearer k3y\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 16\r\n"
                               "\r\n"
                               "{\"dir\":\"/tmp/b\"}";

static void check_post(const struct http_req *q)
{
    CHECK(q->method == HTTP_POST);
    CHECK(q->target_len == 14 && strcmp(q->target, "/v1/backup?x=1") == 0);
    CHECK(q->auth && strcmp(q->auth, "Bearer k3y") == 0 && q->auth_len == 10);
    CHECK(q->body_len == 16 && memcmp(q->body, "{\"dir\":\"/tmp/b\"}", 16) == 0);
    CHECK(q->keep_alive);
}

/* Feed everything at once; expect exactly one request using all bytes. */
static int feed_all(struct http_reader *r, const char *s, size_t len, struct http_req *q)
{
    size_t used = 0;
    int res = http_reader_feed(r, (const uint8_t *)s, len, &used, q);
    if (res == 1)
        CHECK(used == len);
    return res;
}

static void test_whole(void)
{
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    CHECK(!http_reader_started(&r));
    CHECK(feed_all(&r, post_req, strlen(post_req), &q) == 1);
    check_post(&q);
    http_reader_next(&r);
    const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(feed_all(&r, get, strlen(get), &q) == 1);
    CHECK(q.method == HTTP_GET && strcmp(q.target, "/healthz") == 0);
    CHECK(q.auth == NULL && q.body == NULL && q.body_len == 0 && q.keep_alive);
    http_reader_deinit(&r);
}

/* The head of a request, before its body: target and key (trimmed) known. */
static void test_head_before_body(void)
{
    struct http_reader r;
    struct http_req q = {0}, h;
    http_reader_init(&r);
    const char head[] = "POST /v1/messages HTTP/1.1\r\nAuthorization:  Bearer k \r\n"
                        "Content-Length: 5\r\n\r\nab";
    CHECK(http_reader_head(&r, &h) == 0);
    size_t used;
    CHECK(http_reader_feed(&r, (const uint8_t *)head, 60, &used, &q) == 0);
    CHECK(http_reader_head(&r, &h) == 0); /* the head is not whole yet */
    CHECK(feed_all(&r, head + used, strlen(head) - used, &q) == 0);
    CHECK(http_reader_head(&r, &h) == 1);
    CHECK(h.method == HTTP_POST && h.target_len == 12 && !memcmp(h.target, "/v1/messages", 12));
    CHECK(h.auth_len == 8 && !memcmp(h.auth, "Bearer k", 8) && h.body == NULL);
    CHECK(feed_all(&r, "cde", 3, &q) == 1 && q.body_len == 5);
    http_reader_deinit(&r);
}

static void test_byte_by_byte(void)
{
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    size_t n = strlen(post_req);
    for (size_t i = 0; i < n; i++) {
        size_t used = 0;
        int res = http_reader_feed(&r, (const uint8_t *)post_req + i, 1, &used, &q);
        CHECK(used == 1);
        CHECK(res == (i + 1 == n ? 1 : 0));
        CHECK(http_reader_started(&r) == (i + 1 < n));
    }
    check_post(&q);
    http_reader_deinit(&r);
}

static void test_truncated(void)
{
    size_t n = strlen(post_req);
    for (size_t cut = 0; cut < n; cut++) {
        struct http_reader r;
        struct http_req q = {0};
        http_reader_init(&r);
        size_t used = 0;
        CHECK(http_reader_feed(&r, (const uint8_t *)post_req, cut, &used, &q) == 0);
        CHECK(used == cut);
        /* The rest completes it. */
        CHECK(http_reader_feed(&r, (const uint8_t *)post_req + cut, n - cut, &used, &q) == 1);
        CHECK(used == n - cut);
        check_post(&q);
        http_reader_deinit(&r);
    }
}

static void test_pipelined(void)
{
    char two[1024];
    const char get[] = "GET /metrics HTTP/1.1\r\nAuthorization: Bearer a\r\n\r\n";
    int len = snprintf(two, sizeof(two), "%s%s", get, post_req);
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    size_t used = 0;
    CHECK(http_reader_feed(&r, (const uint8_t *)two, (size_t)len, &used, &q) == 1);
    CHECK(used == strlen(get));
    CHECK(q.method == HTTP_GET && strcmp(q.target, "/metrics") == 0);
    CHECK(strcmp(q.auth, "Bearer a") == 0);
    http_reader_next(&r);
    size_t used2 = 0;
    CHECK(http_reader_feed(&r, (const uint8_t *)two + used, (size_t)len - used, &used2, &q) == 1);
    CHECK(used + used2 == (size_t)len);
    check_post(&q);
    http_reader_deinit(&r);
}

static void test_chunked(void)
{
    const char req[] = "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    CHECK(feed_all(&r, req, strlen(req), &q) == 1);
    CHECK(q.body_len == 7 && memcmp(q.body, "abcdefg", 7) == 0);
    CHECK(q.auth == NULL);
    http_reader_deinit(&r);
    /* a trailer is no header: an Authorization there does not count */
    const char trailer[] = "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "3\r\nabc\r\n0\r\nAuthorization: Bearer k\r\n\r\n";
    http_reader_init(&r);
    CHECK(feed_all(&r, trailer, strlen(trailer), &q) == 1);
    CHECK(q.body_len == 3 && q.auth == NULL);
    http_reader_deinit(&r);
}

/* "Expect: 100-continue": a 100 is due once the head is in and the body is
 * not, and only once; without the header never. */
static void test_expect_continue(void)
{
    const char head[] = "POST /v1/messages HTTP/1.1\r\nExpect: 100-Continue\r\n"
                        "Content-Length: 3\r\n\r\n";
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    CHECK(!http_reader_continue(&r));
    CHECK(feed_all(&r, head, strlen(head), &q) == 0);
    CHECK(http_reader_continue(&r));
    CHECK(!http_reader_continue(&r));
    CHECK(feed_all(&r, "abc", 3, &q) == 1);
    http_reader_next(&r);
    CHECK(feed_all(&r, post_req, strlen(post_req) - 3, &q) == 0); /* no Expect */
    CHECK(!http_reader_continue(&r));
    http_reader_deinit(&r);
}

/* White space around the Authorization value is not part of it. */
static void test_auth_white_space(void)
{
    const char req[] = "GET /metrics HTTP/1.1\r\nAuthorization: \t Bearer k3y \t\r\n\r\n";
    struct http_reader r;
    struct http_req q = {0};
    http_reader_init(&r);
    CHECK(feed_all(&r, req, strlen(req), &q) == 1);
    CHECK(q.auth && q.auth_len == 10 && strcmp(q.auth, "Bearer k3y") == 0);
    http_reader_deinit(&r);
}

static void test_keep_alive_flags(void)
{
    struct {
        const char *req;
        bool keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_reader r;
        struct http_req q = {0};
        http_reader_init(&r);
        CHECK(feed_all(&r, cases[i].req, strlen(cases[i].req), &q) == 1);
        CHECK(q.keep_alive == cases[i].keep);
        http_reader_deinit(&r);
    }
}

/* A head just over HTTP_MAX_HEAD fails, fed whole or byte by byte; one just
 * under passes. */
static void test_head_bound(void)
{
    for (int over = 0; over <= 1; over++) {
        for (int bytewise = 0; bytewise <= 1; bytewise++) {
            struct buf b;
            buf_init(&b);
            const char start[] = "GET /metrics HTTP/1.1\r\nX-Pad: ";
            const char end[] = "\r\n\r\n";
            size_t pad = HTTP_MAX_HEAD - strlen(start) - strlen(end) + (over ? 1 : 0);
            buf_append(&b, start, strlen(start));
            for (size_t i = 0; i < pad; i++)
                buf_append(&b, "a", 1);
            buf_append(&b, end, strlen(end));
            CHECK(b.len == HTTP_MAX_HEAD + (over ? 1u : 0u));
            struct http_reader r;
            struct http_req q = {0};
            http_reader_init(&r);
            int res = 0;
            size_t used;
            if (bytewise) {
                for (size_t i = 0; i < b.len && res == 0; i++)
                    res = http_reader_feed(&r, b.data + i, 1, &used, &q);
            } else {
                res = http_reader_feed(&r, b.data, b.len, &used, &q);
            }
            CHECK(res == (over ? -RP_ETOOLARGE : 1));
            http_reader_deinit(&r);
            buf_deinit(&b);
        }
    }
}

static void test_body_bound(void)
{
    struct http_reader r;
    struct http_req q = {0};
    size_t used;
    char req[256];
    /* Declared too large: refused at the end of the head, before any body byte. */
    int n = snprintf(req, sizeof(req), "POST /v1/messages HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
                     HTTP_MAX_BODY + 1);
    http_reader_init(&r);
    CHECK(http_reader_feed(&r, (const uint8_t *)req, (size_t)n, &used, &q) == -RP_ETOOLARGE);
    /* Sticky until reset. */
    CHECK(http_reader_feed(&r, (const uint8_t *)"x", 1, &used, &q) == -RP_ETOOLARGE);
    http_reader_next(&r);
    /* Exactly the bound is fine. */
    n = snprintf(req, sizeof(req), "POST /v1/messages HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
                 HTTP_MAX_BODY);
    CHECK(http_reader_feed(&r, (const uint8_t *)req, (size_t)n, &used, &q) == 0);
    uint8_t *body = calloc(1, HTTP_MAX_BODY);
    CHECK(body);
    CHECK(http_reader_feed(&r, body, HTTP_MAX_BODY, &used, &q) == 1);
    CHECK(q.body_len == HTTP_MAX_BODY);
    http_reader_next(&r);
    /* Chunked, growing past the bound. */
    n = snprintf(req, sizeof(req),
                 "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                 HTTP_MAX_BODY);
    CHECK(http_reader_feed(&r, (const uint8_t *)req, (size_t)n, &used, &q) == 0);
    CHECK(http_reader_feed(&r, body, HTTP_MAX_BODY, &used, &q) == 0);
    CHECK(http_reader_feed(&r, (const uint8_t *)"\r\n1\r\nz", 6, &used, &q) == -RP_ETOOLARGE);
    free(body);
    http_reader_deinit(&r);
}

static void test_malformed(void)
{
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_reader r;
        struct http_req q = {0};
        size_t used;
        http_reader_init(&r);
        int res = http_reader_feed(&r, (const uint8_t *)bad[i], strlen(bad[i]), &used, &q);
        if (res != -RP_EREQUEST)
            fprintf(stderr, "case %zu: %d\n", i, res);
        CHECK(res == -RP_EREQUEST);
        http_reader_deinit(&r);
    }
}

/* Split a response into its head and body and check the framing. */
static const char *check_response(const struct buf *b, int status, bool keep)
{
    char line[64];
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    CHECK(b->len > strlen(line) && memcmp(b->data, line, strlen(line)) == 0);
    char *text = strndup((const char *)b->data, b->len);
    char *body = strstr(text, "\r\n\r\n");
    CHECK(body);
    body += 4;
    char *cl = strstr(text, "Content-Length: ");
    CHECK(cl && (size_t)strtoul(cl + 16, NULL, 10) == strlen(body));
    CHECK(strstr(text, keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n"));
    static char saved[512];
    snprintf(saved, sizeof(saved), "%s", body);
    free(text);
    return saved;
}

static void test_writers(void)
{
    struct buf b;
    buf_init(&b);
    int statuses[] = {400, 401, 403, 404, 409, 413, 429, 503};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        buf_reset(&b);
        CHECK(http_write_error(&b, statuses[i], "why \"quoted\"", i % 2 == 0) == 0);
        const char *body = check_response(&b, statuses[i], i % 2 == 0);
        cJSON *o = cJSON_Parse(body);
        CHECK(o && cJSON_IsObject(o));
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "msg");
        CHECK(cJSON_IsString(code) && strcmp(code->valuestring, http_error_code(statuses[i])) == 0);
        CHECK(cJSON_IsString(msg) && strcmp(msg->valuestring, "why \"quoted\"") == 0);
        cJSON_Delete(o);
    }
    CHECK(strcmp(http_error_code(401), "unauthorized") == 0);
    CHECK(strcmp(http_error_code(413), "too_large") == 0);
    CHECK(strcmp(http_error_code(500), "internal") == 0);
    buf_reset(&b);
    CHECK(http_write_error(&b, 401, "no", true) == 0);
    CHECK(memmem(b.data, b.len, "WWW-Authenticate: Bearer\r\n", 26));
    buf_reset(&b);
    CHECK(http_write_response(&b, 200, "text/plain", "hello", 5, false) == 0);
    CHECK(strcmp(check_response(&b, 200, false), "hello") == 0);
    buf_deinit(&b);
}

int main(void)
{
    test_whole();
    test_byte_by_byte();
    test_head_before_body();
    test_truncated();
    test_pipelined();
    test_chunked();
    test_auth_white_space();
    test_expect_continue();
    test_keep_alive_flags();
    test_head_bound();
    test_body_bound();
    test_malformed();
    test_writers();
    printf("test_admin_http: ok\n");
    return 0;
}
