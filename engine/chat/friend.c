/*
 * Friend ops. State per side: FRIEND_ASKED (this user asked the peer),
 * FRIEND_ASKING (the peer asked this user), FRIEND_YES. A request to a peer
 * who has already asked this user is an accept.
 *
 * Each side lives at its user's home. An op is checked against its caller's
 * side, written there, then sent to the peer's home for the other side. Two
 * ops of a pair made at the same moment at the two homes each reach the
 * other side after that side's own op, so the peer's side is not simply
 * overwritten: every op sets both sides (its caller's state and the matching
 * one), and on each side the op with the later time wins (the time of the
 * side's row; at equal times, the op of the user whose id sorts first).
 * Both sides so end with the same op's states. A side whose user is not
 * loaded (or still loading) at its home is read from storage first.
 */
#include "engine/chat/friend.h"

#include "engine/chat/core.h"
#include "engine/chat/session.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A friend row in a batch. Nothing of it is visible before it is durable:
 * then it is applied to the user's loaded state and announced (for the
 * caller's own side: the `ok`, the caller's push and the op forwarded to the
 * peer's home; for the peer's side: the peer's push).
 */
struct frow {
    struct fwd *f; /* the op: f->user acted on f->req.user (f->extra: its time) */
    bool own;      /* the caller's side; else the peer's */
    bool skip;     /* a peer's side older than the row there: only its pending record goes */
    uint8_t state;
    uint8_t before; /* the side's state before (SIDE_UNKNOWN: not known) */
    uint64_t gen;   /* order of staging on this shard (0: never staged) */
};

#define SIDE_UNKNOWN 0xffu

/*
 * Per row key (user|peer) with rows in flight or one waiting to be written
 * again, in c->home.friend_keys. A failed write of a peer's side is parked
 * here and staged again at a tick once nothing of the key is in flight,
 * unless a newer row of the key has become durable meanwhile (a newer one
 * that failed does not count: it changed nothing). The record also gives the
 * state ops must be checked against while rows of the key are not durable.
 */
struct fkey {
    uint64_t durable;    /* gen of the newest row written */
    uint32_t inflight;   /* rows staged and not completed */
    struct frow *parked; /* a peer's side to write again */
    /* the pair's user's own ops waiting for the rows above: each is checked
     * against durable state only, so its answer is exact */
    struct fwd *qhead, *qtail;
    uint32_t qlen;     /* of the user's own ops */
    struct fwd *qpeer; /* the newest op of the peer waiting in the queue, if any */
};

#define FRIEND_QUEUE_MAX 64u /* ops waiting per pair */

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

/*
 * A removal is kept as a FRIEND_NONE mark with its time while the user is
 * here: friend rows being read (older than it) do not bring the pair back,
 * and an op of the peer's crossing it is checked against its time. Such a
 * race lasts milliseconds, so marks older than FRIEND_MARK_KEEP_MS go once
 * the user's entries pass HOME_FRIENDS_MAX (and then each MARKS_SLACK more),
 * which keeps a long-lived user who removes or declines all day from
 * growing without end. An op of a peer no older than the newest mark that
 * went, finding no entry, is checked against the stored row instead (the
 * removal row stays stored until the user's next load).
 */
#define FRIEND_MARK_KEEP_MS 60000u
#define MARKS_SLACK         1024u

static void marks_prune(struct chat *c, struct user *u)
{
    if (map_count(&u->friends) < u->friends_prune_at || u->state != U_READY)
        return;
    uint64_t now = chat_now(c);
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &u->friends);
    while ((n = map_next(&it))) {
        struct ufriend *f = n->val;
        if (f->state == FRIEND_NONE && f->ts + FRIEND_MARK_KEEP_MS < now) {
            if (f->ts > u->friends_pruned_ts)
                u->friends_pruned_ts = f->ts;
            map_del(&u->friends, n->key, n->klen);
            free(f->note);
            free(f);
        }
    }
    u->friends_prune_at = map_count(&u->friends) + MARKS_SLACK;
    if (u->friends_prune_at < HOME_FRIENDS_MAX)
        u->friends_prune_at = HOME_FRIENDS_MAX;
}

/* Set u's friend of peer (new when missing) to state. */
static void mem_put(struct user *u, struct strv peer, uint8_t state, uint64_t ts, struct strv note)
{
    struct ufriend *f = map_get(&u->friends, peer.p, peer.len);
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f || !map_put(&u->friends, peer.p, peer.len, f)) {
            free(f);
            log_warn("chat_friend_oom", "user=%.*s", (int)u->idlen, u->id);
            return;
        }
    }
    u->friends_live -= f->state != FRIEND_NONE; /* a new one is FRIEND_NONE (0) */
    u->friends_live += state != FRIEND_NONE;
    free(f->note);
    f->note = note.len ? strndup(note.p, note.len) : NULL;
    f->state = state;
    f->ts = ts;
}

