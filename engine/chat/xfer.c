/*
 * Payload constructors and the cross-shard outbox. A payload is laid out as
 * the struct followed by the bytes its views point at; copy_sv() appends one
 * view's bytes and repoints it.
 */
#include "engine/chat/xfer.h"

#include "engine/chat/core.h"

#include "base/err.h"
#include "base/hash.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct xfer_item {
    struct xfer_item *next;
    uint64_t stamp;
    struct xmsg m;
};

static void copy_sv(char **cur, struct strv *s)
{
    if (s->len)
        memcpy(*cur, s->p, s->len);
    s->p = *cur;
    *cur += s->len;
}

struct fwd *fwd_new(const struct req *req, struct strv user, struct strv dev, struct strv conv,
                    conn_id_t conn, uint32_t home)
{
    static const size_t fields[] = {offsetof(struct req, token),     offsetof(struct req, device),
                                    offsetof(struct req, to),        offsetof(struct req, group),
                                    offsetof(struct req, cmid),      offsetof(struct req, type),
                                    offsetof(struct req, conv),      offsetof(struct req, name),
                                    offsetof(struct req, notice),    offsetof(struct req, user),
                                    offsetof(struct req, nick),      offsetof(struct req, remark),
                                    offsetof(struct req, note),      offsetof(struct req, body),
                                    offsetof(struct req, after_user)};
    size_t nf = sizeof(fields) / sizeof(fields[0]);
    size_t n = user.len + dev.len + conv.len + req->nusers * sizeof(struct strv);
    for (size_t i = 0; i < nf; i++)
        n += ((const struct strv *)((const char *)req + (size_t)fields[i]))->len;
    for (uint32_t i = 0; i < req->nusers; i++)
        n += req->users[i].len;
    struct fwd *f = n <= UINT32_MAX - sizeof(*f) ? calloc(1, sizeof(*f) + n) : NULL;
    if (!f)
        return NULL;
    f->size = (uint32_t)(sizeof(*f) + n);
    f->conn = conn;
    f->home = home;
    f->req = *req;
    f->user = user;
    f->dev = dev;
    f->conv = conv;
    /* the users array first: it needs strv alignment */
    char *cur = f->data;
    if (req->nusers) {
        f->req.users = (struct strv *)(void *)cur;
        cur += req->nusers * sizeof(struct strv);
        for (uint32_t i = 0; i < req->nusers; i++) {
            f->req.users[i] = req->users[i];
            copy_sv(&cur, &f->req.users[i]);
        }
    } else {
        f->req.users = NULL;
    }
    copy_sv(&cur, &f->user);
    copy_sv(&cur, &f->dev);
    copy_sv(&cur, &f->conv);
    for (size_t i = 0; i < nf; i++)
        copy_sv(&cur, (struct strv *)((char *)&f->req + (size_t)fields[i]));
    return f;
}

struct rpl *rpl_new(conn_id_t conn, struct rbuf *frame, struct strv user, struct strv conv,
                    uint64_t read_seq)
{
    struct rpl *r = calloc(1, sizeof(*r) + user.len + conv.len);
    if (!r)
        return NULL;
    r->conn = conn;
    r->frame = frame;
    r->read_seq = read_seq;
    r->user = user;
    r->conv = conv;
    char *cur = r->data;
    copy_sv(&cur, &r->user);
    copy_sv(&cur, &r->conv);
    return r;
}

struct ufr *ufr_new(struct rbuf *frame, struct strv user, struct strv except_dev)
{
    struct ufr *u = calloc(1, sizeof(*u) + user.len + except_dev.len);
    if (!u)
        return NULL;
    u->frame = frame;
    u->user = user;
    u->except_dev = except_dev;
    char *cur = u->data;
    copy_sv(&cur, &u->user);
    copy_sv(&cur, &u->except_dev);
    return u;
}

void xfer_free_payload(uint16_t kind, void *ptr)
{
    if (!ptr)
        return;
    switch (kind) {
    case XK_REPLY:
        if (((struct rpl *)ptr)->frame)
            rbuf_unref(((struct rpl *)ptr)->frame);
        break;
    case XK_DELIVER:
        if (((struct dlv *)ptr)->frame)
            rbuf_unref(((struct dlv *)ptr)->frame);
        break;
    case XK_USER_FRAME:
        if (((struct ufr *)ptr)->frame)
            rbuf_unref(((struct ufr *)ptr)->frame);
        break;
    default:
        break;
    }
    free(ptr);
}

