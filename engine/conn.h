/*
 * Client connections of one shard: receive (multishot recv into the shard's
 * provided buffers; what the bytes become is engine/input.c), the outbound queue
 * (refcounted frames shared between recipients, sent with one sendmsg in
 * flight at a time), and the closing sequence.
 *
 * Lifecycle. A connection is EDGE from accept until its hello verifies, then
 * either HOME on the same shard or HANDOFF while its socket travels to its
 * home shard (IORING_MSG_SEND_FD), where it is adopted as HOME. Closing marks
 * the connection, lets what is queued go out (bounded in time), shuts the
 * socket down, waits for every operation in flight to complete, closes the
 * direct descriptor and finally frees the slot in the loop's free phase.
 */
#ifndef RP_ENGINE_CONN_H
#define RP_ENGINE_CONN_H

#include "base/buf.h"
#include "base/rbuf.h"
#include "engine/chat/chat.h"
#include "protocol/frame.h"

#include <stdbool.h>
#include <liburing.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct shard;
struct config;

enum conn_state { CONN_FREE, CONN_EDGE, CONN_HANDOFF, CONN_HOME, CONN_CLOSING };

enum {
    CONN_F_RECV = 1u << 0,          /* a multishot recv is armed */
    CONN_F_SEND = 1u << 1,          /* a sendmsg is in flight */
    CONN_F_IN_FLUSH = 1u << 2,      /* on the shard's flush list */
    CONN_F_IN_REARM = 1u << 3,      /* on the shard's re-arm list */
    CONN_F_CHAT = 1u << 4,          /* chat_on_hello was called: chat_on_close is owed */
    CONN_F_SHUT = 1u << 5,          /* the socket was shut down */
    CONN_F_FD_CLOSING = 1u << 6,    /* the direct descriptor is being closed */
    CONN_F_HANDED = 1u << 7,        /* the socket now belongs to another shard */
    CONN_F_PROBED = 1u << 8,        /* the first bytes told TCP frames from WebSocket */
    CONN_F_HELD = 1u << 9,          /* frames are held: session not ready, or paused (conn_hold) */
    CONN_F_DRAIN = 1u << 10,        /* the chat layer waits for the queue to drain */
    CONN_F_IN_PUSH = 1u << 11,      /* on the shard's push list */
    CONN_F_HANDING = 1u << 12,      /* the socket is on its way to another shard: no sends */
    CONN_F_READY_LISTED = 1u << 13, /* its hold is on the shard's ready list */
    CONN_F_RECV_CANCEL = 1u << 14,  /* its recv's cancel is on its way */
};

#define CONN_NONE      UINT32_MAX
#define OUTQ_IOV       64u /* iovecs per sendmsg (a frame takes 1, a WebSocket frame 2) */
#define OUTQ_IOV_SMALL 4u  /* iovecs kept in the queue itself (a send of one or two frames) */
#define PUSH_BUDGET    16u /* sends started from the push list per loop iteration */

/* One queued item: hlen header bytes, then b->data[skip .. b->len). A frame
 * goes to a TCP client whole (4-byte length prefix included); to a WebSocket
 * client its prefix is skipped and a WebSocket header written in front. */
struct oitem {
    struct rbuf *b;
    uint32_t off; /* bytes of the item already sent */
    uint8_t skip;
    uint8_t hlen;
    uint8_t hdr[10];
    bool urgent; /* a reply or a control frame, not a push: bye slow keeps it */
};

static inline uint32_t oitem_len(const struct oitem *it)
{
    return it->hlen + it->b->len - it->skip;
}

/* A WebSocket client: the upgrade request until it is complete, then the
 * framing state (protocol/ws.h). */
struct conn_ws {
    struct shard *sh;
    uint32_t slot;
    bool upgraded;
    struct buf hs;
    struct ws *ws;
};