/*
 * Update a loaded user's friend of peer to state (FRIEND_NONE: a mark). A
 * request received by a user who has HOME_FRIENDS_MAX friends and requests
 * already is only stored, and the user's rows are cut from then on (a row
 * missing from memory is read from storage when an op needs it). Every
 * other row is held: the user's own requests stop at the limit
 * (friends_full), and a friendship comes from a row held already (the
 * user's request, or a request it accepted, read for it by own_start).
 */
static void mem_apply(struct chat *c, struct strv user, struct strv peer, uint8_t state,
                      uint64_t ts, struct strv note)
{
    struct user *u = home_user(c, user);
    if (!u)
        return;
    if (!map_get(&u->friends, peer.p, peer.len)) {
        marks_prune(c, u);
        if (state == FRIEND_ASKING && u->friends_live >= HOME_FRIENDS_MAX) {
            u->friends_cut = true;
            return;
        }
    }
    mem_put(u, peer, state, ts, note);
}

/* The key user|peer into c->kb; 0 or -ENOMEM. */
static int key_of(struct chat *c, struct strv user, struct strv peer)
{
    return stg_key_friend(&c->kb, user.p, user.len, peer.p, peer.len);
}

/* The record of the key in c->kb, created when asked; NULL if none (or ENOMEM). */
static struct fkey *fkey_at(struct chat *c, bool create)
{
    struct fkey *k = map_get(&c->home.friend_keys, c->kb.data, (uint32_t)c->kb.len);
    if (k || !create)
        return k;
    k = calloc(1, sizeof(*k));
    if (k && !map_put(&c->home.friend_keys, c->kb.data, (uint32_t)c->kb.len, k)) {
        free(k);
        k = NULL;
    }
    return k;
}

/* The record of the pair user|peer (its key left in c->kb), created when
 * asked; NULL if none (or ENOMEM). */
static struct fkey *pair_key(struct chat *c, struct strv user, struct strv peer, bool create)
{
    return key_of(c, user, peer) == 0 ? fkey_at(c, create) : NULL;
}

static struct fkey *fkey_of(struct chat *c, const struct frow *w, bool create)
{
    return pair_key(c, row_user(w), row_peer(w), create);
}

/* Forget the record of the pair user|peer once nothing of it is pending. */
static void pair_release(struct chat *c, struct strv user, struct strv peer)
{
    struct fkey *k = pair_key(c, user, peer, false);
    if (k && !k->inflight && !k->parked && !k->qhead) {
        map_del(&c->home.friend_keys, c->kb.data, (uint32_t)c->kb.len);
        free(k);
    }
}

static void fkey_release(struct chat *c, const struct frow *w)
{
    pair_release(c, row_user(w), row_peer(w));
}

static void row_free(struct frow *w)
{
    free(w->f);
    free(w);
}

static void pair_run_waiting(struct chat *c, struct strv user, struct strv peer);

static void run_waiting(struct chat *c, const struct frow *w)
{
    pair_run_waiting(c, row_user(w), row_peer(w));
}

/* The key of the pending record of op f: kept under the op's peer, named
 * by its caller and time (the same for both sides' rows). */
static int fwd_pending_key(struct buf *k, const struct fwd *f)
{
    return stg_key_friend_pending(k, f->req.user.p, f->req.user.len, f->user.p, f->user.len,
                                  f->extra);
}

static int pending_key(struct buf *k, const struct frow *w)
{
    return fwd_pending_key(k, w->f);
}

/* A peer's side w is dropped, replaced by a newer row of its pair: its
 * pending record goes too (in the next batch). */
static void pending_forget(struct chat *c, const struct frow *w)
{
    struct stg_batch *b = w->own ? NULL : io_batch(c);
    struct buf k;
    buf_init(&k);
    if (b && pending_key(&k, w) == 0)
        stg_batch_del(b, STG_CF_FRIEND, k.data, k.len);
    buf_deinit(&k);
}

/* Keep a peer's side whose write failed for the next tick (w transferred). */
static void row_park(struct chat *c, struct frow *w)
{
    if (!w->gen)
        w->gen = ++c->home.friend_gen_last;
    struct fkey *k = fkey_of(c, w, true);
    if (!k) {
        log_error("chat_friend_lost", "user=%.*s peer=%.*s", (int)row_user(w).len, row_user(w).p,
                  (int)row_peer(w).len, row_peer(w).p);
        row_free(w);
        return;
    }
    if (k->durable > w->gen || (k->parked && k->parked->gen > w->gen)) {
        pending_forget(c, w);
        run_waiting(c, w); /* a newer row is written, or waits itself */
        fkey_release(c, w);
        row_free(w);
        return;
    }
    if (k->parked) {
        pending_forget(c, k->parked);
        row_free(k->parked);
    }
    k->parked = w;
}

static void row_done(struct chat *c, void *ctx, int err);

static uint8_t peer_state(uint8_t own)
{
    return own == FRIEND_ASKED ? FRIEND_ASKING : own;
}

/*
 * With the caller's side, the record of the peer's side (written in the same
 * batch, so a crash leaves both or neither); with the peer's side, the
 * record's removal.
 */
