/*
 * libringpush: a client of the ringpush wire protocol (length-prefixed msgpack
 * frames over TCP, PROTOCOL §1-6).
 *
 * Two ways to drive it:
 *  - blocking: rp_call() and the op helpers below send a request and wait (up
 *    to the client's timeout) for the reply with the same id; pushes that
 *    arrive meanwhile are queued and read later with rp_client_push();
 *  - poll-driven: put rp_client_fd() in a poll set (POLLIN, plus POLLOUT while
 *    rp_client_want_write()), call rp_client_feed() when readable and
 *    rp_client_flush() when writable, send with rp_client_send() and take
 *    frames with rp_client_next(). Neither call ever blocks.
 *
 * Received frames are struct rp_msg: an owned copy of the frame with its
 * decoded msgpack_object tree (a map). Strings in the tree are views into the
 * message and live until rp_msg_free().
 *
 * Errors are negative: -errno from the system, -RP_ECLOSED (the server closed
 * the connection), -RP_EFRAME / -RP_ETOOLARGE (the server sent a malformed or
 * oversized frame; the client is then unusable), -ETIMEDOUT (a blocking call
 * ran out of time), -RP_EREQUEST (a field this library checks is invalid, e.g.
 * both or neither of `to` and `group`), -ENOMEM.
 *
 * Request helpers for the messaging, group and friend ops are in ops.h.
 *
 * Which calls block: rp_client_connect (up to RP_DEFAULT_TIMEOUT), rp_call,
 * rp_hello, rp_ping, rp_client_push with a timeout, and every helper of
 * ops.h except rp_ack (each up to the client's timeout). The others never
 * block. Both styles may be mixed on one client, but a blocking call reads
 * frames on its own: a poll loop that also uses it must take what the call
 * queued with rp_client_next afterwards.
 *
 * Ownership: strings and buffers passed in are borrowed for the duration of
 * the call (the request is encoded before it returns). A struct rp_msg
 * handed out is the caller's, to free with rp_msg_free; views into it
 * (rp_obj_get, rp_obj_str) live as long as it does.
 *
 * Thread: a struct rp_client belongs to one thread at a time. Distinct
 * clients are independent. rp_token_mint and the rp_obj_ and rp_msg_
 * accessors touch no client and may be called from any thread.
 */
#ifndef RP_CLIENTS_RINGPUSH_H
#define RP_CLIENTS_RINGPUSH_H

#include "base/err.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define RP_DEFAULT_PORT      7400
#define RP_DEFAULT_MAX_FRAME 65536u
#define RP_MAX_FRAME_CAP     (16u << 20) /* the most an announced max_frame is taken up to */
#define RP_DEFAULT_TIMEOUT   10000       /* ms, for blocking calls */

struct rp_client;

/* One received frame. Owned by the caller once taken from the client. */
struct rp_msg {
    struct rp_msg *next; /* the client's receive queue; NULL once taken */
    msgpack_object obj;  /* the frame: always a MSGPACK_OBJECT_MAP */
    msgpack_zone zone;   /* holds the decoded tree */
    size_t len;          /* payload bytes in data[] */
    char data[];         /* the frame payload; strings in obj point here */
};

/* Error codes of PROTOCOL §3, as carried in an error reply's `code`. */
enum rp_code {
    RP_CODE_OK = 0, /* not an error reply */
    RP_CODE_BAD_FRAME,
    RP_CODE_BAD_REQUEST,
    RP_CODE_UNAUTHORIZED,
    RP_CODE_FORBIDDEN,
    RP_CODE_NOT_FOUND,
    RP_CODE_CONFLICT,
    RP_CODE_TOO_LARGE,
    RP_CODE_RATE_LIMITED,
    RP_CODE_EXPIRED,
    RP_CODE_UNAVAILABLE,
    RP_CODE_INTERNAL,
    RP_CODE_UNKNOWN, /* an error reply with a code this library does not know */
};

/* ---- connection ------------------------------------------------------- */

/*
 * Connects to host:port (name or address; blocking, bounded by
 * RP_DEFAULT_TIMEOUT) and returns a new client in *out. max_frame bounds the
 * frames accepted from the server and sent to it (0: RP_DEFAULT_MAX_FRAME until
 * the hello's reply announces the server's, taken up to RP_MAX_FRAME_CAP;
 * given, it is also the most an announcement can raise it to). Errors:
 * -EINVAL (no such host), -ECONNREFUSED and other -errno, -ETIMEDOUT, -ENOMEM.
 */
