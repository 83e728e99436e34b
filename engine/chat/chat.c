/*
 * Entry points of the chat layer and the helpers shared by its modules. The
 * runtime calls in here; everything is routed to the home role (session.c,
 * home.c, query.c, friend.c) or the owner role (owner.c, group.c), and the
 * effects leave through struct chat_env.
 */
#include "engine/chat/chat.h"

#include "engine/chat/backend.h"
#include "engine/chat/core.h"
#include "engine/chat/friend.h"
#include "engine/chat/session.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct chat *chat_new(const struct chat_env *env)
{
    struct chat *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->env = *env;
    buf_init(&c->fb);
    buf_init(&c->kb);
    buf_init(&c->vb);
    if (io_init(&c->io) < 0 || xfer_init(&c->xfer, env->nshards) < 0) {
        free(c);
        return NULL;
    }
    home_init(c);
    owner_init(c);
    return c;
}

/* The env of a chat being freed: connections and rings are gone. */
static int gone_send(void *rt, conn_id_t conn, struct rbuf *frame)
{
    return -ENOENT;
}

static void gone_close(void *rt, conn_id_t conn, const char *reason)
{
}

static int gone_xsend(void *rt, unsigned dst, const struct xmsg *m)
{
    return -RP_ECLOSED; /* kept in the outbox, freed with it */
}

static int gone_write(void *rt, struct stg_batch *b, uint64_t tag)
{
    return -RP_ECLOSED; /* the batch stays with the caller */
}

static int gone_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    return -RP_ECLOSED;
}

void chat_free(struct chat *c)
{
    if (!c)
        return;
    /* release what outstanding reads and writes hold (the runtime may stop
     * with storage work in flight) without reaching the runtime */
    c->env.send = gone_send;
    c->env.push = gone_send;
    c->env.close = gone_close;
    c->env.xsend = gone_xsend;
    c->env.write = gone_write;
    c->env.read = gone_read;
    c->env.admin_done = NULL;
    io_abort(c);
    owner_deinit(c);
    home_deinit(c);
    chat_xfer_release(c);
    io_deinit(&c->io);
    buf_deinit(&c->fb);
    buf_deinit(&c->kb);
    buf_deinit(&c->vb);
    free(c);
}

/* ---- helpers ---- */

struct rbuf *chat_frame(struct buf *b)
{
    struct rbuf *f = NULL;
    if (!buf_failed(b) && b->len && b->len <= UINT32_MAX)
        f = rbuf_copy(b->data, (uint32_t)b->len);
    buf_reset(b);
    return f;
}

int chat_push(struct chat *c, conn_id_t conn, struct rbuf *f)
{
    return c->env.push ? c->env.push(c->env.rt, conn, f) : c->env.send(c->env.rt, conn, f);
}

void chat_send(struct chat *c, conn_id_t conn, struct rbuf *f)
{
    if (!f)
        return;
    c->env.send(c->env.rt, conn, f);
    rbuf_unref(f);
}

struct rbuf *chat_err_frame(struct chat *c, bool has_id, uint32_t id, int err, const char *msg)
{
    enum err_code code = code_from_err(err);
    if (!msg && err < 0 && (code == CODE_INTERNAL || code == CODE_UNAVAILABLE))
        msg = err_str(err);
    if (enc_error(&c->fb, has_id, id, code, msg) < 0) {
        buf_reset(&c->fb);
        return NULL;
    }
    return chat_frame(&c->fb);
}

void chat_reply_err(struct chat *c, conn_id_t conn, bool has_id, uint32_t id, int err,
                    const char *msg)
{
    chat_send(c, conn, chat_err_frame(c, has_id, id, err, msg));
}

void chat_reply_ok(struct chat *c, conn_id_t conn, uint32_t id)
{
    if (enc_ok(&c->fb, id) == 0)
        chat_send(c, conn, chat_frame(&c->fb));
    buf_reset(&c->fb);
}

void chat_reply_remote(struct chat *c, unsigned home, conn_id_t conn, struct rbuf *f)
{
    if (!f)
        return;
    struct rpl *r = rpl_new(conn, f, (struct strv){"", 0}, (struct strv){"", 0}, 0);
    if (!r || xfer_send(c, home, XK_REPLY, 0, r) < 0) {
        free(r);
        rbuf_unref(f);
    }
}