static int pending_stage(struct chat *c, struct stg_batch *b, const struct frow *w)
{
    struct buf k;
    buf_init(&k);
    int rc = pending_key(&k, w);
    if (rc == 0 && !w->own) {
        rc = stg_batch_del(b, STG_CF_FRIEND, k.data, k.len);
    } else if (rc == 0) {
        uint8_t st = peer_state(w->state);
        bool asked = st == FRIEND_ASKING;
        struct friend_rec fr = {.state = st,
                                .ts = w->f->extra,
                                .note = asked ? w->f->req.note : (struct strv){"", 0},
                                .run = c->env.cfg->run_id};
        buf_reset(&c->vb);
        rc = val_friend_encode(&c->vb, &fr);
        if (rc == 0)
            rc = stg_batch_put(b, STG_CF_FRIEND, k.data, k.len, c->vb.data, c->vb.len);
    }
    buf_deinit(&k);
    return rc;
}

/*
 * Stage w's row and register its completion. On error the batch may hold the
 * put (the caller poisons it) and w is still the caller's.
 */
static int row_stage(struct chat *c, struct frow *w)
{
    struct stg_batch *b = io_batch(c);
    struct fkey *k = b ? fkey_of(c, w, true) : NULL;
    int rc = k ? 0 : -ENOMEM;
    if (rc == 0 && !w->skip) {
        /* a removal stays as a FRIEND_NONE row with its time until the user's
         * next load, so that a pending side older than it is not replayed */
        struct friend_rec fr = {.state = w->state, .ts = w->f->extra, .note = row_note(w)};
        buf_reset(&c->vb);
        rc = val_friend_encode(&c->vb, &fr);
        if (rc == 0)
            rc = stg_batch_put(b, STG_CF_FRIEND, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    }
    if (rc == 0)
        rc = pending_stage(c, b, w);
    if (rc == 0)
        rc = io_on_commit(c, row_done, w);
    if (rc < 0)
        return rc;
    w->gen = ++c->home.friend_gen_last;
    k->inflight++;
    return 0;
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
    if (w->skip)
        return;
    mem_apply(c, user, peer, w->state, f->extra, row_note(w));
    if (w->own) {
        chat_reply_ok(c, f->conn, f->req.id);
        if (w->state == FRIEND_YES)
            push(c, user, "added", peer, (struct strv){0}, false);
        else if (w->state == FRIEND_NONE)
            push(c, user, "removed", peer, (struct strv){0}, false);
        /* the peer's side follows at the peer's home */
        struct fwd *pf = fwd_new(&f->req, f->user, f->dev, (struct strv){"", 0}, f->conn, f->home);
        if (pf)
            pf->extra = f->extra;
        if (!pf || xfer_send(c, xfer_home(c, peer), XK_FRIEND, 0, pf) < 0) {
            free(pf);
            log_error("chat_friend_lost", "user=%.*s peer=%.*s", (int)peer.len, peer.p,
                      (int)user.len, user.p);
        }
        return;
    }
    if (w->state == w->before && w->state != FRIEND_ASKING)
        return; /* e.g. a removal crossing this user's own: told once */
    if (w->state == FRIEND_ASKING)
        push(c, user, "request", peer, f->req.note, true);
    else if (w->state == FRIEND_YES)
        push(c, user, "added", peer, (struct strv){0}, false);
    else
        push(c, user, "removed", peer, (struct strv){0}, false);
}

static void own_op(struct chat *c, struct fwd *f);
static void own_start(struct chat *c, struct fwd *f);
static void peer_op(struct chat *c, struct fwd *f);
static void own_read(struct chat *c, struct fwd *f);

/* Run the ops that waited for the pair user|peer while nothing of it is
 * pending (user and peer must outlive the ops run). */
static void pair_run_waiting(struct chat *c, struct strv user, struct strv peer)
{
    struct fkey *k;
    while ((k = pair_key(c, user, peer, false)) && !k->inflight && !k->parked && k->qhead) {
        struct fwd *f = k->qhead;
        k->qhead = f->next;
        if (!k->qhead)
            k->qtail = NULL;
        f->next = NULL;
        if (f->friend_peer) {
            k->qpeer = NULL;
            peer_op(c, f);
        } else {
            k->qlen--;
            own_start(c, f);
        }
    }
}

static void row_done(struct chat *c, void *ctx, int err)
{
    struct frow *w = ctx;
    struct fkey *k = fkey_of(c, w, false);
    if (k)
        k->inflight--;
    if (err == 0) {
        if (k && w->gen > k->durable)
            k->durable = w->gen;
        if (k && k->parked && k->parked->gen < w->gen) {
            pending_forget(c, k->parked);
            row_free(k->parked); /* replaced by this newer row */
            k->parked = NULL;
        }
        row_announce(c, w);
    } else if (w->own) {
        /* the caller is told; nothing was applied or forwarded */
        chat_reply_err(c, w->f->conn, true, w->f->req.id, err, NULL);
    } else if (err != -RP_ECLOSED) {
        /* the caller's side is durable: the peer's is written again */
        row_park(c, w);
        return;
    }
    run_waiting(c, w);
    fkey_release(c, w);
    row_free(w);
}

struct flist_row {
    struct strv user;
    const struct ufriend *f;
};

static int by_user(const void *a, const void *b)
{
    return strv_cmp(((const struct flist_row *)a)->user, ((const struct flist_row *)b)->user);
}

/* The bytes a row takes in the reply, at most (map, keys, the id, the note, ts). */
static size_t flist_row_size(const struct flist_row *w)
{
    size_t note = w->f->note ? strlen(w->f->note) : 0;
    return 32 + w->user.len + note;
}

/* The reply's head and tail: op, id, the two keys and array heads, more, next. */
#define FLIST_OVERHEAD (64u + 8u + IDENT_USER_MAX)

/*
 * friend.list: friends and requests received, together in the other user's
 * id order, as many as fit one frame; `more` and `next` (the last id of the
 * page) when some are left, `after: next` for the page that follows.
 */
static void list(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    struct map_iter it;
    struct map_node *n;
    struct flist_row *rows = malloc((map_count(&u->friends) + 1) * sizeof(*rows));
    if (!rows) {
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
        return;
    }
    uint32_t nrows = 0;
    map_iter_init(&it, &u->friends);
    while ((n = map_next(&it))) {
        const struct ufriend *f = n->val;
        struct strv user = {n->key, n->klen};
        if (f->state != FRIEND_YES && f->state != FRIEND_ASKING)
            continue;
        if (r->has_after && strv_cmp(user, r->after_user) <= 0)
            continue;
        rows[nrows++] = (struct flist_row){user, f};
    }
    qsort(rows, nrows, sizeof(*rows), by_user);
    uint32_t k = 0, nf = 0, nr = 0;
    size_t used = FLIST_OVERHEAD;
    /* a row is far smaller than the smallest max_frame: a page holds one at least */
    for (; k < nrows && (k == 0 || used + flist_row_size(&rows[k]) <= c->env.cfg->max_frame); k++) {
        used += flist_row_size(&rows[k]);
        nf += rows[k].f->state == FRIEND_YES;
        nr += rows[k].f->state == FRIEND_ASKING;
    }
    bool more = k < nrows;
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, r->id, more ? 4 : 3);
    for (int pass = 0; pass < 2; pass++) {
        enc_pack_cstr(&pk, pass ? "requests" : "friends");
        msgpack_pack_array(&pk, pass ? nr : nf);
        for (uint32_t i = 0; i < k; i++) {
            const struct ufriend *f = rows[i].f;
            if (f->state != (pass ? FRIEND_ASKING : FRIEND_YES))
                continue;
            msgpack_pack_map(&pk, pass ? 3 : 2);
            enc_pack_cstr(&pk, pass ? "from" : "user");
            enc_pack_strv(&pk, rows[i].user);
            if (pass) {
                enc_pack_cstr(&pk, "note");
                enc_pack_cstr(&pk, f->note ? f->note : "");
            }
            enc_pack_cstr(&pk, pass ? "ts" : "since");
            msgpack_pack_uint64(&pk, f->ts);
        }
    }
    enc_pack_cstr(&pk, "more");
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (more) {
        enc_pack_cstr(&pk, "next");
        enc_pack_strv(&pk, rows[k - 1].user);
    }
    free(rows);
    if (enc_end(&c->fb, start) == 0)
        chat_send(c, s->conn, chat_frame(&c->fb));
    else
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
    buf_reset(&c->fb);
}

