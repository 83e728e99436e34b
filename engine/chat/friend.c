/*
 * Friend ops. State per side: FRIEND_ASKED (this user asked the peer),
 * FRIEND_ASKING (the peer asked this user), FRIEND_YES. A request to a peer
 * who has already asked this user is an accept.
 */
#include "engine/chat/friend.h"

#include "engine/chat/core.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A friend row in a batch. Nothing of it is visible before it is durable:
 * then it is applied to the user's loaded state and announced (for the
 * caller's own side: the `ok`, the caller's push and the op forwarded to the
 * peer's home; for the peer's side: the peer's push). c->home.friend_gen
 * holds, per row key, the generation of the last row staged for it, so that a
 * row whose write failed is retried (the peer's side) only while no newer row
 * for the same key has been staged.
 */
struct frow {
    struct fwd *f; /* the op: f->user acted on f->req.user (f->extra: its time) */
    bool own;      /* the caller's side; else the peer's */
    uint8_t state;
    uint64_t gen;
    struct frow *next; /* the retry list */
};

static struct strv row_user(const struct frow *w)
{
    return w->own ? w->f->user : w->f->req.user;
}

static struct strv row_peer(const struct frow *w)
{
    return w->own ? w->f->req.user : w->f->user;
}

static struct strv row_note(const struct frow *w)
{
    bool asked = w->state == FRIEND_ASKED || w->state == FRIEND_ASKING;
    return asked ? w->f->req.note : (struct strv){"", 0};
}

/* Update a loaded user's friend of peer to state (FRIEND_NONE removes). */
static void mem_apply(struct chat *c, struct strv user, struct strv peer, uint8_t state,
                      uint64_t ts, struct strv note)
{
    struct user *u = home_user(c, user);
    if (!u)
        return;
    struct ufriend *f = map_get(&u->friends, peer.p, peer.len);
    if (state == FRIEND_NONE) {
        if (f) {
            map_del(&u->friends, peer.p, peer.len);
            free(f->note);
            free(f);
        }
        return;
    }
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f || !map_put(&u->friends, peer.p, peer.len, f)) {
            free(f);
            log_warn("chat_friend_oom", "user=%.*s", (int)user.len, user.p);
            return;
        }
    }
    free(f->note);
    f->note = note.len ? strndup(note.p, note.len) : NULL;
    f->state = state;
    f->ts = ts;
}

/* The row's key into c->kb; 0 or -ENOMEM. */
static int row_key(struct chat *c, const struct frow *w)
{
    struct strv user = row_user(w), peer = row_peer(w);
    return stg_key_friend(&c->kb, user.p, user.len, peer.p, peer.len);
}

/* True when w is the last row staged for its key (and forget the key then). */
static bool row_latest(struct chat *c, const struct frow *w, bool forget)
{
    if (row_key(c, w) < 0)
        return false;
    struct map_node *n = map_find(&c->home.friend_gen, c->kb.data, (uint32_t)c->kb.len);
    if (!n || map_as_u64(n->val) != w->gen)
        return false;
    if (forget)
        map_del(&c->home.friend_gen, c->kb.data, (uint32_t)c->kb.len);
    return true;
}

static void row_free(struct frow *w)
{
    free(w->f);
    free(w);
}

static void row_done(struct chat *c, void *ctx, int err);

/*
 * Stage w's row and register its completion. On error the batch may hold the
 * put (the caller poisons it) and w is still the caller's.
 */
