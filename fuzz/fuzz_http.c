/*
 * Fuzz target for the admin server's request parsing (engine/admin/http.h,
 * route.h). The input is [mode][k-1][k fragment sizes][bytes].
 *
 * Requests (even mode): the bytes are a stream of pipelined HTTP requests, read
 * once whole and once in fragments (cycled, each in its own exact-size
 * allocation, the unused rest of a fragment fed again after
 * http_reader_next). Both reads yield the same requests and end with the same
 * error (or one says too large where the other says malformed). Each request keeps the documented
 * bounds (target, Authorization and body sizes, NUL-terminated copies, body NULL iff empty); it is
 * routed, its key checked, and its body (any request's, not only a POST's) goes through both JSON
 * body parsers. The head seen before the body (http_reader_head) is the request's.
 *
 * Bodies (odd mode): the bytes are one JSON body for route_parse_message and
 * route_parse_backup, so cJSON and the field rules get the whole input.
 *
 * Body parsers: 0 gives checked values (valid ids, exactly one of to/group, a
 * type of 1-16 bytes that is not reserved, a cmid of 1-64 bytes, a body of at
 * most max_body bytes NUL-terminated at body_len; an absolute dir); a failure
 * is one of the documented codes with an explanation.
 */
#include "base/buf.h"
#include "base/err.h"
#include "engine/admin/http.h"
#include "engine/admin/route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY 64u
static const char admin_key[] = "fuzz-admin-key";

static bool id_ok(const char *s)
{
    return route_valid_id(s, strlen(s));
}

static void bodies(const uint8_t *p, size_t n)
{
    /* the body in its own exact-size allocation, so an over-read is caught */
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    struct route_message m;
    const char *why = NULL;
    int r = route_parse_message(copy, n, MAX_BODY, &m, &why);
    if (r == 0) {
        bool to = m.to[0] != 0, group = m.group[0] != 0;
        size_t tl = strlen(m.type);
        if (!id_ok(m.from) || to == group || (to && !id_ok(m.to)) || (group && !id_ok(m.group)))
            abort();
        if (tl < 1 || tl > ROUTE_MAX_TYPE || !strcmp(m.type, "event") ||
            !strcmp(m.type, "recall") || !strcmp(m.type, "recalled"))
            abort();
        if (strlen(m.cmid) < 1 || strlen(m.cmid) > ROUTE_MAX_ID)
            abort();
        if (!m.body || m.body_len > MAX_BODY || m.body[m.body_len] != 0)
            abort();
        route_message_deinit(&m);
    } else if (r == -RP_EREQUEST) {
        if (!why || !*why)
            abort();
    } else if (r != -RP_ETOOLARGE && r != -ENOMEM) {
        abort();
    }

    char dir[ROUTE_MAX_DIR];
    why = NULL;
    r = route_parse_backup(copy, n, dir, &why);
    if (r == 0) {
        size_t dl = strnlen(dir, sizeof(dir));
        if (dl == sizeof(dir) || dl < 1 || dir[0] != '/')
            abort();
    } else if (r != -RP_EREQUEST || !why || !*why) {
        abort();
    }
    free(copy);
}

/* Checks one request, routes it and records it into log. */
static void request(const struct http_req *q, struct buf *log)
{
    if (!q->target || strlen(q->target) != q->target_len || q->target_len > HTTP_MAX_TARGET)
        abort();
    if (q->auth && (strlen(q->auth) != q->auth_len || q->auth_len > HTTP_MAX_AUTH))
        abort();
    if ((q->body == NULL) != (q->body_len == 0) || q->body_len > HTTP_MAX_BODY)
        abort();

    struct route_match m;
    enum route_id id = route_match(q->method, q->target, q->target_len, &m);
    if (id != m.id || id >= ROUTE__COUNT || !route_name(id))
        abort();
    if ((id == ROUTE_USER || id == ROUTE_KICK) &&
        (strlen(m.user) != m.user_len || !route_valid_id(m.user, m.user_len)))
        abort();
    bool ok = route_auth_ok(admin_key, q->auth, q->auth_len);
    if (ok && (!q->auth || strcmp(q->auth + q->auth_len - (sizeof(admin_key) - 1), admin_key)))
        abort(); /* accepted a value that does not end in the key */
    if (route_auth_ok("", q->auth, q->auth_len))
        abort(); /* no key configured: nothing is accepted */
    if (q->body_len)
        bodies(q->body, q->body_len);

    uint8_t flags = (uint8_t)(q->keep_alive | (q->auth ? 2 : 0) | (ok ? 4 : 0));
    buf_put_be32(log, q->method);
    buf_put_u8(log, flags);
    buf_put_u8(log, (uint8_t)id);
    buf_put_be32(log, (uint32_t)q->target_len);
    buf_append(log, q->target, q->target_len);
    buf_put_be32(log, (uint32_t)q->auth_len);
    buf_append(log, q->auth, q->auth_len);
    buf_put_be32(log, (uint32_t)q->body_len);
    buf_append(log, q->body, q->body_len);
}

