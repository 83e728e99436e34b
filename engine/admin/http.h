/*
 * HTTP/1.1 for the admin port, without I/O: an incremental request reader
 * built on http-parser, and the writers of the few responses the admin server
 * sends. Bytes go in as they arrive (one byte at a time is fine); a request
 * comes out once it is complete. What the handlers need is copied out of the
 * input (method, target, the Authorization value, the body), so the caller may
 * reuse its receive buffer at once.
 *
 * Bounds: the request line and headers together at most HTTP_MAX_HEAD bytes,
 * a body at most max_body bytes (HTTP_MAX_BODY unless the caller sets it after
 * init; checked against Content-Length before any of it is read, and while
 * reading a chunked body). Either overflow is
 * -RP_ETOOLARGE (answer 413 and close); anything unparsable is -RP_EREQUEST
 * (answer 400 and close). After an error the reader must be reset.
 *
 * Pipelining: http_reader_feed stops at the end of a request and reports how
 * many bytes it used; the rest belongs to the next request and is fed again
 * after http_reader_next.
 *
 * Thread: a reader belongs to one connection on one thread.
 */
#ifndef RP_ENGINE_ADMIN_HTTP_H
#define RP_ENGINE_ADMIN_HTTP_H

#include "base/buf.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD   8192u
#define HTTP_MAX_BODY   65536u
#define HTTP_MAX_TARGET 2048u
#define HTTP_MAX_AUTH   512u

/* A complete request; views valid until http_reader_next or _deinit. */
struct http_req {
    unsigned method;    /* enum http_method (HTTP_GET, HTTP_POST, ...) */
    const char *target; /* NUL-terminated request target as sent (path and query) */
    size_t target_len;
    const char *auth; /* NUL-terminated Authorization value, or NULL if absent */
    size_t auth_len;
    const uint8_t *body; /* NULL when empty */
    size_t body_len;
    bool keep_alive; /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
};

struct http_reader {
    http_parser parser;
    http_parser_settings settings;
    struct buf target, auth, body, hname;
    size_t max_body;   /* bound of a request's body, bytes */
    size_t head_bytes; /* bytes of the current request before its body */
    bool in_auth;      /* the header whose value is being read is Authorization */
    bool in_expect;    /* ... is Expect */
    char expect[16];   /* the start of the Expect value */
    uint8_t expect_len;
    bool continue_told; /* the caller learned that a 100 is due (http_reader_continue) */
    bool value_started; /* at least one on_header_value since the last field */
    bool auth_seen;
    bool headers_done;
    bool complete;
    bool started; /* some byte of the current request has arrived */
    int err;      /* sticky: -RP_EREQUEST or -RP_ETOOLARGE */
};

void http_reader_init(struct http_reader *r);

/*
 * True once per request when the client sent "Expect: 100-continue", its
 * head has been read and its body has not: send "HTTP/1.1 100 Continue"
 * (RFC 9110 10.1.1), or the client waits before sending the body.
 */
bool http_reader_continue(struct http_reader *r);
void http_reader_deinit(struct http_reader *r);

/*
 * Feed len bytes. Sets *used to how many were consumed (all of them unless a
 * request completed before the end of data). Returns 1 when a request is
 * complete (then fills *req), 0 when more bytes are needed, -RP_EREQUEST
 * (malformed), -RP_ETOOLARGE (head or body over its bound) or -ENOMEM.
 * After 1, call http_reader_next before feeding again.
 */
int http_reader_feed(struct http_reader *r, const uint8_t *data, size_t len, size_t *used,
                     struct http_req *req);

/* Prepare for the next request on the same connection (keep-alive). */
void http_reader_next(struct http_reader *r);

/*
 * Once the head of the current request has been read and while its body is
 * not (http_reader_feed returned 0): 1, and req holds its method, target and
 * Authorization value (not NUL-terminated: use the lengths; no body). 0
 * otherwise. The views are valid until the next feed.
 */
int http_reader_head(const struct http_reader *r, struct http_req *req);

/* True once any byte of a request that has not completed yet has arrived. */
bool http_reader_started(const struct http_reader *r);

/*
 * Append a whole response to out: status line, Content-Type (when body is
 * not NULL), Content-Length, Connection: keep-alive or close, blank line,
 * body. 0 or -ENOMEM.
 */
int http_write_response(struct buf *out, int status, const char *content_type, const void *body,
                        size_t len, bool keep_alive);

/* Append a JSON object body (serialized from cJSON text `json`). 0 or -ENOMEM. */
int http_write_json(struct buf *out, int status, const char *json, bool keep_alive);

/*
 * Append an error response: status with {"code":CODE,"msg":TEXT}, where CODE
 * is the PROTOCOL §3 name for status (http_error_code). 0 or -ENOMEM.
 */
int http_write_error(struct buf *out, int status, const char *msg, bool keep_alive);

/* PROTOCOL error code name for an HTTP status: 400 bad_request, 401
 * unauthorized, 403 forbidden, 404 not_found, 409 conflict, 413 too_large,
 * 429 rate_limited, 503 unavailable, anything else internal. */
const char *http_error_code(int status);

/* Reason phrase of a status ("OK", "Not Found", ...). */
const char *http_reason(int status);

#endif