void chat_fwd_frame(struct chat *c, const struct fwd *f, struct rbuf *fr)
{
    if (f->admin) {
        /* admin requests are answered with results, never frames (backend.h) */
        if (fr)
            rbuf_unref(fr);
        log_error("chat_admin_frame_reply", "op=%d", (int)f->req.op);
        backend_reply_err(c, f, -EINVAL, "unexpected reply");
        return;
    }
    if (!fr) {
        fr = chat_err_frame(c, f->req.has_id, f->req.id, -ENOMEM, NULL);
        if (!fr)
            return;
    }
    chat_reply_remote(c, f->home, f->conn, fr);
}

void chat_fwd_err(struct chat *c, const struct fwd *f, int err, const char *msg)
{
    if (f->admin) {
        backend_reply_err(c, f, err, msg);
        return;
    }
    struct rbuf *fr = chat_err_frame(c, f->req.has_id, f->req.id, err, msg);
    if (fr)
        chat_reply_remote(c, f->home, f->conn, fr);
}

void chat_fwd_ok(struct chat *c, const struct fwd *f)
{
    if (f->admin) {
        backend_reply_err(c, f, -EINVAL, "unexpected reply");
        return;
    }
    if (enc_ok(&c->fb, f->req.id) == 0)
        chat_reply_remote(c, f->home, f->conn, chat_frame(&c->fb));
    buf_reset(&c->fb);
}

/* ---- entry points ---- */

void chat_on_hello(struct chat *c, conn_id_t conn, struct strv user, struct strv device,
                   bool resume, uint32_t hello_id)
{
    session_hello(c, conn, user, device, resume, hello_id);
}

void chat_on_request(struct chat *c, conn_id_t conn, const struct req *req)
{
    home_on_request(c, conn, req);
}

void chat_on_drained(struct chat *c, conn_id_t conn)
{
    session_on_drained(c, conn);
}

void chat_on_close(struct chat *c, conn_id_t conn)
{
    session_close(c, conn);
}

void chat_on_xmsg(struct chat *c, const struct xmsg *m)
{
    switch (m->kind) {
    case XK_FWD:
        owner_on_fwd(c, m->ptr);
        break;
    case XK_REPLY:
        home_on_reply(c, m->ptr);
        break;
    case XK_DELIVER:
        home_on_deliver(c, m->ptr);
        break;
    case XK_USER_FRAME:
        home_on_user_frame(c, m->ptr);
        break;
    case XK_FRIEND:
        friend_on_peer(c, m->ptr);
        break;
    case XK_ADMIN:
        backend_on_home(c, m->ptr, m->u64);
        break;
    case XK_ADMIN_DONE:
        backend_on_done(c, m->ptr);
        break;
    default:
        log_warn("chat_xmsg_unknown", "kind=%u src=%u", m->kind, m->src);
        xfer_free_payload(m->kind, m->ptr);
        break;
    }
}

void chat_discard_xmsg(struct chat *c, const struct xmsg *m)
{
    (void)c;
    xfer_free_payload(m->kind, m->ptr);
}

void chat_on_storage(struct chat *c, struct stg_done *d)
{
    if (!io_on_storage(c, d)) {
        stg_result_free(d->res);
        d->res = NULL;
    }
}

void chat_on_tick(struct chat *c)
{
    owner_tick(c);
    friend_tick(c);
}

uint64_t chat_next_due(const struct chat *c)
{
    if (!c->home.cursors.n)
        return 0;
    uint64_t due = c->home.cursors_since + c->env.cfg->cursor_delay_ms;
    return due > c->home.cursors_retry ? due : c->home.cursors_retry;
}

void chat_stop(struct chat *c)
{
    c->stopping = true;
}

void chat_flush(struct chat *c)
{
    io_settle(c);
    if (io_can_stage(c))
        owner_stage(c);
    home_stage(c);
    io_flush(c);
    xfer_flush(c);
    owner_dedup_bound(c);
    c->stats.reads_waiting = c->io.nwait;
    c->stats.reads_waited = c->io.waited;
    c->stats.reads_cancelled = c->io.cancelled;
    c->stats.dedup_records = c->owner.ndedup;
    c->stats.cursors_waiting = c->home.cursors.n + c->home.written.n;
}

bool chat_waits_for_room(const struct chat *c, unsigned dst)
{
    return xfer_waits_for_room(c, dst);
}

bool chat_pending(const struct chat *c)
{
    return c->owner.ready_head && io_can_stage(c);
}

bool chat_quiescent(const struct chat *c)
{
    /* a read in flight or a message waiting for room in a ring would give
     * another shard work later: neither is quiet */
    return io_write_idle(c) && io_read_idle(c) && c->xfer.queued == 0 && c->home.cursors.n == 0 &&
           !friend_pending(c);
}

const struct chat_stats *chat_stats_get(const struct chat *c)
{
    return &c->stats;
}