/* Outbound queue, allocated while a connection has frames to send. */
struct outq {
    uint32_t head, n, cap; /* items[head .. head+n) in a ring of cap */
    uint32_t bytes;        /* unsent bytes queued */
    uint32_t sending;      /* items[head .. head+sending) are in the send in flight */
    uint32_t urgent;       /* items[head .. head+urgent) end with a reply: sent first */
    struct msghdr msg;     /* the sendmsg in flight: borrowed by the kernel until it completes */
    struct iovec *iov;     /* iov_small, or OUTQ_IOV of them once the queue was longer */
    uint32_t iov_cap;
    struct iovec iov_small[OUTQ_IOV_SMALL];
    struct oitem *items;
    struct oitem *items_sent; /* an older items array the send in flight points into (its
                                 WebSocket headers): freed when that send completes */
};

/* A session being handed from its edge shard to its home shard. */
enum handoff_step { HO_WAIT_RECV, HO_SENDING_FD, HO_ADOPT_PENDING };

struct handoff {
    uint32_t next; /* the shard's handoff list, by connection slot */
    uint8_t step;  /* enum handoff_step */
    uint8_t home;  /* the home shard */
    uint32_t hello_id;
    bool resume;
    uint8_t user_len, device_len;
    char user[65];
    char device[33];
    int32_t target_slot;   /* the descriptor's slot in the home's table, once sent */
    uint32_t leftover_len; /* bytes received after the hello, replayed at home */
    uint32_t leftover_cap;
    uint8_t *leftover;   /* raw bytes (TCP) or length-prefixed frames (WebSocket) */
    struct conn_ws *wsx; /* a WebSocket client's framing state, moved along */
};

/* Frames a hello'd connection sent before its session was ready, kept with
 * their length prefixes and replayed in order once it is. */
struct hold {
    uint32_t next; /* the shard's ready list, by connection slot */
    uint32_t len, cap;
    uint8_t *data;
};

struct conn {
    uint32_t gen;
    uint32_t fd; /* direct descriptor slot */
    uint8_t state;
    uint8_t inflight; /* operations whose last completion is outstanding */
    uint16_t flags;
    uint32_t flush_next, push_next, misc_next, dead_next;
    uint32_t tw_prev, tw_next, tw_slot;
    uint32_t born;        /* shard tick of accept or adoption */
    uint32_t last_rx;     /* shard tick of the last frame received */
    uint32_t rate_tokens; /* thousandths of a request */
    uint32_t rate_ms;     /* low 32 bits of the wall clock at the last refill */
    struct frame_dec dec;
    struct outq *oq;
    struct handoff *ho;
    struct conn_ws *wsx;
    struct hold *hold;
};

static inline conn_id_t conn_id(const struct shard *sh, const struct conn *c, uint32_t slot)
{
    (void)sh;
    (void)c;
    return (uint64_t)slot << 32 | c->gen;
}

/* Allocates the slab. 0 or -ENOMEM. */
int conn_table_init(struct shard *sh, uint32_t capacity);
void conn_table_deinit(struct shard *sh);

/* A connection accepted on direct descriptor `fd`; NULL when the table is full. */
struct conn *conn_new(struct shard *sh, uint32_t fd, enum conn_state state);
uint32_t conn_slot(const struct shard *sh, const struct conn *c);
/* The live connection named by id, or NULL. */
struct conn *conn_get(struct shard *sh, conn_id_t id);

/* Arms the multishot recv. */
void conn_arm_recv(struct shard *sh, struct conn *c);

/* Bytes received for c (from a recv or replayed after a handoff). */
void conn_input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len);

/* Queue a frame (takes a reference). 0, -ENOENT (closing) or -RP_EFULL
 * (outbound bound exceeded: the connection is being closed with bye slow). */
int conn_send(struct shard *sh, struct conn *c, struct rbuf *frame);

/* As conn_send, for a push: c's next send may wait its turn on the shard's
 * push list (conn_flush_all), behind replies and other connections' pushes. */
int conn_push(struct shard *sh, struct conn *c, struct rbuf *frame);

/* Queue bytes that go out as they are (an HTTP response, WebSocket control
 * frames): copied. 0 or -ENOMEM. */
int conn_send_raw(struct shard *sh, struct conn *c, const void *p, size_t len);