/* Whether u has as many friends and requests as it may: a new request is
 * refused. Cut rows may hide some: counted full. */
static bool friends_full(const struct user *u)
{
    return u->friends_cut || u->friends_live >= HOME_FRIENDS_MAX;
}

/* A friend op of f->user (f transferred), checked against the durable state. */
static void own_op(struct chat *c, struct fwd *f)
{
    struct strv me = f->user, peer = f->req.user;
    /* only for the session that sent it (which keeps the user loaded): one
     * that closed meanwhile asked nobody to act on a state it never saw */
    struct session *s = home_session(c, f->conn);
    struct user *u = s && !s->closed ? s->u : NULL;
    if (!u || u->state != U_READY || !strv_eq(me, (struct strv){u->id, u->idlen})) {
        free(f);
        return;
    }
    struct ufriend *uf = map_get(&u->friends, peer.p, peer.len);
    uint8_t cur = uf ? uf->state : FRIEND_NONE;
    uint8_t mine;
    int err = 0;
    const char *msg = NULL;
    if (f->req.op == OP_FRIEND_REQUEST && cur == FRIEND_ASKING)
        f->req.op = OP_FRIEND_ACCEPT; /* they asked first: this is a yes */
    switch (f->req.op) {
    case OP_FRIEND_REQUEST:
        if (cur == FRIEND_YES) {
            err = -EEXIST;
            msg = "already friends";
        } else if (cur == FRIEND_NONE && friends_full(u)) {
            err = -RP_ETOOLARGE;
            msg = "10000 friends and requests at most";
        }
        mine = FRIEND_ASKED;
        break;
    case OP_FRIEND_ACCEPT:
        if (cur == FRIEND_YES) {
            chat_reply_ok(c, f->conn, f->req.id);
            free(f);
            return;
        }
        if (cur != FRIEND_ASKING) {
            err = -ENOENT;
            msg = "no request from that user";
        }
        mine = FRIEND_YES;
        break;
    default: /* remove */
        if (cur == FRIEND_NONE) {
            err = -ENOENT;
            msg = "not a friend";
        }
        mine = FRIEND_NONE;
        break;
    }
    if (err < 0) {
        chat_reply_err(c, f->conn, true, f->req.id, err, msg);
        free(f);
        return;
    }
    struct frow *w = calloc(1, sizeof(*w));
    int rc = w ? 0 : -ENOMEM;
    if (rc == 0) {
        /* the op's time names its pending record: never the same twice */
        uint64_t now = chat_now(c);
        if (now <= c->home.friend_ts_last)
            now = c->home.friend_ts_last + 1;
        if (uf && now <= uf->ts)
            now = uf->ts + 1; /* after what the pair's last op wrote, whichever home's clock */
        c->home.friend_ts_last = now;
        f->extra = now;
        w->f = f;
        w->own = true;
        w->state = mine;
        w->before = cur;
        rc = row_stage(c, w);
        if (rc < 0) {
            io_poison(c);
            fkey_release(c, w);
        }
    }
    if (rc < 0) {
        chat_reply_err(c, f->conn, true, f->req.id, rc, NULL);
        free(w);
        free(f);
    }
    /* staged, w belongs to its commit callback (row_done) */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
}

