/*
 * The state of one shard's chat layer, shared by its modules (home, session,
 * owner, group, friend, query), and the small helpers every module uses to
 * build and send frames. Not part of the contract with the runtime (chat.h).
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_CORE_H
#define RP_CHAT_CORE_H

#include "engine/chat/chat.h"
#include "engine/chat/home.h"
#include "engine/chat/io.h"
#include "engine/chat/owner.h"
#include "engine/chat/xfer.h"

#include "base/buf.h"
#include "base/rbuf.h"
#include "protocol/enc.h"

struct chat {
    struct chat_env env;
    struct io io;
    struct xfer xfer;
    struct home home;
    struct owner owner;
    struct buf fb; /* frame scratch */
    struct buf kb; /* key scratch */
    struct buf vb; /* value scratch */
    uint64_t gid_counter;
    bool stopping; /* chat_stop was called */
    struct chat_stats stats;
};

/* Adds v to the histogram whose upper bounds are bounds[0..n) (+Inf after). */
static inline void chat_hist_add(uint64_t *hist, const uint32_t *bounds, unsigned n, uint64_t v)
{
    unsigned i = 0;
    while (i < n && v > bounds[i])
        i++;
    hist[i]++;
}

static inline uint64_t chat_now(struct chat *c)
{
    return c->env.now_ms(c->env.rt);
}

/* The frame(s) in b as a new rbuf (one reference); b is reset. NULL on ENOMEM. */
struct rbuf *chat_frame(struct buf *b);

/* Queue f for a local connection and drop the caller's reference. */
void chat_send(struct chat *c, conn_id_t conn, struct rbuf *f);

/* Queue a push (env.push, or env.send without it); the caller keeps its
 * reference. 0 or env.send's errors. */
int chat_push(struct chat *c, conn_id_t conn, struct rbuf *f);

/* An error frame for (has_id, id); NULL on ENOMEM. */
struct rbuf *chat_err_frame(struct chat *c, bool has_id, uint32_t id, int err, const char *msg);

/* Error / plain ok replies to a local connection. */
void chat_reply_err(struct chat *c, conn_id_t conn, bool has_id, uint32_t id, int err,
                    const char *msg);
void chat_reply_ok(struct chat *c, conn_id_t conn, uint32_t id);

/* Send frame f (reference transferred) to connection conn living on shard home. */
void chat_reply_remote(struct chat *c, unsigned home, conn_id_t conn, struct rbuf *f);

/* Reply to a forwarded request: an error, or a plain ok. */
void chat_fwd_err(struct chat *c, const struct fwd *f, int err, const char *msg);
void chat_fwd_ok(struct chat *c, const struct fwd *f);
/* Reply to a forwarded request with frame fr (transferred; NULL counts as ENOMEM). */
void chat_fwd_frame(struct chat *c, const struct fwd *f, struct rbuf *fr);

/* Frees the outbox at shutdown. */
void chat_xfer_release(struct chat *c);

#endif