int rp_client_connect(struct rp_client **out, const char *host, uint16_t port, uint32_t max_frame);

/*
 * Closes the socket and frees the client and every frame still queued in it
 * (frames already taken stay valid: they are the caller's). Outgoing bytes
 * not yet written are dropped: call rp_client_flush until it returns 0 first
 * when they matter (an ack, say). NULL is fine. Never blocks.
 */
void rp_client_free(struct rp_client *c);

/* The socket (non-blocking). Borrowed: do not close it, do not read from it. */
int rp_client_fd(const struct rp_client *c);

/* Timeout in ms of each later blocking call (default RP_DEFAULT_TIMEOUT; < 0: forever). */
void rp_client_set_timeout(struct rp_client *c, int timeout_ms);

/*
 * True once the server has closed the connection, as seen by the last read
 * (rp_client_feed or a blocking call); queued frames can still be taken.
 */
bool rp_client_closed(const struct rp_client *c);

/* ---- poll-driven use -------------------------------------------------- */

/*
 * Reads whatever the socket holds without blocking and queues the decoded
 * frames. Returns the number of frames queued by this call (0: nothing yet),
 * or -RP_ECLOSED when the server has closed (after queuing what came before),
 * -RP_EFRAME / -RP_ETOOLARGE (malformed input; sticky), -ENOMEM, -errno.
 */
int rp_client_feed(struct rp_client *c);

/*
 * Writes queued outgoing bytes without blocking. Returns the number of bytes
 * still queued (0: all written), or -errno (-EPIPE once the peer is gone).
 */
int rp_client_flush(struct rp_client *c);

/*
 * Keepalive. After an ok hello the client pings once per heartbeat_ms of
 * silence on its side (the server closes connections idle for its
 * idle_timeout); the pongs are consumed internally and never queued (those
 * of the last 8 keepalive pings, however many a long wait sent). Blocking
 * calls do this by themselves; a poll-driven user calls rp_client_tick()
 * before each poll and uses its result as the poll timeout. Returns the ms
 * until the next call is due (INT32_MAX: no keepalive, before hello), or a
 * negative error of rp_client_send.
 */
int rp_client_tick(struct rp_client *c);

/* True while outgoing bytes are queued (poll for POLLOUT then, and call rp_client_flush). */
bool rp_client_want_write(const struct rp_client *c);

/*
 * Takes the oldest queued frame, reply or push, into *out (the caller frees
 * it with rp_msg_free). 0, or -EAGAIN when none is queued.
 */
int rp_client_next(struct rp_client *c, struct rp_msg **out);

/* ---- requests --------------------------------------------------------- */

enum rp_ftype { RP_F_STR, RP_F_BIN, RP_F_UINT, RP_F_BOOL, RP_F_STRS };

/* One request field. Strings are borrowed for the duration of the call. */
struct rp_field {
    const char *key;
    enum rp_ftype type;
    const char *str;         /* RP_F_STR / RP_F_BIN: bytes */
    size_t len;              /* their length; RP_F_STRS: count of strs */
    uint64_t u;              /* RP_F_UINT; RP_F_BOOL: 0 or 1 */
    const char *const *strs; /* RP_F_STRS: NUL-terminated strings */
};

#define RP_FSTR(k, s)                                                                              \
    ((struct rp_field){.key = (k), .type = RP_F_STR, .str = (s), .len = strlen(s)})
#define RP_FBIN(k, p, n) ((struct rp_field){.key = (k), .type = RP_F_BIN, .str = (p), .len = (n)})
#define RP_FUINT(k, v)   ((struct rp_field){.key = (k), .type = RP_F_UINT, .u = (v)})
#define RP_FBOOL(k, v)   ((struct rp_field){.key = (k), .type = RP_F_BOOL, .u = !!(v)})
#define RP_FSTRS(k, v, n)                                                                          \
    ((struct rp_field){.key = (k), .type = RP_F_STRS, .strs = (v), .len = (n)})

