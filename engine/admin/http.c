/*
 * The admin HTTP reader and response writers (see http.h).
 *
 * http-parser drives the reading; its callbacks only copy what the handlers
 * need and enforce the bounds. Two things it does not do for us:
 *  - bounding the head: its own limit is process-global (80 KiB), so the
 *    reader feeds at most HTTP_MAX_HEAD + 1 bytes until the headers are done
 *    and fails when that much arrived without their end;
 *  - stopping between pipelined requests: on_message_complete pauses the
 *    parser, which makes http_parser_execute return right after the request.
 */
#include "engine/admin/http.h"

#include "base/err.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static struct http_reader *reader_of(http_parser *p)
{
    return p->data;
}

/* Record the first error and stop the parser where it is. */
static int fail(http_parser *p, int err)
{
    struct http_reader *r = reader_of(p);
    if (!r->err)
        r->err = err;
    http_parser_pause(p, 1);
    return 0;
}

static int append_bounded(http_parser *p, struct buf *b, const char *at, size_t len, size_t max)
{
    if (b->len + len > max)
        return fail(p, -RP_ETOOLARGE);
    if (buf_append(b, at, len))
        return fail(p, -ENOMEM);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    reader_of(p)->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    return append_bounded(p, &reader_of(p)->target, at, len, HTTP_MAX_TARGET);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_reader *r = reader_of(p);
    if (r->headers_done)
        return 0; /* a chunked body's trailers: nothing in them counts */
    if (r->value_started) {
        r->value_started = false;
        r->in_auth = r->in_expect = false;
        buf_reset(&r->hname);
    }
    /* Only the name "authorization" matters; longer names are cut, not kept. */
    size_t room = 32 - r->hname.len;
    if (len > room)
        len = room;
    if (len && buf_append(&r->hname, at, len))
        return fail(p, -ENOMEM);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_reader *r = reader_of(p);
    /* http-parser lets a NUL through in a value (RFC 7230 allows none): the
     * copies handed out are NUL-terminated strings, so refuse it. */
    if (memchr(at, 0, len))
        return fail(p, -RP_EREQUEST);
    if (r->headers_done)
        return 0;
    if (!r->value_started) {
        r->value_started = true;
        r->in_expect =
            r->hname.len == 6 && strncasecmp((const char *)r->hname.data, "expect", 6) == 0;
        r->in_auth = r->hname.len == 13 &&
                     strncasecmp((const char *)r->hname.data, "authorization", 13) == 0;
        if (r->in_auth) {
            /* Two Authorization headers: which one counts would be a guess. */
            if (r->auth_seen)
                return fail(p, -RP_EREQUEST);
            r->auth_seen = true;
        }
    }
    if (r->in_expect) {
        size_t room = sizeof(r->expect) - r->expect_len;
        size_t n = len < room ? len : room;
        memcpy(r->expect + r->expect_len, at, n);
        r->expect_len = (uint8_t)(r->expect_len + n);
    }
    if (!r->in_auth)
        return 0;
    return append_bounded(p, &r->auth, at, len, HTTP_MAX_AUTH);
}

static int on_headers_complete(http_parser *p)
{
    struct http_reader *r = reader_of(p);
    r->headers_done = true;
    if (p->upgrade) /* no protocol switch (nor CONNECT) on the admin port */
        return fail(p, -RP_EREQUEST);
    /* Refuse a declared oversized body before reading any of it. */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body)
        return fail(p, -RP_ETOOLARGE);
    /* Pause so that the reader learns exactly where the head ended. */
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_reader *r = reader_of(p);
    return append_bounded(p, &r->body, at, len, r->max_body);
}

