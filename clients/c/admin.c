/*
 * The admin HTTP client (see admin.h). It reads the whole response into one
 * growing buffer, then parses it: the admin API's responses are small (the
 * largest is /metrics, a few kilobytes per shard), so there is nothing to gain
 * from parsing incrementally, and a single parse of a complete buffer is
 * easier to get right.
 *
 * The socket is non-blocking and every wait is a poll bounded by the one
 * deadline of the exchange, so a server that stops answering halfway through
 * cannot hold the caller longer than its timeout.
 */
#include "admin.h"

#include "base/err.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls fd for events until deadline (< 0: none). 0 when ready, -ETIMEDOUT, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = -1;
        if (deadline >= 0) {
            int64_t d = deadline - now_ms();
            if (d <= 0)
                return -ETIMEDOUT;
            left = d > 60000 ? 60000 : (int)d;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_addr(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            err = -errno;
            goto close_fd;
        }
        err = wait_fd(fd, POLLOUT, deadline);
        if (err < 0)
            goto close_fd;
        socklen_t sl = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
            err = errno;
        if (err) {
            err = -err;
            goto close_fd;
        }
    }
    return fd;
close_fd:
    close(fd);
    return err;
}

static int connect_host(const char *host, uint16_t port, int64_t deadline)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -EINVAL;
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_addr(ai, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

static int write_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The growing receive buffer; always NUL-terminated once anything was read. */
struct rbuf {
    char *p;
    size_t len, cap;
};

/* Reads until the server closes (0), or until want bytes are held (1). */
static int read_until(int fd, struct rbuf *b, size_t want, int64_t deadline)
{
    while (b->len < want) {
        if (b->cap - b->len < READ_CHUNK + 1) {
            size_t cap = b->cap ? b->cap * 2 : 2 * READ_CHUNK;
            if (cap > RP_ADMIN_MAX_RESPONSE + READ_CHUNK + 1)
                cap = RP_ADMIN_MAX_RESPONSE + READ_CHUNK + 1;
            if (cap - b->len < READ_CHUNK + 1)
                return -RP_ETOOLARGE;
            char *p = realloc(b->p, cap);
            if (!p)
                return -ENOMEM;
            b->p = p;
            b->cap = cap;
        }
        ssize_t r = recv(fd, b->p + b->len, READ_CHUNK, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            int e = wait_fd(fd, POLLIN, deadline);
            if (e < 0)
                return e;
            continue;
        }
        if (r == 0)
            return 0;
        b->len += (size_t)r;
        b->p[b->len] = '\0';
        if (b->len > RP_ADMIN_MAX_RESPONSE)
            return -RP_ETOOLARGE;
    }
    return 1;
}

/* Finds header name (case-insensitive) in the head [p, end); its value, trimmed, or NULL. */
static const char *header_value(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *line = memchr(p, '\n', (size_t)(end - p)); /* skip the status line */
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol < end ? eol : NULL;
    }
    return NULL;
}

/* Decodes a chunked body in place; its decoded length, or -RP_EFRAME. */
static int dechunk(char *p, size_t len, size_t *out_len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        if (in >= len || !isxdigit((unsigned char)p[in]))
            return -RP_EFRAME;
        unsigned long n = strtoul(p + in, &end, 16);
        char *eol = memchr(end, '\n', len - (size_t)(end - p));
        if (!eol)
            return -RP_EFRAME;
        in = (size_t)(eol - p) + 1;
        if (n == 0)
            break;
        if (n > len - in)
            return -RP_EFRAME;
        memmove(p + out, p + in, n);
        out += n;
        in += n;
        if (in < len && p[in] == '\r')
            in++;
        if (in < len && p[in] == '\n')
            in++;
    }
    p[out] = '\0';
    *out_len = out;
    return 0;
}

/* Reads and parses the response into resp (taking b's memory on success). */
static int read_response(int fd, struct rbuf *b, int64_t deadline, struct rp_admin_resp *resp)
{
    char *head_end = NULL;
    int r;
    while (!head_end) {
        r = read_until(fd, b, b->len + 1, deadline);
        if (r < 0)
            return r;
        if (r == 0 && b->len == 0)
            return -RP_EFRAME;
        head_end = b->len ? strstr(b->p, "\r\n\r\n") : NULL;
        if (!head_end && r == 0)
            return -RP_EFRAME;
    }
    int major, minor, status;
    if (sscanf(b->p, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || major != 1 ||
        status < 100 || status > 599)
        return -RP_EFRAME;
    size_t head_len = (size_t)(head_end - b->p) + 4;
    size_t vlen;
    const char *cl = header_value(b->p, head_end, "Content-Length", &vlen);
    const char *te = header_value(b->p, head_end, "Transfer-Encoding", &vlen);
    bool chunked = te && vlen >= 7 && strncasecmp(te + vlen - 7, "chunked", 7) == 0;
    if (cl && !chunked) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || n > RP_ADMIN_MAX_RESPONSE)
            return n > RP_ADMIN_MAX_RESPONSE ? -RP_ETOOLARGE : -RP_EFRAME;
        r = read_until(fd, b, head_len + (size_t)n, deadline);
        if (r < 0)
            return r;
        if (r == 0)
            return -RP_EFRAME; /* closed before the whole body came */
        b->len = head_len + (size_t)n;
    } else {
        r = read_until(fd, b, SIZE_MAX, deadline); /* to the close */
        if (r < 0)
            return r;
    }
    size_t body_len = b->len - head_len;
    memmove(b->p, b->p + head_len, body_len);
    b->p[body_len] = '\0';
    if (chunked && (r = dechunk(b->p, body_len, &body_len)) < 0)
        return r;
    resp->status = status;
    resp->body = b->p;
    resp->body_len = body_len;
    b->p = NULL;
    return 0;
}

static bool token_ok(const char *s)
{
    return s && *s && !strpbrk(s, " \r\n");
}

int rp_admin_request(const char *host, uint16_t port, const char *key, const char *method,
                     const char *path, const char *body, size_t body_len, int timeout_ms,
                     struct rp_admin_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    if (!token_ok(method) || !token_ok(path) || (key && strpbrk(key, "\r\n")))
        return -EINVAL;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    char head[4096];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: ringpush\r\n"
                     "Connection: close\r\n%s%s%s",
                     method, path, host, port, key && *key ? "Authorization: Bearer " : "",
                     key && *key ? key : "", key && *key ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head) - 128)
        return -EINVAL; /* a path or key far beyond what the admin port accepts */
    if (body)
        n += snprintf(head + n, sizeof(head) - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");

    struct rbuf b = {0};
    int fd = connect_host(host, port, deadline);
    if (fd < 0)
        return fd;
    int r = write_all(fd, head, (size_t)n, deadline);
    if (r == 0 && body)
        r = write_all(fd, body, body_len, deadline);
    if (r < 0)
        goto close_fd;
    r = read_response(fd, &b, deadline, resp);
close_fd:
    free(b.p);
    close(fd);
    return r;
}

void rp_admin_resp_free(struct rp_admin_resp *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

int rp_json_quote(char *out, size_t cap, size_t len, const char *s)
{
    size_t o = len;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 >= cap)                                                                          \
            goto too_large;                                                                        \
        out[o++] = (c);                                                                            \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            if (o + 7 >= cap)
                goto too_large;
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
    out[o] = '\0';
    return (int)o;
too_large:
    if (cap)
        out[len < cap ? len : cap - 1] = '\0';
    return -RP_ETOOLARGE;
}
