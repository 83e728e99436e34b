/*
 * Messages between the shards' chat layers (struct xmsg, kinds from
 * XMSG_CHAT_BASE) and their heap payloads, plus the outbox that keeps
 * messages a full ring refused.
 *
 * Every payload is one allocation whose string views point into its own tail,
 * so ownership passes with one pointer and one free(). Frames inside payloads
 * (struct rbuf) carry one reference owned by the payload.
 *
 * The outbox: when env->xsend reports a full ring, the message is queued per
 * destination (order kept: once anything waits for a destination, later
 * messages to it queue behind) and retried on every flush. An answer
 * (XK_REPLY, XK_ADMIN_DONE) also waits for every message queued before it to
 * any destination: a client told `ok` finds the request's deliveries already
 * published to the other shards. Nothing is ever
 * dropped; instead, while the outbox holds more than XFER_SOFT_MAX messages,
 * xfer_congested() is true and new sends are refused with `unavailable`.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_XFER_H
#define RP_CHAT_XFER_H

#include "engine/chat/chat.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

enum xkind {
    XK_FWD = XMSG_CHAT_BASE, /* home -> owner: a request, ptr struct fwd */
    XK_REPLY,                /* owner -> home: ptr struct rpl */
    XK_DELIVER,              /* owner -> home: ptr struct dlv */
    XK_USER_FRAME,           /* any -> home: ptr struct ufr, a frame for all of a user's devices */
    XK_FRIEND,               /* home -> home: ptr struct fwd, the peer's half of a friend op */
    XK_ADMIN,                /* caller -> home: ptr struct fwd, an admin call; u64 enum admin_op */
    XK_ADMIN_DONE,           /* home/owner -> caller: ptr struct admin_done */
    XK__END
};

#define XFER_SOFT_MAX 16384u

/*
 * A request forwarded from the user's home to another shard, with everything
 * copied out of the frame. req's views point into the payload.
 */
struct fwd {
    struct fwd *next;     /* the owner's per-conversation queue */
    conn_id_t conn;       /* 0 for admin requests */
    uint32_t home;        /* the shard to reply to */
    bool admin;           /* an admin request: the answer goes to env->admin_done ... */
    uint32_t admin_shard; /* ... on this shard ... */
    uint64_t admin_tag;   /* ... with this tag */
    struct strv user, dev, conv;
    struct req req;
    uint32_t size; /* bytes allocated for it (fwd_new) */
    /* owner-side processing state */
    int dd_state;  /* 0 none, 1 lookup pending, 2 miss, 3 hit */
    bool dd_stale; /* a record left memory while the lookup ran: a miss reads again */
    uint64_t dd_seq, dd_ts;
    bool not_friends; /* a direct send the home refused: answered so unless it is a retry */
    bool friend_peer; /* a friend op for the peer's side, waiting at the peer's home */
    uint64_t extra;   /* op-specific (e.g. the recall target's ts) */
    void *extra_ptr;
    _Alignas(8) char data[]; /* the users array comes first */
};

/* A copy of req plus the routing fields; NULL on ENOMEM. Free with free(). */
/* Append f to the queue *head .. *tail (linked by next). */
static inline void fwd_queue_push(struct fwd **head, struct fwd **tail, struct fwd *f)
{
    f->next = NULL;
    if (*tail)
        (*tail)->next = f;
    else
        *head = f;
    *tail = f;
}

struct fwd *fwd_new(const struct req *req, struct strv user, struct strv dev, struct strv conv,
                    conn_id_t conn, uint32_t home);

/* A reply frame for a connection of the receiving home; when read_seq is set,
 * the user's read cursor of conv moves to it (sending implies reading). An
 * admin send has no connection: frame NULL, conn 0, only the cursor moves.
 * A retry's (dup) moves it only where the home has the user loaded and the
 * cursor is behind: an older seq must not be written over a newer one in
 * storage that the home does not know. */
struct rpl {
    conn_id_t conn;
    struct rbuf *frame;
    uint64_t read_seq;
    bool retry;
    struct strv user, conv;
    char data[];
};

struct rpl *rpl_new(conn_id_t conn, struct rbuf *frame, struct strv user, struct strv conv,
                    uint64_t read_seq);

/*
 * One durable entry for the members homed on the receiving shard. For a
 * group, `adds` joined with it (added to the online index before pushing) and
 * `dels` left with it (removed after pushing: they get the event that removed
 * them and nothing after). dev is the sending device (not pushed to).
 */
struct dlv_user {
    struct strv user;
    uint64_t joined_seq;
    uint8_t role;
};

struct dlv {
    struct rbuf *frame;
    struct strv conv, from, dev;
    uint64_t seq, ts;
    uint32_t nadds, ndels;
    struct dlv_user *adds, *dels;
    bool dismissed;
    _Alignas(8) char data[]; /* the users arrays come first */
};

/* A frame for every device of `user` on its home (read and friend pushes). */
struct ufr {
    struct rbuf *frame;
    struct strv user;
    struct strv except_dev; /* not sent to this device (empty: none) */
    char data[];
};

struct ufr *ufr_new(struct rbuf *frame, struct strv user, struct strv except_dev);

struct xfer_item;
struct xfer {
    struct xfer_item **head, **tail; /* per destination shard */
    uint32_t queued;
    uint64_t stamp; /* order of the items queued, across destinations */
};

int xfer_init(struct xfer *x, unsigned nshards);
void xfer_deinit(struct xfer *x);

/*
 * Send (kind, u64, ptr) to shard dst, or queue it when the ring is full.
 * ptr is transferred either way. Returns 0 or -ENOMEM (then the caller still
 * owns ptr).
 */
int xfer_send(struct chat *c, unsigned dst, uint16_t kind, uint64_t u64, void *ptr);

/* Retry queued messages (each flush). */
void xfer_flush(struct chat *c);

/* True while the outbox is over its soft bound: refuse new sends. */
bool xfer_congested(const struct chat *c);

/* True when a message for shard dst waits in the outbox and room in the ring
 * to dst is all it needs (it is not an answer held behind messages queued
 * for other shards before it). */
bool xfer_waits_for_room(const struct chat *c, unsigned dst);

/* Home shard of a user, owner shard of a conversation. */
unsigned xfer_home(const struct chat *c, struct strv user);
unsigned xfer_owner(const struct chat *c, struct strv conv);

/* Free a payload of the given kind that will not be delivered (shutdown). */
void xfer_free_payload(uint16_t kind, void *ptr);

#endif