/* The head of a request whose body has not come (all of it, bounded): its
 * method, target and key, kept in *seen to compare with the whole request. */
static void head_seen(const struct http_reader *r, struct buf *seen)
{
    struct http_req h;
    if (seen->len || http_reader_head(r, &h) != 1)
        return;
    if (h.target_len > HTTP_MAX_TARGET || h.auth_len > HTTP_MAX_AUTH || h.body)
        abort();
    struct route_match m;
    route_match(h.method, h.target, h.target_len, &m);
    route_auth_ok(admin_key, h.auth, h.auth_len);
    buf_put_be32(seen, h.method);
    buf_put_be32(seen, (uint32_t)h.target_len);
    buf_append(seen, h.target, h.target_len);
    buf_put_be32(seen, (uint32_t)h.auth_len);
    buf_append(seen, h.auth, h.auth_len);
}

/* A head seen before the body agrees with the whole request. */
static void head_check(struct buf *seen, const struct http_req *q)
{
    if (!seen->len)
        return;
    struct buf w;
    buf_init(&w);
    buf_put_be32(&w, q->method);
    buf_put_be32(&w, (uint32_t)q->target_len);
    buf_append(&w, q->target, q->target_len);
    buf_put_be32(&w, (uint32_t)q->auth_len);
    buf_append(&w, q->auth, q->auth_len);
    if (w.len != seen->len || memcmp(w.data, seen->data, w.len) != 0)
        abort();
    buf_deinit(&w);
    buf_reset(seen);
}

/* Reads p[0..len) in pieces of the given sizes (sizes NULL: whole); returns the final error. */
static int requests(const uint8_t *sizes, size_t k, const uint8_t *p, size_t len, struct buf *log)
{
    struct http_reader r;
    http_reader_init(&r);
    struct buf seen;
    buf_init(&seen);
    int err = 0;
    size_t off = 0, i = 0;
    while (off < len && !err) {
        size_t n = sizes ? (size_t)sizes[i++ % k] + 1 : len;
        if (n > len - off)
            n = len - off;
        uint8_t *piece = malloc(n);
        memcpy(piece, p + off, n);
        size_t done = 0;
        while (done < n && !err) {
            size_t used = 0;
            struct http_req q;
            int res = http_reader_feed(&r, piece + done, n - done, &used, &q);
            if (used > n - done)
                abort();
            done += used;
            if (res == 1) {
                if (used == 0)
                    abort(); /* a request out of no bytes: the loop would not end */
                head_check(&seen, &q);
                request(&q, log);
                http_reader_next(&r);
                if (http_reader_started(&r))
                    abort();
            } else if (res == 0) {
                if (done != n)
                    abort(); /* more needed, yet bytes were left */
                head_seen(&r, &seen);
            } else if (res == -RP_EREQUEST || res == -RP_ETOOLARGE || res == -ENOMEM) {
                err = res;
            } else {
                abort();
            }
        }
        free(piece);
        off += n;
    }
    buf_deinit(&seen);
    http_reader_deinit(&r);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t k = data[1] % 8 + 1;
    if (size < 2 + k)
        return 0;
    const uint8_t *sizes = data + 2;
    const uint8_t *p = data + 2 + k;
    size_t len = size - 2 - k;
    if (data[0] & 1) {
        bodies(p, len);
        return 0;
    }
    struct buf whole, frag;
    buf_init(&whole);
    buf_init(&frag);
    int ew = requests(NULL, 0, p, len, &whole);
    int ef = requests(sizes, k, p, len, &frag);
    /* A request that is both over a bound and malformed may be refused either
     * way depending on which http-parser reports first: it reports a header
     * value's bytes at the end of each piece, so the bound can be crossed
     * before the bad byte is parsed. Either answer closes the connection. */
    bool either =
        (ew == -RP_ETOOLARGE && ef == -RP_EREQUEST) || (ew == -RP_EREQUEST && ef == -RP_ETOOLARGE);
    if ((ew != ef && !either) || whole.len != frag.len ||
        (whole.len && memcmp(whole.data, frag.data, whole.len) != 0))
        abort();
    buf_deinit(&whole);
    buf_deinit(&frag);
    return 0;
}