/*
 * Queues {"op": op, "id": <new id>, fields...} (no id when id_out is NULL:
 * for `ack`) and writes as much as the socket takes without blocking.
 * *id_out receives the id. 0, -RP_ETOOLARGE (the frame would exceed the
 * client's max_frame), -ENOMEM, -errno from the write. Never blocks: what the
 * socket does not take stays queued for rp_client_flush (or the next
 * blocking call). The reply comes later through rp_client_next.
 */
int rp_client_send(struct rp_client *c, const char *op, const struct rp_field *fields, size_t n,
                   uint32_t *id_out);

/*
 * Sends a request and blocks until its reply arrives (or a fatal error
 * without id). On 0, *reply holds the reply (ok, pong or error; see
 * rp_msg_code); pushes read meanwhile stay queued. Errors: those of
 * rp_client_send, -ETIMEDOUT, -RP_ECLOSED (closed before a reply came).
 */
int rp_call(struct rp_client *c, const char *op, const struct rp_field *fields, size_t n,
            struct rp_msg **reply);

/*
 * Waits for the next push (a frame without id) up to timeout_ms (< 0:
 * forever, 0: only what is already readable). 0 and *out, -ETIMEDOUT,
 * -RP_ECLOSED, or a feed error. Replies to calls not yet waited for stay
 * queued (rp_client_next takes them), as does a reply that arrives after its
 * rp_call timed out.
 */
int rp_client_push(struct rp_client *c, int timeout_ms, struct rp_msg **out);

/* ---- messages --------------------------------------------------------- */

/* Frees a frame taken from the client, and with it every view into it. NULL is fine. */
void rp_msg_free(struct rp_msg *m);

/* The value of key in map m (a view into m), or NULL when absent or m is no map. */
const msgpack_object *rp_obj_get(const msgpack_object *m, const char *key);

/*
 * Typed lookups in a map. rp_obj_str returns a view (not NUL-terminated) and
 * its length, or NULL when absent or not a str. rp_obj_uint returns true and
 * *v for a non-negative integer. rp_obj_bool returns def when absent or not a bool.
 */
const char *rp_obj_str(const msgpack_object *m, const char *key, size_t *len);
bool rp_obj_uint(const msgpack_object *m, const char *key, uint64_t *v);
bool rp_obj_bool(const msgpack_object *m, const char *key, bool def);

/* True when the frame's "op" is a string equal to op. */
bool rp_msg_is(const struct rp_msg *m, const char *op);

/* RP_CODE_OK unless m is an error (reply or fatal push); then its code (RP_CODE_UNKNOWN
 * for a code this library does not know, or none). */
enum rp_code rp_msg_code(const struct rp_msg *m);

/* The wire name of a code ("bad_request", ...); "ok" for RP_CODE_OK. A static string. */
const char *rp_code_name(enum rp_code code);

/*
 * Writes obj as one line of JSON to f (no newline): str as JSON strings, bin
 * as {"$bin":"<hex>"}, ext as {"$ext":type}. Returns 0 or -EIO.
 */
int rp_obj_print_json(FILE *f, const msgpack_object *obj);

/* ---- tokens ----------------------------------------------------------- */

/*
 * Mints an HS256 JWT for user, valid until now + ttl_s, signed with key. On 0
 * *out is a NUL-terminated string the caller frees. -EINVAL (user not a valid
 * user id), -ENOMEM.
 */
int rp_token_mint(const char *user, uint64_t ttl_s, const void *key, size_t keylen, char **out);

/* ---- session (PROTOCOL §4); the other ops are in ops.h ------------------ */

/*
 * Sends hello and waits for the reply (*reply on 0, as rp_call). On an ok
 * reply the client also adopts the announced max_frame (up to its cap, see
 * rp_client_connect), records the shard,
 * and starts its keepalive (rp_client_tick) at the announced heartbeat_ms.
 * token and device are borrowed for the call. Blocking; errors as rp_call.
 * An error reply (unauthorized, conflict: fatal, the server then closes) is a
 * 0 return with that reply: check rp_msg_code.
 */
int rp_hello(struct rp_client *c, const char *token, const char *device, bool resume,
             struct rp_msg **reply);
/* Blocking round trip: 0 on pong; -RP_EREQUEST for any other reply; errors as rp_call. */
int rp_ping(struct rp_client *c);
/* The `shard` field of the last ok hello reply (a server diagnostic), or -1 without one. */
int rp_client_shard(const struct rp_client *c);

#endif