/* The stored row of a pair the caller's memory does not hold (its rows are
 * cut), read before the caller's op is decided. */
static void on_own_row(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    (void)arg;
    struct fwd *f = ctx;
    char ids[2 * IDENT_USER_MAX]; /* the pair outlives f, which own_op may free */
    memcpy(ids, f->user.p, f->user.len);
    memcpy(ids + f->user.len, f->req.user.p, f->req.user.len);
    struct strv me = {ids, f->user.len}, peer = {ids + f->user.len, f->req.user.len};
    struct fkey *k = pair_key(c, me, peer, false);
    if (k)
        k->inflight--;
    struct user *u = home_user(c, me);
    struct friend_rec r;
    if (u && u->state == U_READY && !map_get(&u->friends, peer.p, peer.len) && err == 0 &&
        val_friend_decode(res->kv[0].val, res->kv[0].vlen, &r) == 0)
        mem_put(u, peer, r.state, r.ts, r.note); /* a row the user acts on stays in memory */
    stg_result_free(res);
    if (err < 0 && err != -ENOENT) {
        chat_reply_err(c, f->conn, true, f->req.id, err, NULL);
        free(f);
    } else {
        own_op(c, f); /* f transferred */
    }
    pair_run_waiting(c, me, peer);
    pair_release(c, me, peer);
}

/* The caller's op f, once nothing of its pair is pending: decided against
 * the pair's row in memory, read first when the user's rows are cut and
 * memory does not hold it. */
static void own_start(struct chat *c, struct fwd *f)
{
    struct session *s = home_session(c, f->conn);
    struct user *u = s && !s->closed ? s->u : NULL;
    if (u && u->state == U_READY && u->friends_cut &&
        !map_get(&u->friends, f->req.user.p, f->req.user.len))
        own_read(c, f);
    else
        own_op(c, f);
}

static void own_read(struct chat *c, struct fwd *f)
{
    struct fkey *k = pair_key(c, f->user, f->req.user, true);
    if (k && io_get_wait(c, STG_CF_FRIEND, c->kb.data, c->kb.len, on_own_row, f, 0) == 0) {
        k->inflight++; /* the pair's next ops wait for this one */
        return;
    }
    chat_reply_err(c, f->conn, true, f->req.id, -ENOMEM, NULL);
    pair_release(c, f->user, f->req.user);
    free(f);
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
    struct fwd *f = fwd_new(r, me, (struct strv){s->dev, s->devlen}, (struct strv){"", 0}, s->conn,
                            c->env.shard);
    if (!f) {
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
        return;
    }
    /* an op of a pair with rows not yet durable waits for their outcome */
    struct fkey *k = pair_key(c, me, peer, false);
    if (k && (k->inflight || k->parked || k->qhead)) {
        if (k->qlen >= FRIEND_QUEUE_MAX) {
            chat_reply_err(c, s->conn, true, r->id, -RP_EFULL, "too many friend ops pending");
            free(f);
            return;
        }
        fwd_queue_push(&k->qhead, &k->qtail, f); /* run_waiting takes it */
        k->qlen++;
        return;
    }
    own_start(c, f);
}

