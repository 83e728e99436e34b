/*
 * The admin HTTP client (clients/c/admin.h) against a scripted peer: a thread
 * that accepts one connection, reads the request head and body, writes a
 * canned response (whole, or a byte at a time) and closes. Checks the request
 * as sent (method, path, Authorization, Content-Length, body), responses by
 * Content-Length, chunked and read-to-close, and the refusals: a truncated
 * body, a non-HTTP answer, silence (timeout), a closed port, bad arguments.
 * Also the JSON string quoting used for request bodies.
 */
#include "admin.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "check.h"

struct peer {
    int ls;
    uint16_t port;
    const char *response; /* NULL: say nothing, wait for the client to give up */
    bool bytewise;
    char request[8192];
    size_t request_len;
    pthread_t thread;
};

static void write_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = write(fd, s, len);
        if (n <= 0)
            return; /* the client gave up: nothing to check here */
        s += n;
        len -= (size_t)n;
    }
}

/* Reads the head and, by its Content-Length, the body. */
static void read_request(struct peer *p, int fd)
{
    size_t want = SIZE_MAX;
    while (p->request_len < want && p->request_len < sizeof(p->request) - 1) {
        ssize_t n = read(fd, p->request + p->request_len, sizeof(p->request) - 1 - p->request_len);
        if (n <= 0)
            break;
        p->request_len += (size_t)n;
        p->request[p->request_len] = '\0';
        char *end = strstr(p->request, "\r\n\r\n");
        if (end && want == SIZE_MAX) {
            const char *cl = strstr(p->request, "Content-Length: ");
            size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
            want = (size_t)(end - p->request) + 4 + body;
        }
    }
}

static void *peer_run(void *arg)
{
    struct peer *p = arg;
    int fd = accept(p->ls, NULL, NULL);
    CHECK(fd >= 0);
    read_request(p, fd);
    if (!p->response) {
        char c;
        (void)!read(fd, &c, 1); /* until the client closes on its timeout */
    } else if (p->bytewise) {
        for (const char *s = p->response; *s; s++)
            write_all(fd, s, 1);
    } else {
        write_all(fd, p->response, strlen(p->response));
    }
    close(fd);
    return NULL;
}

static void peer_start(struct peer *p, const char *response, bool bytewise)
{
    memset(p, 0, sizeof(*p));
    p->response = response;
    p->bytewise = bytewise;
    p->ls = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(p->ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(p->ls, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(p->ls, 1) == 0);
    socklen_t al = sizeof(a);
    CHECK(getsockname(p->ls, (struct sockaddr *)&a, &al) == 0);
    p->port = ntohs(a.sin_port);
    CHECK(pthread_create(&p->thread, NULL, peer_run, p) == 0);
}

static void peer_join(struct peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->ls);
}