static int row_stage(struct chat *c, struct frow *w)
{
    struct stg_batch *b = io_batch(c);
    int rc = b ? row_key(c, w) : -ENOMEM;
    if (rc == 0) {
        /* first, so that a row that could not be staged is still the latest */
        w->gen = ++c->home.friend_gen_last;
        if (!map_put(&c->home.friend_gen, c->kb.data, (uint32_t)c->kb.len, map_u64(w->gen)))
            rc = -ENOMEM;
    }
    if (rc == 0 && w->state == FRIEND_NONE) {
        rc = stg_batch_del(b, STG_CF_FRIEND, c->kb.data, c->kb.len);
    } else if (rc == 0) {
        struct friend_rec fr = {.state = w->state, .ts = w->f->extra, .note = row_note(w)};
        buf_reset(&c->vb);
        rc = val_friend_encode(&c->vb, &fr);
        if (rc == 0)
            rc = stg_batch_put(b, STG_CF_FRIEND, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    }
    if (rc == 0)
        rc = io_on_commit(c, row_done, w);
    return rc;
}

static void push(struct chat *c, struct strv user, const char *event, struct strv who,
                 struct strv note, bool has_note)
{
    struct user *u = home_user(c, user);
    if (!u)
        return;
    bool req = strcmp(event, "request") == 0;
    if (enc_friend_push(&c->fb, event, strv_c(req ? "from" : "user"), who, note, has_note) == 0) {
        struct rbuf *f = chat_frame(&c->fb);
        if (f) {
            home_push_user(c, u, (struct strv){"", 0}, f);
            rbuf_unref(f);
        }
    }
    buf_reset(&c->fb);
}

/* w is durable: apply and announce it. */
static void row_announce(struct chat *c, struct frow *w)
{
    struct fwd *f = w->f;
    struct strv user = row_user(w), peer = row_peer(w);
    mem_apply(c, user, peer, w->state, f->extra, row_note(w));
    if (w->own) {
        chat_reply_ok(c, f->conn, f->req.id);
        if (w->state == FRIEND_YES)
            push(c, user, "added", peer, (struct strv){0}, false);
        else if (w->state == FRIEND_NONE)
            push(c, user, "removed", peer, (struct strv){0}, false);
        /* the peer's side follows at the peer's home */
        if (xfer_send(c, xfer_home(c, peer), XK_FRIEND, 0, f) == 0)
            w->f = NULL;
        return;
    }
    if (w->state == FRIEND_ASKING)
        push(c, user, "request", peer, f->req.note, true);
    else if (w->state == FRIEND_YES)
        push(c, user, "added", peer, (struct strv){0}, false);
    else
        push(c, user, "removed", peer, (struct strv){0}, false);
}

static void row_done(struct chat *c, void *ctx, int err)
{
    struct frow *w = ctx;
    if (err == 0) {
        row_latest(c, w, true);
        row_announce(c, w);
    } else if (w->own) {
        /* the caller is told; nothing was applied or forwarded */
        row_latest(c, w, true);
        chat_reply_err(c, w->f->conn, true, w->f->req.id, err, NULL);
    } else if (err != -RP_ECLOSED && row_latest(c, w, false)) {
        /* the caller's side is durable: the peer's is written again at the
         * next tick, unless a newer row for it comes first */
        w->next = c->home.friend_retry;
        c->home.friend_retry = w;
        return;
    } else {
        row_latest(c, w, true);
    }
    row_free(w);
}

static void list(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    uint32_t nf = 0, nr = 0;
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &u->friends);
    while ((n = map_next(&it))) {
        struct ufriend *f = n->val;
        nf += f->state == FRIEND_YES;
        nr += f->state == FRIEND_ASKING;
    }
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, r->id, 2);
    for (int pass = 0; pass < 2; pass++) {
        enc_pack_cstr(&pk, pass ? "requests" : "friends");
        msgpack_pack_array(&pk, pass ? nr : nf);
        map_iter_init(&it, &u->friends);
        while ((n = map_next(&it))) {
            struct ufriend *f = n->val;
            if (f->state != (pass ? FRIEND_ASKING : FRIEND_YES))
                continue;
            msgpack_pack_map(&pk, pass ? 3 : 2);
            enc_pack_cstr(&pk, pass ? "from" : "user");
            enc_pack_strv(&pk, (struct strv){n->key, n->klen});
            if (pass) {
                enc_pack_cstr(&pk, "note");
                enc_pack_cstr(&pk, f->note ? f->note : "");
            }
            enc_pack_cstr(&pk, pass ? "ts" : "since");
            msgpack_pack_uint64(&pk, f->ts);
        }
    }
    if (enc_end(&c->fb, start) == 0 && c->fb.len - start <= c->env.cfg->max_frame + 4u)
        chat_send(c, s->conn, chat_frame(&c->fb));
    else
        chat_reply_err(c, s->conn, true, r->id, -RP_ETOOLARGE, "list too long");
    buf_reset(&c->fb);
}