/*
 * Whether an op of actor made at time ts wins over the row of me's side
 * written at row_ts. At equal times that row is of me's own op (a user's
 * ops have times that grow): the op of the user whose id sorts first wins,
 * which both homes decide alike.
 */
static bool peer_op_newer(uint64_t ts, struct strv actor, uint64_t row_ts, struct strv me)
{
    return ts > row_ts || (ts == row_ts && strv_cmp(actor, me) < 0);
}

/* A peer's op f that will not be written: its pending record goes. */
static void pending_drop(struct chat *c, const struct fwd *f)
{
    struct stg_batch *b = io_batch(c);
    struct buf k;
    buf_init(&k);
    if (b && fwd_pending_key(&k, f) == 0)
        stg_batch_del(b, STG_CF_FRIEND, k.data, k.len);
    buf_deinit(&k); /* without a batch the record stays: the next load drops it */
}

/* Decide w (a peer's side) against the row there: its state and time. */
static void peer_decide(struct frow *w, bool have, uint8_t state, uint64_t ts)
{
    w->before = have ? state : FRIEND_NONE;
    w->skip = have && !peer_op_newer(w->f->extra, w->f->user, ts, w->f->req.user);
}

static void peer_stage(struct chat *c, struct frow *w)
{
    if (row_stage(c, w) < 0) {
        io_poison(c);
        row_park(c, w); /* written at the next tick, like a failed write */
    }
}

/* The stored row of a side whose user was not loaded (the pair waited). */
static void on_peer_row(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    (void)arg;
    struct frow *w = ctx;
    struct fkey *k = fkey_of(c, w, false);
    if (k)
        k->inflight--;
    struct friend_rec r;
    struct user *u = home_user(c, w->f->req.user);
    const struct ufriend *uf =
        u && u->state == U_READY ? map_get(&u->friends, w->f->user.p, w->f->user.len) : NULL;
    if (uf) /* loaded meanwhile: the row in memory is the newest */
        peer_decide(w, true, uf->state, uf->ts);
    else if (err == 0 && val_friend_decode(res->kv[0].val, res->kv[0].vlen, &r) == 0)
        peer_decide(w, true, r.state, r.ts);
    else if (err == -ENOENT)
        peer_decide(w, false, 0, 0);
    else /* unreadable: written as it comes, as the pending record would be */
        log_warn("chat_friend_unchecked", "user=%.*s peer=%.*s err=%d", (int)w->f->req.user.len,
                 w->f->req.user.p, (int)w->f->user.len, w->f->user.p, err);
    stg_result_free(res);
    peer_stage(c, w);
}

/*
 * The peer's side of f, checked against that side as it is: in memory when
 * its user is loaded, else as stored (read first, while the pair waits).
 */
static void peer_op(struct chat *c, struct fwd *f)
{
    struct strv me = f->req.user, actor = f->user;
    struct frow *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("chat_friend_lost", "user=%.*s peer=%.*s", (int)me.len, me.p, (int)actor.len,
                  actor.p);
        free(f);
        return;
    }
    w->f = f;
    w->state = f->req.op == OP_FRIEND_REQUEST  ? FRIEND_ASKING
               : f->req.op == OP_FRIEND_ACCEPT ? FRIEND_YES
                                               : FRIEND_NONE;
    w->before = SIDE_UNKNOWN;
    struct user *u = home_user(c, me);
    const struct ufriend *uf =
        u && u->state == U_READY ? map_get(&u->friends, actor.p, actor.len) : NULL;
    /* a missing row is absent unless a mark that went, or the cut, may hide it */
    if (u && u->state == U_READY && (uf || (!u->friends_cut && f->extra > u->friends_pruned_ts))) {
        peer_decide(w, uf != NULL, uf ? uf->state : 0, uf ? uf->ts : 0);
    } else {
        struct fkey *k = fkey_of(c, w, true); /* leaves the row key in c->kb */
        if (k && io_get_wait(c, STG_CF_FRIEND, c->kb.data, c->kb.len, on_peer_row, w, 0) == 0) {
            k->inflight++; /* the pair's next ops wait for this one */
            return;
        }
        if (k)
            fkey_release(c, w);
        log_warn("chat_friend_unchecked", "user=%.*s peer=%.*s err=read", (int)me.len, me.p,
                 (int)actor.len, actor.p);
    }
    peer_stage(c, w);
}

void friend_on_peer(struct chat *c, struct fwd *f)
{
    if (f->extra > c->home.friend_ts_last)
        c->home.friend_ts_last = f->extra; /* ops here come after this one */
    /* after the rows of the pair in flight here: checked against their outcome */
    struct fkey *k = pair_key(c, f->req.user, f->user, false);
    if (k && (k->inflight || k->parked || k->qhead)) {
        f->friend_peer = true;
        struct fwd *q = k->qpeer;
        if (q && f->extra <= q->extra) {
            pending_drop(c, f); /* it would lose to the one waiting */
            free(f);
            return;
        }
        if (q) {
            /* the one waiting would lose to f: f takes its place */
            struct fwd **pp = &k->qhead;
            while (*pp != q)
                pp = &(*pp)->next;
            *pp = f;
            f->next = q->next;
            if (k->qtail == q)
                k->qtail = f;
            k->qpeer = f;
            pending_drop(c, q);
            free(q);
            return;
        }
        fwd_queue_push(&k->qhead, &k->qtail, f); /* run_waiting takes it */
        k->qpeer = f;
        return;
    }
    peer_op(c, f);
}