int xfer_init(struct xfer *x, unsigned nshards)
{
    x->head = calloc(nshards ? nshards : 1, sizeof(*x->head));
    x->tail = calloc(nshards ? nshards : 1, sizeof(*x->tail));
    x->queued = 0;
    if (!x->head || !x->tail) {
        free(x->head);
        free(x->tail);
        return -ENOMEM;
    }
    return 0;
}

void xfer_deinit(struct xfer *x)
{
    (void)x;
}

static void outbox_free(struct xfer *x, unsigned nshards)
{
    for (unsigned d = 0; d < nshards; d++) {
        struct xfer_item *it = x->head[d];
        while (it) {
            struct xfer_item *next = it->next;
            xfer_free_payload(it->m.kind, it->m.ptr);
            free(it);
            it = next;
        }
    }
    free(x->head);
    free(x->tail);
    x->head = x->tail = NULL;
}

void chat_xfer_release(struct chat *c)
{
    outbox_free(&c->xfer, c->env.nshards);
}

/* An answer (a reply to a client, or to an admin call) tells that what the
 * request changed is done: it goes out only after every message queued
 * before it, to any shard, so a request the client's peer sends once told of
 * the ok finds the deliveries already published to its home
 * (docs/protocol.md 4.7). Other messages go out per destination, in order. */
static bool is_answer(uint16_t kind)
{
    return kind == XK_REPLY || kind == XK_ADMIN_DONE;
}

static bool answer_blocked(const struct xfer *x, unsigned nshards, unsigned dst, uint64_t stamp)
{
    for (unsigned d = 0; d < nshards; d++)
        if (d != dst && x->head[d] && x->head[d]->stamp < stamp)
            return true;
    return false;
}

int xfer_send(struct chat *c, unsigned dst, uint16_t kind, uint64_t u64, void *ptr)
{
    struct xfer *x = &c->xfer;
    struct xmsg m = {.kind = kind, .src = (uint16_t)c->env.shard, .u64 = u64, .ptr = ptr};
    if (!x->head[dst] && (!is_answer(kind) || !x->queued) && c->env.xsend(c->env.rt, dst, &m) == 0)
        return 0;
    struct xfer_item *it = malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->next = NULL;
    it->stamp = ++x->stamp;
    it->m = m;
    if (x->tail[dst])
        x->tail[dst]->next = it;
    else
        x->head[dst] = it;
    x->tail[dst] = it;
    x->queued++;
    return 0;
}

void xfer_flush(struct chat *c)
{
    struct xfer *x = &c->xfer;
    bool progress = true;
    while (x->queued && progress) {
        progress = false;
        for (unsigned d = 0; d < c->env.nshards; d++) {
            while (x->head[d]) {
                struct xfer_item *it = x->head[d];
                if (is_answer(it->m.kind) && answer_blocked(x, c->env.nshards, d, it->stamp))
                    break;
                if (c->env.xsend(c->env.rt, d, &it->m) < 0)
                    break;
                x->head[d] = it->next;
                if (!x->head[d])
                    x->tail[d] = NULL;
                x->queued--;
                free(it);
                progress = true;
            }
        }
    }
}

bool xfer_waits_for_room(const struct chat *c, unsigned dst)
{
    const struct xfer *x = &c->xfer;
    const struct xfer_item *it = dst < c->env.nshards ? x->head[dst] : NULL;
    return it && !(is_answer(it->m.kind) && answer_blocked(x, c->env.nshards, dst, it->stamp));
}

bool xfer_congested(const struct chat *c)
{
    return c->xfer.queued > XFER_SOFT_MAX;
}

unsigned xfer_home(const struct chat *c, struct strv user)
{
    return (unsigned)(hash_bytes(user.p, user.len) % c->env.nshards);
}

unsigned xfer_owner(const struct chat *c, struct strv conv)
{
    return (unsigned)(hash_bytes(conv.p, conv.len) % c->env.nshards);
}