static int on_message_complete(http_parser *p)
{
    struct http_reader *r = reader_of(p);
    r->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

void http_reader_init(struct http_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->max_body = HTTP_MAX_BODY;
    buf_init(&r->target);
    buf_init(&r->auth);
    buf_init(&r->body);
    buf_init(&r->hname);
    http_parser_settings_init(&r->settings);
    r->settings.on_message_begin = on_message_begin;
    r->settings.on_url = on_url;
    r->settings.on_header_field = on_header_field;
    r->settings.on_header_value = on_header_value;
    r->settings.on_headers_complete = on_headers_complete;
    r->settings.on_body = on_body;
    r->settings.on_message_complete = on_message_complete;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

void http_reader_deinit(struct http_reader *r)
{
    buf_deinit(&r->target);
    buf_deinit(&r->auth);
    buf_deinit(&r->body);
    buf_deinit(&r->hname);
}

bool http_reader_continue(struct http_reader *r)
{
    if (r->continue_told || !r->headers_done || r->complete || r->err || r->expect_len != 12 ||
        strncasecmp(r->expect, "100-continue", 12) != 0)
        return false;
    r->continue_told = true;
    return true;
}

void http_reader_next(struct http_reader *r)
{
    buf_reset(&r->target);
    buf_reset(&r->auth);
    buf_reset(&r->body);
    buf_reset(&r->hname);
    r->head_bytes = 0;
    r->in_auth = r->in_expect = r->value_started = r->auth_seen = false;
    r->headers_done = r->complete = r->started = r->continue_told = false;
    r->expect_len = 0;
    r->err = 0;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

bool http_reader_started(const struct http_reader *r)
{
    return r->started && !r->complete;
}

/* NUL-terminate b without counting the NUL; the views handed out rely on it. */
static int terminate(struct buf *b)
{
    if (buf_append(b, "", 1))
        return -ENOMEM;
    b->len--;
    return 0;
}

/* The head's fields into req (no body): method, target, the Authorization
 * value without the white space around it (RFC 9110 5.5), keep-alive. */
static void head_fields(const struct http_reader *r, struct http_req *req)
{
    memset(req, 0, sizeof(*req));
    req->method = r->parser.method;
    req->target = r->target.data ? (const char *)r->target.data : "";
    req->target_len = r->target.len;
    if (r->auth_seen && r->auth.data) {
        const char *v = (const char *)r->auth.data;
        size_t n = r->auth.len;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        while (n && (*v == ' ' || *v == '\t'))
            v++, n--;
        req->auth = v;
        req->auth_len = n;
    }
    req->keep_alive = http_should_keep_alive(&r->parser) != 0;
}

int http_reader_head(const struct http_reader *r, struct http_req *req)
{
    if (!r->headers_done || r->complete || r->err)
        return 0;
    head_fields(r, req);
    return 1;
}

static int finish(struct http_reader *r, struct http_req *req)
{
    if (terminate(&r->target) || terminate(&r->auth))
        return r->err = -ENOMEM;
    head_fields(r, req);
    if (req->auth)
        r->auth.data[req->auth - (const char *)r->auth.data + req->auth_len] = '\0'; /* a string */
    if (r->body.len) {
        req->body = r->body.data;
        req->body_len = r->body.len;
    }
    return 1;
}

int http_reader_feed(struct http_reader *r, const uint8_t *data, size_t len, size_t *used,
                     struct http_req *req)
{
    size_t off = 0;
    *used = 0;
    if (r->err)
        return r->err;
    if (r->complete)
        return finish(r, req);
    while (off < len) {
        size_t n = len - off;
        if (!r->headers_done && n > HTTP_MAX_HEAD + 1 - r->head_bytes)
            n = HTTP_MAX_HEAD + 1 - r->head_bytes;
        bool head = !r->headers_done;
        size_t got = http_parser_execute(&r->parser, &r->settings, (const char *)data + off, n);
        if (head)
            r->head_bytes += got;
        off += got;
        *used = off;
        if (r->err)
            return r->err;
        /* Paused at the end of the head, the parser has not consumed the
         * head's final LF yet: it is fed again with what follows. */
        if (head && r->headers_done && r->head_bytes + 1 > HTTP_MAX_HEAD)
            return r->err = -RP_ETOOLARGE;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&r->parser, 0);
            if (r->complete)
                return finish(r, req);
            continue;
        }
        if (e != HPE_OK || r->parser.upgrade)
            return r->err = -RP_EREQUEST;
        if (!r->headers_done && r->head_bytes > HTTP_MAX_HEAD)
            return r->err = -RP_ETOOLARGE;
        if (got == 0 && n > 0) /* no progress without an error: refuse rather than spin */
            return r->err = -RP_EREQUEST;
    }
    return 0;
}

/* ---- responses ---- */

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

const char *http_error_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 429:
        return "rate_limited";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

int http_write_response(struct buf *out, int status, const char *content_type, const void *body,
                        size_t len, bool keep_alive)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "%s%s%s"
                     "%s"
                     "Content-Length: %zu\r\n"
                     "Connection: %s\r\n\r\n",
                     status, http_reason(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     status == 401 ? "WWW-Authenticate: Bearer\r\n" : "", body ? len : 0,
                     keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -ENOMEM;
    if (buf_append(out, head, (size_t)n))
        return -ENOMEM;
    if (body && len && buf_append(out, body, len))
        return -ENOMEM;
    return 0;
}

int http_write_json(struct buf *out, int status, const char *json, bool keep_alive)
{
    return http_write_response(out, status, "application/json", json, strlen(json), keep_alive);
}

int http_write_error(struct buf *out, int status, const char *msg, bool keep_alive)
{
    int r = -ENOMEM;
    char *text = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "code", http_error_code(status)) ||
        !cJSON_AddStringToObject(o, "msg", msg))
        goto free_obj;
    text = cJSON_PrintUnformatted(o);
    if (!text)
        goto free_obj;
    r = http_write_json(out, status, text, keep_alive);
    cJSON_free(text);
free_obj:
    cJSON_Delete(o);
    return r;
}