static const char json_ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: 13\r\nConnection: close\r\n\r\n{\"kicked\":2}\n";

static void test_request_and_length(bool bytewise)
{
    struct peer p;
    peer_start(&p, json_ok, bytewise);
    struct rp_admin_resp r;
    static const char body[] = "{\"dir\":\"/x\"}";
    CHECK(rp_admin_request("127.0.0.1", p.port, "k3y", "POST", "/v1/backup", body, strlen(body),
                           2000, &r) == 0);
    peer_join(&p);
    CHECK(r.status == 200 && r.body_len == 13 && strcmp(r.body, "{\"kicked\":2}\n") == 0);
    CHECK(strncmp(p.request, "POST /v1/backup HTTP/1.1\r\n", 26) == 0);
    CHECK(strstr(p.request, "\r\nAuthorization: Bearer k3y\r\n"));
    CHECK(strstr(p.request, "\r\nContent-Length: 12\r\n"));
    CHECK(strstr(p.request, "\r\nConnection: close\r\n"));
    CHECK(strcmp(strstr(p.request, "\r\n\r\n") + 4, body) == 0);
    rp_admin_resp_free(&r);
    rp_admin_resp_free(&r);
    CHECK(r.body == NULL && r.status == 0);
}

static void test_no_key_no_body(void)
{
    struct peer p;
    peer_start(&p,
               "HTTP/1.1 401 Unauthorized\r\nContent-Length: 46\r\n\r\n"
               "{\"code\":\"unauthorized\",\"msg\":\"bad admin key\"}\n",
               false);
    struct rp_admin_resp r;
    CHECK(rp_admin_request("localhost", p.port, NULL, "GET", "/metrics", NULL, 0, 2000, &r) == 0);
    peer_join(&p);
    CHECK(r.status == 401 && strstr(r.body, "unauthorized"));
    CHECK(strncmp(p.request, "GET /metrics HTTP/1.1\r\n", 23) == 0);
    CHECK(!strstr(p.request, "Authorization") && !strstr(p.request, "Content-Length"));
    rp_admin_resp_free(&r);
}

static void test_chunked_and_close(void)
{
    struct peer p;
    peer_start(&p,
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
               true);
    struct rp_admin_resp r;
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/healthz", NULL, 0, 2000, &r) == 0);
    peer_join(&p);
    CHECK(r.status == 200 && r.body_len == 12 && strcmp(r.body, "hello, world") == 0);
    rp_admin_resp_free(&r);

    peer_start(&p, "HTTP/1.0 503 Service Unavailable\r\nX: y\r\n\r\nuntil the close", false);
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/", NULL, 0, 2000, &r) == 0);
    peer_join(&p);
    CHECK(r.status == 503 && strcmp(r.body, "until the close") == 0);
    rp_admin_resp_free(&r);
}

static void test_refusals(void)
{
    struct peer p;
    struct rp_admin_resp r;
    peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", false);
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/", NULL, 0, 2000, &r) == -RP_EFRAME);
    peer_join(&p);
    CHECK(r.body == NULL);

    peer_start(&p, "SSH-2.0-OpenSSH\r\n\r\n", false);
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/", NULL, 0, 2000, &r) == -RP_EFRAME);
    peer_join(&p);

    peer_start(&p, "", false); /* closes without a word */
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/", NULL, 0, 2000, &r) == -RP_EFRAME);
    peer_join(&p);

    peer_start(&p, NULL, false); /* silent */
    CHECK(rp_admin_request("127.0.0.1", p.port, "k", "GET", "/", NULL, 0, 300, &r) == -ETIMEDOUT);
    peer_join(&p);

    uint16_t closed = p.port; /* the listener is closed now */
    CHECK(rp_admin_request("127.0.0.1", closed, "k", "GET", "/", NULL, 0, 2000, &r) ==
          -ECONNREFUSED);
    CHECK(rp_admin_request("127.0.0.1", closed, "k", "GET", "/a b", NULL, 0, 2000, &r) == -EINVAL);
    CHECK(rp_admin_request("127.0.0.1", closed, "k\r\nX: 1", "GET", "/", NULL, 0, 2000, &r) ==
          -EINVAL);
    CHECK(rp_admin_request("127.0.0.1", closed, "k", "", "/", NULL, 0, 2000, &r) == -EINVAL);
    CHECK(rp_admin_request("no.such.host.invalid", closed, "k", "GET", "/", NULL, 0, 2000, &r) ==
          -EINVAL);
}

static void test_json_quote(void)
{
    char out[64];
    int n = rp_json_quote(out, sizeof(out), 0, "a\"b\\c\nd\x01");
    CHECK(n > 0 && strcmp(out, "\"a\\\"b\\\\c\\u000ad\\u0001\"") == 0 && (size_t)n == strlen(out));
    strcpy(out, "{\"k\":");
    n = rp_json_quote(out, sizeof(out), 5, "h\xc3\xa9");
    CHECK(n == 10 && strcmp(out, "{\"k\":\"h\xc3\xa9\"") == 0);
    char small[6] = "";
    CHECK(rp_json_quote(small, sizeof(small), 0, "abcd") == -RP_ETOOLARGE);
    CHECK(strlen(small) == 0);
    CHECK(rp_json_quote(small, sizeof(small), 0, "abc") == 5 && strcmp(small, "\"abc\"") == 0);
}

int main(void)
{
    test_request_and_length(false);
    test_request_and_length(true);
    test_no_key_no_body();
    test_chunked_and_close();
    test_refusals();
    test_json_quote();
    printf("test_admin: ok\n");
    return 0;
}