void friend_on_request(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    struct strv me = {u->id, u->idlen}, peer = r->user;
    if (r->op == OP_FRIEND_LIST) {
        list(c, s, r);
        return;
    }
    if (strv_eq(me, peer)) {
        chat_reply_err(c, s->conn, true, r->id, -RP_EREQUEST, "that is you");
        return;
    }
    struct ufriend *f = map_get(&u->friends, peer.p, peer.len);
    uint8_t cur = f ? f->state : FRIEND_NONE;
    struct req op = *r;
    uint64_t now = chat_now(c);
    uint8_t mine;
    if (r->op == OP_FRIEND_REQUEST && cur == FRIEND_ASKING)
        op.op = OP_FRIEND_ACCEPT; /* they asked first: this is a yes */
    switch (op.op) {
    case OP_FRIEND_REQUEST:
        if (cur == FRIEND_YES) {
            chat_reply_err(c, s->conn, true, r->id, -EEXIST, "already friends");
            return;
        }
        mine = FRIEND_ASKED;
        break;
    case OP_FRIEND_ACCEPT:
        if (cur == FRIEND_YES) {
            chat_reply_ok(c, s->conn, r->id);
            return;
        }
        if (cur != FRIEND_ASKING) {
            chat_reply_err(c, s->conn, true, r->id, -ENOENT, "no request from that user");
            return;
        }
        mine = FRIEND_YES;
        break;
    default: /* remove */
        if (cur == FRIEND_NONE) {
            chat_reply_err(c, s->conn, true, r->id, -ENOENT, "not a friend");
            return;
        }
        mine = FRIEND_NONE;
        break;
    }
    struct frow *w = calloc(1, sizeof(*w));
    struct fwd *pf = fwd_new(&op, me, (struct strv){s->dev, s->devlen}, (struct strv){"", 0},
                             s->conn, c->env.shard);
    int rc = w && pf ? 0 : -ENOMEM;
    if (rc == 0) {
        pf->extra = now;
        w->f = pf;
        w->own = true;
        w->state = mine;
        rc = row_stage(c, w);
        if (rc < 0)
            io_poison(c);
    }
    if (rc < 0) {
        free(w);
        free(pf);
        chat_reply_err(c, s->conn, true, r->id, rc, NULL);
    }
    /* staged, w belongs to its commit callback (row_done) */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
}

void friend_on_peer(struct chat *c, struct fwd *f)
{
    struct frow *w = calloc(1, sizeof(*w));
    if (!w) {
        log_warn("chat_friend_oom", "user=%.*s", (int)f->req.user.len, f->req.user.p);
        free(f);
        return;
    }
    w->f = f;
    w->state = f->req.op == OP_FRIEND_REQUEST  ? FRIEND_ASKING
               : f->req.op == OP_FRIEND_ACCEPT ? FRIEND_YES
                                               : FRIEND_NONE;
    if (row_stage(c, w) < 0) {
        io_poison(c);
        /* retried at the next tick like a failed write */
        w->next = c->home.friend_retry;
        c->home.friend_retry = w;
    }
    /* w belongs to its commit callback (row_done) or the retry list */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
}

void friend_tick(struct chat *c)
{
    struct frow *w = c->home.friend_retry;
    c->home.friend_retry = NULL;
    while (w) {
        struct frow *next = w->next;
        if (!row_latest(c, w, false)) {
            row_free(w); /* a newer row for the key was staged meanwhile */
        } else if (row_stage(c, w) < 0) {
            io_poison(c);
            w->next = c->home.friend_retry;
            c->home.friend_retry = w;
        }
        w = next;
    }
}

void friend_deinit(struct chat *c)
{
    while (c->home.friend_retry) {
        struct frow *w = c->home.friend_retry;
        c->home.friend_retry = w->next;
        row_free(w);
    }
    map_deinit(&c->home.friend_gen);
}