/* Whether res holds a pending record of peer. */
static bool has_pending(const struct stg_result *res, struct strv peer)
{
    for (uint32_t i = 0; res && i < res->n; i++) {
        struct stg_view ku, kp;
        uint64_t ts;
        if (stg_key_split_friend_pending(res->kv[i].key, res->kv[i].klen, &ku, &kp, &ts) == 0 &&
            strv_eq(peer, (struct strv){kp.p, kp.len}))
            return true;
    }
    return false;
}

/* Whether rows of the pair me|peer are in flight or wait to be written. */
static bool pair_busy(struct chat *c, struct strv me, struct strv peer)
{
    struct fkey *k = pair_key(c, me, peer, false);
    return k && (k->inflight || k->parked);
}

/*
 * u is loaded; u->friends still holds FRIEND_NONE marks with the time of each
 * removal. A pending record of a past run (its forwarded op is gone with that
 * run) is written when it is the newest of its pair, nothing of the pair is
 * in flight or waiting, and what was loaded is older; an older or stale one is
 * removed. A record of this run is left alone: the op it stands for is on its
 * way or waiting here, and its write (or its replacement) removes it. The
 * removal rows of pairs with no record left go too. Nothing is decided when
 * the read of the pending records stopped at its limit (the next load
 * decides); when the read of the rows did, no record is written (the row it
 * would be checked against may be past the cut), but the removal rows that
 * were read still go, so that rows of removals alone cannot keep the lists
 * cut at every load.
 */
void friend_replay(struct chat *c, struct user *u)
{
    struct stg_result *res = u->fpend;
    u->fpend = NULL;
    struct strv me = {u->id, u->idlen};
    if (u->fpend_cut) {
        stg_result_free(res);
        return;
    }
    /* keys of one peer are adjacent and in ts order: walked from the end, the
     * first of each peer is its newest */
    struct strv after = {NULL, 0}; /* the peer of the record after this one */
    for (uint32_t i = res && !u->friends_cut ? res->n : 0; i-- > 0;) {
        struct stg_view ku, kp;
        uint64_t ts;
        struct friend_rec r;
        if (stg_key_split_friend_pending(res->kv[i].key, res->kv[i].klen, &ku, &kp, &ts) < 0) {
            after = (struct strv){NULL, 0};
            continue;
        }
        struct strv peer = {kp.p, kp.len};
        bool newest = !strv_eq(peer, after);
        after = peer;
        if (val_friend_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0 ||
            r.run == c->env.cfg->run_id || pair_busy(c, me, peer))
            continue;
        struct ufriend *cur = map_get(&u->friends, peer.p, peer.len);
        bool stale = cur ? !peer_op_newer(ts, peer, cur->ts, me) : r.state == FRIEND_NONE;
        if (newest && !stale) {
            struct req q = {.op = r.state == FRIEND_ASKING ? OP_FRIEND_REQUEST
                                  : r.state == FRIEND_YES  ? OP_FRIEND_ACCEPT
                                                           : OP_FRIEND_REMOVE,
                            .user = me,
                            .note = r.note};
            struct fwd *f =
                fwd_new(&q, peer, (struct strv){"", 0}, (struct strv){"", 0}, 0, c->env.shard);
            if (f) {
                f->extra = ts;
                log_info("chat_friend_replay", "user=%.*s peer=%.*s", (int)me.len, me.p,
                         (int)peer.len, peer.p);
                friend_on_peer(c, f); /* its batch removes the record */
            }
            continue; /* without memory the record stays for the next load */
        }
        struct stg_batch *b = io_batch(c);
        if (b)
            stg_batch_del(b, STG_CF_FRIEND, res->kv[i].key, res->kv[i].klen);
    }
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &u->friends);
    while ((n = map_next(&it))) {
        struct strv peer = {n->key, n->klen};
        if (((struct ufriend *)n->val)->state != FRIEND_NONE || has_pending(res, peer) ||
            pair_busy(c, me, peer))
            continue;
        struct stg_batch *b = io_batch(c);
        if (b && key_of(c, me, peer) == 0)
            stg_batch_del(b, STG_CF_FRIEND, c->kb.data, c->kb.len);
    }
    stg_result_free(res);
}