/* As conn_send_raw, for output the client's input asks for (a WebSocket pong):
 * bounded like frames, `bye slow` and the close past outbound_limit
 * (-RP_EFULL). */
int conn_send_control(struct shard *sh, struct conn *c, const void *p, size_t len);

/* One complete frame received on c (engine/input.c): decode, rate-limit,
 * dispatch. Returns false when c stops reading (closing or handing over). */
bool conn_frame(struct shard *sh, struct conn *c, const uint8_t *frame, uint32_t len);

/* Frees held frames; NULL is accepted. */
void conn_hold_free(struct hold *h);

/* Encode-and-queue helpers for replies that go to one connection. */
void conn_send_error(struct shard *sh, struct conn *c, bool has_id, uint32_t id, int code,
                     const char *msg);

/* Begin closing: `reason` (if any) as a bye push after what is queued. */
void conn_close(struct shard *sh, struct conn *c, const char *reason);

/* One operation of c completed (its final completion was reaped). */
void conn_op_done(struct shard *sh, struct conn *c);

/* Completion handlers. */
void conn_on_recv(struct shard *sh, struct io_uring_cqe *cqe);
void conn_on_send(struct shard *sh, struct io_uring_cqe *cqe);
void conn_on_op(struct shard *sh, struct io_uring_cqe *cqe); /* shutdown, close */

/* Loop phases. conn_flush_all starts a send for every connection with a reply
 * queued, and for the first PUSH_BUDGET connections of the push list; while
 * the push list is not empty the loop must come round again without sleeping. */
void conn_flush_all(struct shard *sh);
void conn_rearm_all(struct shard *sh);
void conn_free_dead(struct shard *sh);
void conn_timers(struct shard *sh);
/* Re-files c in the timing wheel after its state (and so its deadline) changed. */
void conn_timer_reset(struct shard *sh, struct conn *c);

/* Adopt a socket handed over by an edge shard: slot in our table, session. */
void conn_adopt(struct shard *sh, struct handoff *ho);

/* Frees a handoff and everything it carries; NULL is accepted. */
void handoff_free(struct handoff *ho);

/* The chat layer's session for c is ready: replay what was held (from the
 * loop's ready phase). */
void conn_ready(struct shard *sh, struct conn *c);
/* Hold c's frames again, as before its session was ready, until the next
 * conn_ready (the chat layer pauses a session with too many queries in
 * flight). A frame that arrives while held frames wait for their replay goes
 * behind them, so requests run in the order they were sent. */
void conn_hold(struct shard *sh, struct conn *c);
void conn_ready_all(struct shard *sh);

/* Tells the chat layer about the sessions closed, and the congested queues
 * drained, since the last call. */
void conn_chat_closes(struct shard *sh);

/* Is c's outbound queue past half its bound? If so, chat_on_drained follows
 * once it is below a quarter. */
bool conn_congested(struct shard *sh, struct conn *c);

/* Appends a complete frame (prefix + payload) to a handoff's leftover bytes. */
bool hello_buffer_frame(struct shard *sh, struct conn *c, const uint8_t *msg, size_t len);

/* Replays a handoff's leftover bytes on the adopting shard. */
void conn_replay(struct shard *sh, struct conn *c, const uint8_t *data, size_t len);

/* Signs a token with the configured secret and verifies it, once at start-up:
 * the crypto library's lazy initialisation (algorithm providers, about 2 MiB
 * of code paged in) happens then instead of in the first login, and a secret
 * or library that cannot verify is known before any client is refused.
 * 0 or the error of jwt_sign_hs256 / jwt_verify_hs256. */
int hello_selftest(const struct config *cfg, uint64_t now_s);

/* Handoff phase and completion (engine/hello.c). */
void hello_on_frame(struct shard *sh, struct conn *c, const struct req *req);
void hello_handoffs(struct shard *sh);
void hello_on_handoff(struct shard *sh, struct io_uring_cqe *cqe);
bool hello_buffer(struct shard *sh, struct conn *c, const uint8_t *data, size_t len);

#endif