/*
 * The sweep. A pending side is written when its user is next loaded, and a
 * user who does not come back would keep an old side (what a send on their
 * behalf is checked against) for good. So after a start each shard reads
 * the pending records a page at a time and loads those of its users that a
 * past run left a record for and that are not here: loading one does what a
 * login does (friend_replay), and the user is let go again. A page's users
 * are loaded before the next page is read, so a shard loads at most
 * SWEEP_PAGE users for it at once. After a failed read the sweep goes on at
 * the next tick from where it stopped, and after a failed load from the
 * start of that load's page.
 */
enum { SWEEP_START, SWEEP_READING, SWEEP_LOADING, SWEEP_DONE };

#define SWEEP_PAGE 32u

static void on_sweep_page(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res);

static void sweep_read(struct chat *c)
{
    struct home *h = &c->home;
    buf_reset(&h->sweep_page);
    buf_append(&h->sweep_page, h->sweep_from.data, h->sweep_from.len);
    int rc = buf_failed(&h->sweep_page) ? -ENOMEM : stg_key_friend_pending_prefix(&c->kb, NULL, 0);
    if (rc == 0)
        rc = io_scan_prefix(c, STG_CF_FRIEND, c->kb.data, c->kb.len,
                            h->sweep_from.len ? h->sweep_from.data : NULL, h->sweep_from.len,
                            SWEEP_PAGE, on_sweep_page, NULL, 0);
    h->sweep_state = rc < 0 ? SWEEP_START : SWEEP_READING;
}

static void on_sweep_page(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    (void)ctx;
    (void)arg;
    struct home *h = &c->home;
    bool more = err == 0 && res->more, stopped = false;
    uint32_t i = 0;
    for (; err == 0 && i < res->n; i++) {
        struct stg_view ku, kp;
        uint64_t ts;
        struct friend_rec r;
        if (stg_key_split_friend_pending(res->kv[i].key, res->kv[i].klen, &ku, &kp, &ts) < 0 ||
            val_friend_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0 ||
            r.run == c->env.cfg->run_id)
            continue;
        struct strv user = {ku.p, (uint32_t)ku.len};
        if (xfer_home(c, user) != c->env.shard)
            continue;
        int rc = session_load_user(c, user);
        if (rc < 0) {
            stopped = true; /* this record again, at a tick */
            break;
        }
        h->sweep_loads += (uint32_t)rc;
    }
    if (i > 0) {
        /* the next page starts right after the last record looked at */
        buf_reset(&h->sweep_from);
        buf_append(&h->sweep_from, res->kv[i - 1].key, res->kv[i - 1].klen);
        buf_put_u8(&h->sweep_from, 0);
        if (buf_failed(&h->sweep_from))
            buf_reset(&h->sweep_from); /* from the first record again */
    }
    stg_result_free(res);
    if ((err < 0 && err != -ENOENT) || stopped)
        h->sweep_state = SWEEP_START;
    else if (!more)
        h->sweep_state = SWEEP_DONE;
    else if (h->sweep_loads > 0)
        h->sweep_state = SWEEP_LOADING;
    else
        sweep_read(c);
}

void friend_sweep_loaded(struct chat *c, bool failed)
{
    struct home *h = &c->home;
    h->sweep_failed |= failed;
    if (--h->sweep_loads > 0)
        return;
    if (h->sweep_failed) {
        /* the page again, after a pause that doubles with each failure (up
         * to a minute): what its loads wrote is gone from it */
        h->sweep_failed = false;
        h->sweep_pause = h->sweep_pause ? h->sweep_pause * 2 : 1;
        if (h->sweep_pause > 60)
            h->sweep_pause = 60;
        h->sweep_wait = h->sweep_pause;
        struct buf from = h->sweep_from;
        h->sweep_from = h->sweep_page;
        h->sweep_page = from;
        h->sweep_state = SWEEP_START;
    } else if (h->sweep_state == SWEEP_LOADING) {
        sweep_read(c);
    }
}

void friend_tick(struct chat *c)
{
    struct home *h = &c->home;
    if (h->sweep_wait > 0)
        h->sweep_wait--;
    else if (h->sweep_state == SWEEP_START && h->sweep_loads == 0)
        sweep_read(c);
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &c->home.friend_keys);
    while ((n = map_next(&it))) {
        struct fkey *k = n->val;
        struct frow *w = k->parked;
        if (!w || k->inflight)
            continue; /* what is in flight is newer: its outcome comes first */
        k->parked = NULL;
        if (row_stage(c, w) < 0) {
            io_poison(c);
            k->parked = w;
        }
    }
}

bool friend_pending(const struct chat *c)
{
    return map_count(&c->home.friend_keys) > 0;
}

void friend_deinit(struct chat *c)
{
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &c->home.friend_keys);
    while ((n = map_next(&it))) {
        struct fkey *k = n->val;
        if (k->parked)
            row_free(k->parked);
        while (k->qhead) {
            struct fwd *f = k->qhead;
            k->qhead = f->next;
            free(f);
        }
        free(k);
    }
    map_deinit(&c->home.friend_keys);
    buf_deinit(&c->home.sweep_from);
    buf_deinit(&c->home.sweep_page);
}
