/*
 * Session lifecycle. Sessions and users are refcounted because storage reads
 * outlive connections: a read holds a reference, and a completion for a
 * closed session or a dropped user only releases it.
 */
#include "engine/chat/session.h"

#include "engine/chat/core.h"
#include "engine/chat/friend.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"
#include "protocol/mpread.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct held {
    struct held *next;
    struct rbuf *frame;
    uint64_t seq;
    uint32_t convlen;
    char conv[];
};

/* A catch-up read of one conversation. */
struct cu_part {
    struct stg_result *res;
    size_t bytes; /* of res's values */
    uint32_t gen; /* a read issued before the last drop_read_ahead is stale */
    bool done;    /* its read has completed */
    uint64_t lo;  /* the first seq the device lacks */
    uint64_t hi;  /* the last seq it may get (0: no bound) */
    uint32_t convlen;
    char conv[2 + 64 + 1 + 64];
};

/* Catch-up order: by conversation; within one, its spans up to removals by
 * seq, then the part of the present membership (hi 0). */
static int by_conv_then_span(const void *a, const void *b)
{
    const struct cu_part *x = a, *y = b;
    int d = strv_cmp((struct strv){x->conv, x->convlen}, (struct strv){y->conv, y->convlen});
    if (d)
        return d;
    if ((x->hi == 0) != (y->hi == 0))
        return x->hi == 0 ? 1 : -1;
    return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Conversations of a catch-up read ahead of the one being pushed: at most
 * this many, and no more once the results read ahead (reads under way
 * counted at the average size so far) add up to outbound_limit bytes. While
 * the connection's queue is full (the client reads slowly, or not at all),
 * results past that are dropped and read again when it drains: what a
 * paused catch-up holds is then bounded by outbound_limit plus the
 * conversation being pushed. */
#define CU_AHEAD      32u
#define CU_AHEAD_BUSY 4u /* while the shard's reads are backlogged */

static void session_start(struct chat *c, struct session *s);
static void hello_ok(struct chat *c, struct session *s);
static void session_unref(struct chat *c, struct session *s);

/* ---- lifetimes ---- */

static void user_free(struct user *u)
{
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &u->convs);
    while ((n = map_next(&it)))
        free(n->val);
    map_deinit(&u->convs);
    map_deinit(&u->gone);
    map_iter_init(&it, &u->left);
    while ((n = map_next(&it)))
        free(n->val);
    map_deinit(&u->left);
    map_iter_init(&it, &u->friends);
    while ((n = map_next(&it))) {
        struct ufriend *f = n->val;
        free(f->note);
        free(f);
    }
    map_deinit(&u->friends);
    stg_result_free(u->fpend);
    free(u);
}

/* u leaves the group index and the user table, if it is still there. */
static void user_unlist(struct chat *c, struct user *u)
{
    if (home_user(c, (struct strv){u->id, u->idlen}) != u)
        return;
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &u->convs);
    while ((n = map_next(&it)))
        if (((struct uconv *)n->val)->kind == CONV_GROUP)
            home_index_del(c, (struct strv){n->key, n->klen}, u);
    home_user_remove(c, u);
}

static void user_unref(struct chat *c, struct user *u)
{
    if (--u->refs)
        return;
    /* the last session and read are gone: leave the index and forget the user */
    user_unlist(c, u);
    user_free(u);
}

/*
 * The last session of a user whose state is loading has gone, and no friend
 * sweep waits for the load: it stops. The user leaves the table (a later
 * hello loads it afresh), its reads still waiting for a slot are dropped, and
 * those under way end without starting more (the load's steps go on only
 * while U_LOADING).
 */
static void user_abandon(struct chat *c, struct user *u)
{
    u->state = U_FAILED;
    user_unlist(c, u);
    c->stats.user_loads_abandoned++;
    io_cancel_waiting(c, u);
}

/* Frees the catch-up result part p holds, if any. */
static void cu_release(struct chat *c, struct cu_part *p)
{
    stg_result_free(p->res);
    p->res = NULL;
    c->stats.catchup_held_bytes -= p->bytes;
    p->bytes = 0;
}

static void pre_free(struct chat *c, struct session_pre *p)
{
    if (!p)
        return;
    while (p->held_head) {
        struct held *h = p->held_head;
        p->held_head = h->next;
        rbuf_unref(h->frame);
        free(h);
    }
    for (uint32_t i = 0; i < p->ncu; i++)
        cu_release(c, &p->cu[i]);
    free(p->cu);
    map_deinit(&p->caps);
    free(p);
}

static void session_free(struct chat *c, struct session *s)
{
    pre_free(c, s->pre);
    map_deinit(&s->acks);
    map_deinit(&s->sent);
    free(s);
}

void session_query_start(struct chat *c, struct session *s)
{
    s->refs++;
    if (++s->queries >= HOME_QUERIES_MAX && !s->paused && !s->closed && c->env.hold) {
        s->paused = true;
        c->stats.queries_paused++;
        c->env.hold(c->env.rt, s->conn);
    }
}

void session_query_end(struct chat *c, struct session *s)
{
    s->queries--;
    if (s->paused && s->queries < HOME_QUERIES_MAX) {
        s->paused = false;
        if (!s->closed && c->env.ready)
            c->env.ready(c->env.rt, s->conn);
    }
    session_unref(c, s);
}

static void session_unref(struct chat *c, struct session *s)
{
    if (--s->refs)
        return;
    struct user *u = s->u;
    session_free(c, s);
    user_unref(c, u);
}

/* Detach a session from its connection and user; it dies with its last read
 * (the ones still waiting for a slot are dropped). The last session of a user
 * still loading stops the load unless another takes its place (`replaced`). */
static void session_detach(struct chat *c, struct session *s, bool replaced)
{
    if (s->closed)
        return;
    s->closed = true;
    if (s->reads_out) /* only then can one of its reads be waiting */
        io_cancel_waiting(c, s);
    home_session_remove(c, s);
    struct user *u = s->u;
    for (struct session **pp = &u->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    u->nsessions--;
    if (u->nsessions == 0 && !replaced && u->state == U_LOADING && !u->swept)
        user_abandon(c, u); /* s holds a reference to u */
    session_unref(c, s);
}

void session_close(struct chat *c, conn_id_t conn)
{
    struct session *s = home_session(c, conn);
    if (s)
        session_detach(c, s, false);
}

uint32_t session_kick_user(struct chat *c, struct strv user, const char *reason)
{
    struct user *u = home_user(c, user);
    uint32_t n = 0;
    if (!u)
        return 0;
    u->refs++; /* u outlives its last session within this loop */
    while (u->sessions) {
        conn_id_t conn = u->sessions->conn;
        if (u->sessions->state == S_WAIT_USER && u->state != U_FAILED)
            hello_ok(c, u->sessions); /* every hello is answered, then the bye follows */
        session_detach(c, u->sessions, false);
        c->env.close(c->env.rt, conn, reason);
        n++;
    }
    user_unref(c, u);
    return n;
}

void session_free_all(struct chat *c)
{
    struct imap_iter it;
    struct ilink *l;
    imap_iter_init(&it, &c->home.conns);
    while ((l = imap_next(&it))) {
        struct session *s = (struct session *)((char *)l - offsetof(struct session, by_conn));
        s->closed = true;
        session_free(c, s);
    }
    imap_deinit(&c->home.conns);
    imap_iter_init(&it, &c->home.users);
    while ((l = imap_next(&it)))
        user_free((struct user *)((char *)l - offsetof(struct user, by_id)));
    imap_deinit(&c->home.users);
}

/* ---- loading a user ---- */

static void user_loaded(struct chat *c, struct user *u)
{
    u->state = U_READY;
    map_deinit(&u->gone);
    friend_replay(c, u); /* the marks of friends removed stay: see friend.c */
    for (struct session *s = u->sessions; s; s = s->next)
        if (s->state == S_WAIT_USER)
            session_start(c, s);
}

static void user_failed(struct chat *c, struct user *u)
{
    log_warn("chat_user_load_failed", "user=%.*s", (int)u->idlen, u->id);
    u->state = U_FAILED;
    /* the sessions cannot be served: they end, the clients reconnect (none
     * of them had its hello answered yet) */
    for (struct session *s = u->sessions; s; s = s->next)
        if (s->state == S_WAIT_USER)
            chat_reply_err(c, s->conn, true, s->hello_id, -RP_ESTORAGE, "try again");
    session_kick_user(c, (struct strv){u->id, u->idlen}, NULL);
}

static void load_step_done(struct chat *c, struct user *u, int err)
{
    if (err < 0 && u->state == U_LOADING)
        user_failed(c, u);
    if (--u->pending == 0 && u->state == U_LOADING)
        user_loaded(c, u);
    if (u->pending == 0 && u->swept) {
        /* the sweep's reference; the read's, below, is the last to go */
        u->swept = false;
        user_unref(c, u);
        friend_sweep_loaded(c, u->state == U_FAILED);
    }
    user_unref(c, u);
}

static void on_conv_meta(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct user *u = ctx;
    struct conv_meta m;
    if (err == 0 && val_conv_decode(res->kv[0].val, res->kv[0].vlen, &m) == 0) {
        struct stg_view v;
        if (stg_key_split(res->kv[0].key, res->kv[0].klen, &v, 1, NULL) == 0) {
            struct uconv *uc = map_get(&u->convs, v.p, (uint32_t)v.len);
            if (uc && m.last_seq > uc->last_seq) {
                uc->last_seq = m.last_seq;
                uc->last_ts = m.last_ts;
            }
        }
    }
    stg_result_free(res);
    load_step_done(c, u, err == -ENOENT ? 0 : err);
}

static void on_read_cursors(struct chat *c, void *ctx, uint64_t arg, int err,
                            struct stg_result *res)
{
    struct user *u = ctx;
    for (uint32_t i = 0; err == 0 && i < res->n; i++) {
        struct stg_view p[3];
        uint64_t v;
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, p, 3, NULL) < 0 ||
            val_u64_decode(res->kv[i].val, res->kv[i].vlen, &v) < 0)
            continue;
        struct uconv *uc = map_get(&u->convs, p[2].p, (uint32_t)p[2].len);
        if (uc && v > uc->read_seq)
            uc->read_seq = v;
    }
    stg_result_free(res);
    load_step_done(c, u, err);
}

static void on_friends(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct user *u = ctx;
    if (err == 0 && res->more)
        u->friends_cut = true;
    for (uint32_t i = 0; err == 0 && i < res->n; i++) {
        struct stg_view p[2];
        struct friend_rec r;
        /* a FRIEND_NONE row (a removal) becomes a mark like one made while
         * loading: friend_replay and crossing ops compare with its time */
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, p, 2, NULL) < 0 ||
            val_friend_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0)
            continue;
        /* a friend op that reached the user while this read was in flight
         * is newer than what the read saw (and replacing it would leak it) */
        if (map_get(&u->friends, p[1].p, (uint32_t)p[1].len))
            continue;
        struct ufriend *f = calloc(1, sizeof(*f));
        if (!f || !map_put(&u->friends, p[1].p, (uint32_t)p[1].len, f)) {
            free(f);
            err = -ENOMEM;
            break;
        }
        f->state = r.state;
        f->ts = r.ts;
        f->note = r.note.len ? strndup(r.note.p, r.note.len) : NULL;
        u->friends_live += r.state != FRIEND_NONE;
    }
    stg_result_free(res);
    load_step_done(c, u, err);
}

/* Pending sides of the user's friendships (friend.h), kept for user_loaded. */
static void on_friend_pending(struct chat *c, void *ctx, uint64_t arg, int err,
                              struct stg_result *res)
{
    struct user *u = ctx;
    if (err == 0 && res && res->more)
        u->fpend_cut = true;
    if (err == 0 && res && res->n) {
        stg_result_free(u->fpend);
        u->fpend = res;
    } else {
        stg_result_free(res);
    }
    load_step_done(c, u, err == -ENOENT ? 0 : err);
}

/* Issue one load read holding a user reference; on failure count it as a failed step. */
static void load_read(struct chat *c, struct user *u, int rc)
{
    u->pending++;
    u->refs++;
    if (rc < 0)
        load_step_done(c, u, rc);
}

static int cursor_prefix(struct buf *k, struct strv user, struct strv dev)
{
    struct buf t;
    buf_init(&t);
    int rc = stg_key_prefix(k, user.p, user.len);
    if (rc == 0)
        rc = stg_key_prefix(&t, dev.p, dev.len);
    if (rc == 0)
        rc = buf_append(k, t.data, t.len);
    buf_deinit(&t);
    return rc;
}

/* The user's removal records: groups whose removal event devices offline
 * then still get, also when the user has been invited back since (the part up
 * to the removal comes before the member's in the catch-up). */
static void on_left(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct user *u = ctx;
    for (uint32_t i = 0; err == 0 && i < res->n; i++) {
        struct stg_view p[2];
        struct userconv_rec r;
        uint64_t key_seq;
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, p, 2, &key_seq) < 0 ||
            val_left_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0 || key_seq != r.left_seq ||
            r.left_ts + STG_LEFT_KEEP_MS < chat_now(c) || p[1].len < 2 || p[1].p[0] != 'g')
            continue;
        home_left_put(u, (struct strv){p[1].p, (uint32_t)p[1].len}, r.left_seq, r.joined_seq,
                      r.left_ts);
    }
    if (err == 0 && res->more)
        log_warn("chat_left_cut", "user=%.*s max=%u", (int)u->idlen, u->id, HOME_LEFT_MAX);
    stg_result_free(res);
    load_step_done(c, u, err);
}

static void on_userconvs(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct user *u = ctx;
    struct strv uid = {u->id, u->idlen};
    /* abandoned meanwhile (user_abandon): out of the table, it must not enter the index */
    for (uint32_t i = 0; err == 0 && u->state == U_LOADING && i < res->n; i++) {
        struct stg_view p[2];
        struct userconv_rec r;
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, p, 2, NULL) < 0 ||
            val_userconv_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0)
            continue;
        struct strv conv = {p[1].p, (uint32_t)p[1].len};
        /* left while loading, or (re)joined while loading: what came live is newer */
        if (map_get(&u->gone, conv.p, conv.len) || map_get(&u->convs, conv.p, conv.len))
            continue;
        struct uconv *uc = home_uconv_put(c, u, conv, r.kind, r.joined_seq);
        if (!uc) {
            err = -ENOMEM;
            break;
        }
        uc->role = r.role;
    }
    stg_result_free(res);
    if (err == 0 && u->state == U_LOADING) {
        /* registered in the index: now read where each conversation stands */
        struct map_iter it;
        struct map_node *n;
        map_iter_init(&it, &u->convs);
        while ((n = map_next(&it))) {
            int rc = stg_key_conv(&c->kb, n->key, n->klen);
            if (rc == 0)
                rc = io_get_wait(c, STG_CF_CONV, c->kb.data, c->kb.len, on_conv_meta, u, 0);
            load_read(c, u, rc);
        }
        /* read cursors not yet durable first; the read only moves them forward */
        struct map pend;
        map_init(&pend);
        int rc = home_cursors_pending(c, uid, strv_c(VAL_READ_DEVICE), &pend);
        map_iter_init(&it, &pend);
        while (rc == 0 && (n = map_next(&it))) {
            struct uconv *uc = map_get(&u->convs, n->key, n->klen);
            if (uc && map_as_u64(n->val) > uc->read_seq)
                uc->read_seq = map_as_u64(n->val);
        }
        map_deinit(&pend);
        if (rc == 0)
            rc = cursor_prefix(&c->kb, uid, strv_c(VAL_READ_DEVICE));
        if (rc == 0)
            rc = io_scan_prefix_wait(c, STG_CF_CURSOR, c->kb.data, c->kb.len, NULL, 0,
                                     HOME_CONVS_MAX, on_read_cursors, u, 0);
        load_read(c, u, rc);
        rc = stg_key_prefix(&c->kb, uid.p, uid.len);
        if (rc == 0)
            rc = io_scan_prefix_wait(c, STG_CF_FRIEND, c->kb.data, c->kb.len, NULL, 0,
                                     HOME_FRIENDS_MAX, on_friends, u, 0);
        load_read(c, u, rc);
        rc = stg_key_friend_pending_prefix(&c->kb, uid.p, uid.len);
        if (rc == 0)
            rc = io_scan_prefix_wait(c, STG_CF_FRIEND, c->kb.data, c->kb.len, NULL, 0,
                                     HOME_FRIENDS_MAX, on_friend_pending, u, 0);
        load_read(c, u, rc);
        rc = stg_key_prefix(&c->kb, uid.p, uid.len);
        if (rc == 0)
            rc = io_scan_prefix_wait(c, STG_CF_LEFT, c->kb.data, c->kb.len, NULL, 0, HOME_LEFT_MAX,
                                     on_left, u, 0);
        load_read(c, u, rc);
    }
    load_step_done(c, u, err);
}

static struct user *user_new(struct chat *c, struct strv id)
{
    if (id.len > IDENT_USER_MAX)
        return NULL;
    struct user *u = calloc(1, sizeof(*u) + id.len + 1);
    if (!u)
        return NULL;
    memcpy(u->id, id.p, id.len);
    u->idlen = (uint8_t)id.len;
    u->state = U_LOADING;
    map_init(&u->convs);
    map_init(&u->gone);
    map_init(&u->left);
    map_init(&u->friends);
    u->friends_prune_at = HOME_FRIENDS_MAX;
    if (home_user_add(c, u) < 0) {
        free(u);
        return NULL;
    }
    u->refs = 1; /* dropped once the first session holds it */
    int rc = stg_key_prefix(&c->kb, id.p, id.len);
    if (rc == 0)
        rc = io_scan_prefix_wait(c, STG_CF_USERCONV, c->kb.data, c->kb.len, NULL, 0, HOME_CONVS_MAX,
                                 on_userconvs, u, 0);
    load_read(c, u, rc);
    return u;
}

int session_load_user(struct chat *c, struct strv id)
{
    struct user *u = home_user(c, id);
    if (u) {
        if (u->state != U_LOADING || u->swept)
            return 0;
        /* loading for a login: the sweep waits for that load, which its
         * sessions leaving must not stop then */
        u->refs++;
        u->swept = true;
        return 1;
    }
    u = user_new(c, id);
    if (!u)
        return -ENOMEM;
    if (u->pending == 0) {
        user_unref(c, u); /* its first read failed: nothing was loaded */
        return -RP_ESTORAGE;
    }
    u->swept = true; /* user_new's reference is the sweep's */
    return 1;
}

/* ---- catch-up ---- */

/* The session takes live pushes from now on: what was held while it waited
 * for its user's state or its catch-up goes out first, in arrival order
 * (home_push_entry drops any seq already sent). */
static void go_live(struct chat *c, struct session *s)
{
    s->state = S_LIVE;
    struct session_pre *p = s->pre;
    s->pre = NULL;
    struct held *h = p->held_head;
    p->held_head = p->held_tail = NULL;
    p->nheld = 0;
    p->held_bytes = 0;
    pre_free(c, p);
    while (h) {
        struct held *next = h->next;
        if (h->convlen == 0) {
            if (!s->closed)
                chat_push(c, s->conn, h->frame); /* not an entry (read, friend) */
        } else {
            home_push_entry(c, s, (struct strv){h->conv, h->convlen}, h->seq, h->frame);
        }
        rbuf_unref(h->frame);
        free(h);
        h = next;
    }
}

static bool read_ahead(struct chat *c, struct session *s);
static bool read_ahead_to(struct chat *c, struct session *s, uint32_t last);
static void drop_read_ahead(struct chat *c, struct session *s);

/* The users of a group event entry's data: whether user is among them. */
static bool names_user(struct mpr *r, struct strv user)
{
    uint32_t n;
    if (mpr_array(r, &n) < 0)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        struct strv u;
        if (mpr_str(r, &u) < 0)
            return false;
        if (strv_eq(u, user))
            return true;
    }
    return false;
}

/*
 * Is this log entry (a msg frame) the event that takes user out of its group:
 * a kick or leave that names user, or a dismiss? A catch-up stops there, as
 * it stops at a removal delivered while it is read: the stored last_seq it
 * reads up to may be past a removal whose delivery is still on its way. (An
 * event names at most its first 20 users; a larger kick is caught by its
 * delivery only.)
 */
static bool entry_removes(const uint8_t *p, uint32_t len, struct strv user)
{
    struct mpr r;
    uint32_t pairs;
    bool event = false;
    struct mpr data = {NULL, NULL};
    mpr_init(&r, p, len);
    if (mpr_map(&r, &pairs) < 0)
        return false;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv k, v;
        if (mpr_str(&r, &k) < 0)
            return false;
        if (strv_eq_c(k, "type")) {
            if (mpr_str(&r, &v) < 0)
                return false;
            event = strv_eq_c(v, "event");
        } else {
            if (strv_eq_c(k, "data"))
                data = r;
            if (mpr_skip(&r) < 0)
                return false;
        }
    }
    if (!event || !data.p || mpr_map(&data, &pairs) < 0)
        return false;
    struct strv kind = {NULL, 0};
    bool named = false;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv k;
        if (mpr_str(&data, &k) < 0)
            return false;
        if (strv_eq_c(k, "kind")) {
            if (mpr_str(&data, &kind) < 0)
                return false;
        } else if (strv_eq_c(k, "users")) {
            named = names_user(&data, user);
            break; /* the fields after users do not matter */
        } else if (mpr_skip(&data) < 0) {
            return false;
        }
    }
    return strv_eq_c(kind, "dismiss") ||
           ((strv_eq_c(kind, "kick") || strv_eq_c(kind, "leave")) && named);
}

static void finish_catchup(struct chat *c, struct session *s)
{
    /* Pushed part by part as their reads complete (in order), pausing
     * whenever the connection's outbound queue is past its low-water mark:
     * a catch-up larger than the queue bound must arrive, not end in bye
     * slow (chat_on_drained resumes it). */
    struct session_pre *pre = s->pre;
    for (; pre->cu_i < pre->ncu && !s->closed; pre->cu_i++) {
        if (!read_ahead(c, s))
            return;
        struct cu_part *p = &pre->cu[pre->cu_i];
        if (!p->done)
            return; /* on_catchup goes on */
        uint64_t top = map_as_u64(map_get(&s->sent, p->conv, p->convlen));
        if (!pre->cu_started) {
            /* A conversation read in several parts (spans up to removals,
             * then the present membership) gets catchup_limit entries in
             * all, the newest: the later parts' first, so they are read
             * before this one goes out. */
            uint64_t later = 0;
            for (uint32_t k = pre->cu_i + 1; k < pre->ncu && pre->cu[k].convlen == p->convlen &&
                                             !memcmp(pre->cu[k].conv, p->conv, p->convlen);
                 k++) {
                if (k >= pre->cu_end && !read_ahead_to(c, s, k))
                    return;
                if (!pre->cu[k].done)
                    return; /* on_catchup goes on */
                later += pre->cu[k].res ? pre->cu[k].res->n : 0;
            }
            uint64_t limit = c->env.cfg->catchup_limit;
            uint64_t budget = later < limit ? limit - later : 0;
            uint32_t n = p->res ? p->res->n : 0;
            pre->cu_j = n < budget ? n : (uint32_t)budget; /* the newest of this part */
            pre->cu_started = true;
        }
        while (pre->cu_j > 0) { /* reverse scan: oldest last */
            if (c->env.congested && c->env.congested(c->env.rt, s->conn)) {
                map_put(&s->sent, p->conv, p->convlen, map_u64(top));
                pre->cu_paused = true;
                drop_read_ahead(c, s);
                return;
            }
            struct stg_kv *kv = &p->res->kv[--pre->cu_j];
            struct stg_view cv;
            uint64_t seq;
            if (stg_key_split_log(kv->key, kv->klen, &cv, &seq) < 0 || seq <= top)
                continue;
            /* Only what this home has seen delivered (or read at login) goes
             * out here: a later entry may be durable but its delivery still on
             * its way, and that delivery — a removal event above all — must
             * be handled first. It arrives as a live push, held until synced
             * and deduplicated by seq. Removed meanwhile: the removal event
             * is the last. */
            struct uconv *uc = map_get(&s->u->convs, p->conv, p->convlen);
            uint64_t cap = map_as_u64(map_get(&pre->caps, p->conv, p->convlen));
            uint64_t lim = p->hi ? p->hi : uc ? uc->last_seq : cap; /* a removal's part: to it */
            if (cap && cap < lim)
                lim = cap;
            if (seq > lim)
                continue;
            if (enc_frame_raw(&c->fb, kv->val, kv->vlen) < 0) {
                buf_reset(&c->fb);
                continue;
            }
            struct rbuf *f = chat_frame(&c->fb);
            if (!f)
                continue;
            top = seq;
            int rc = c->env.send(c->env.rt, s->conn, f);
            rbuf_unref(f);
            if (rc < 0)
                return; /* the connection is closing */
            if (p->conv[0] == 'g' &&
                entry_removes(kv->val, kv->vlen, (struct strv){s->u->id, s->u->idlen}))
                pre->cu_j = 0; /* nothing after its removal */
            pre->cu_sent++;
            c->stats.deliveries++;
        }
        map_put(&s->sent, p->conv, p->convlen, map_u64(top));
        cu_release(c, p);
        pre->cu_started = false;
    }
    if (s->closed)
        return;
    /* what the device acked needs no push either (its acks are bounded by
     * the conversation's end: on_acks, do_ack) */
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &s->acks);
    while ((n = map_next(&it)))
        if (map_as_u64(map_get(&s->sent, n->key, n->klen)) < map_as_u64(n->val))
            map_put(&s->sent, n->key, n->klen, n->val);
    if (enc_synced(&c->fb) == 0)
        chat_send(c, s->conn, chat_frame(&c->fb));
    buf_reset(&c->fb);
    static const uint32_t bounds[CHAT_CU_N] = CHAT_CU_BOUNDS;
    chat_hist_add(c->stats.catchup_hist, bounds, CHAT_CU_N, pre->cu_sent);
    c->stats.catchups++;
    c->stats.catchup_entries += pre->cu_sent;
    go_live(c, s);
}

/* A part of the catch-up cannot be read: `synced` would claim what the device
 * does not have, so the session ends instead, and the client's resume asks
 * again. */
static void catchup_fail(struct chat *c, struct session *s, int err)
{
    log_warn("chat_catchup_read_failed", "err=%d", err);
    s->pre->cu_failed = true;
    c->env.close(c->env.rt, s->conn, NULL);
}

/* The read of part i issued as generation gen, as a read's arg. */
static uint64_t cu_arg(uint32_t i, uint32_t gen)
{
    return (uint64_t)gen << 32 | i;
}

static void on_catchup(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct session *s = ctx;
    uint32_t i = (uint32_t)arg;
    s->reads_out--;
    /* a read dropped by drop_read_ahead (its generation is past) or one that
     * comes after the session went live (pre is gone) is only freed */
    if (!s->closed && s->pre && !s->pre->cu_failed && s->pre->cu[i].gen == (uint32_t)(arg >> 32)) {
        struct session_pre *pre = s->pre;
        struct cu_part *p = &pre->cu[i];
        p->res = res;
        p->done = true;
        for (uint32_t k = 0; res && k < res->n; k++)
            p->bytes += res->kv[k].vlen;
        c->stats.catchup_held_bytes += p->bytes;
        pre->cu_read_bytes += p->bytes;
        pre->cu_read_parts++;
        res = NULL;
        if (err < 0 && err != -ENOENT)
            catchup_fail(c, s, err);
        else if (pre->cu_paused)
            drop_read_ahead(c, s);
        else if (i >= pre->cu_i) /* cu_i may wait for a later part */
            finish_catchup(c, s);
    }
    stg_result_free(res); /* also a dropped read's */
    session_unref(c, s);
}

/* The average bytes of a part read so far (0: none read). */
static uint64_t cu_avg(const struct session_pre *pre)
{
    return pre->cu_read_parts ? pre->cu_read_bytes / pre->cu_read_parts : 0;
}

/* Bytes of the results read ahead of part cu_i, counting each read still
 * under way as the average of those read so far. */
static uint64_t held_ahead(const struct session_pre *pre)
{
    uint64_t n = 0, avg = cu_avg(pre);
    for (uint32_t k = pre->cu_i + 1; k < pre->cu_end; k++)
        n += pre->cu[k].done ? pre->cu[k].bytes : avg;
    return n;
}

/* The catch-up paused on a full queue: while the results read ahead of the
 * conversation being pushed weigh more than outbound_limit, give back the
 * last one read (or being read: its result will be dropped), to be read
 * again later. */
static void drop_read_ahead(struct chat *c, struct session *s)
{
    struct session_pre *pre = s->pre;
    const struct cu_part *cur = &pre->cu[pre->cu_i];
    uint32_t keep = pre->cu_i + 1; /* the conversation's later parts stay */
    while (keep < pre->cu_end && pre->cu[keep].convlen == cur->convlen &&
           !memcmp(pre->cu[keep].conv, cur->conv, cur->convlen))
        keep++;
    while (pre->cu_end > keep && held_ahead(pre) > c->env.cfg->outbound_limit) {
        struct cu_part *p = &pre->cu[--pre->cu_end];
        cu_release(c, p);
        p->done = false;
        p->gen++;
    }
}

/* Keep the reads of up to CU_AHEAD parts from cu_i on issued, CU_AHEAD_BUSY
 * while the shard's reads are backlogged, so that a wave of catch-ups shares
 * the slots instead of a few sessions taking them. False when one could not
 * be issued: the session ends (as for a failed read). */
static bool read_ahead(struct chat *c, struct session *s)
{
    struct session_pre *pre = s->pre;
    uint32_t ahead = io_reads_backlogged(c) ? CU_AHEAD_BUSY : CU_AHEAD;
    if (pre->cu_end <= pre->cu_i && !read_ahead_to(c, s, pre->cu_i))
        return false; /* the part to push next is always read */
    uint64_t held = held_ahead(pre), avg = cu_avg(pre);
    while (pre->cu_end < pre->ncu && pre->cu_end < pre->cu_i + ahead &&
           held < c->env.cfg->outbound_limit) {
        if (!read_ahead_to(c, s, pre->cu_end))
            return false;
        held += avg;
    }
    return true;
}

/* Issue the reads of the parts up to `last` (an index into cu) not issued yet. */
static bool read_ahead_to(struct chat *c, struct session *s, uint32_t last)
{
    struct session_pre *sp = s->pre;
    if (sp->cu_failed)
        return false;
    while (sp->cu_end < sp->ncu && sp->cu_end <= last) {
        struct cu_part *p = &sp->cu[sp->cu_end];
        struct buf up;
        buf_init(&up);
        int rc = p->hi ? stg_key_log(&up, p->conv, p->convlen, p->hi + 1)
                       : stg_key_prefix(&up, p->conv, p->convlen);
        if (rc == 0 && !p->hi)
            rc = stg_key_successor(&up);
        if (rc == 0)
            rc = stg_key_log(&c->kb, p->conv, p->convlen, p->lo);
        if (rc == 0) {
            struct stg_read q = {.kind = STG_SCAN,
                                 .cf = STG_CF_LOG,
                                 .key = c->kb.data,
                                 .klen = c->kb.len,
                                 .upper = up.data,
                                 .ulen = up.len,
                                 .limit = c->env.cfg->catchup_limit,
                                 .reverse = true};
            rc = io_read_wait(c, &q, on_catchup, s, cu_arg(sp->cu_end, p->gen));
        }
        buf_deinit(&up);
        if (rc < 0) {
            catchup_fail(c, s, rc);
            return false;
        }
        s->refs++;
        s->reads_out++;
        sp->cu_end++;
    }
    return true;
}

static void read_catchup(struct chat *c, struct session *s)
{
    struct user *u = s->u;
    struct session_pre *sp = s->pre;
    uint32_t n = 0;
    sp->cu = calloc(map_count(&u->convs) + (size_t)map_count(&u->left) * HOME_LEFT_SPANS + 1,
                    sizeof(*sp->cu));
    if (!sp->cu) {
        c->env.close(c->env.rt, s->conn, NULL);
        return;
    }
    struct map_iter it;
    struct map_node *nd;
    uint64_t now = chat_now(c);
    /* groups the user was removed from, up to the removal event: first, so
     * that a group the user is in again goes on from there in seq order */
    map_iter_init(&it, &u->left);
    while ((nd = map_next(&it))) {
        const struct uleft *l = nd->val;
        uint64_t ack = map_as_u64(map_get(&s->acks, nd->key, nd->klen));
        for (uint32_t k = 0; k < l->n; k++) { /* in seq order */
            const struct uleft_span *span = &l->s[k];
            uint64_t lo = ack + 1 > span->joined_seq ? ack + 1 : span->joined_seq;
            if (ack >= span->left_seq || lo > span->left_seq ||
                span->left_ts + STG_LEFT_KEEP_MS < now)
                continue;
            struct cu_part *p = &sp->cu[n++];
            memcpy(p->conv, nd->key, nd->klen);
            p->convlen = nd->klen;
            p->lo = lo;
            p->hi = span->left_seq;
        }
    }
    map_iter_init(&it, &u->convs);
    while ((nd = map_next(&it))) {
        struct uconv *uc = nd->val;
        uint64_t ack = map_as_u64(map_get(&s->acks, nd->key, nd->klen));
        const struct uleft *l = map_get(&u->left, nd->key, nd->klen);
        if (l && l->n && uc->joined_seq <= l->s[l->n - 1].left_seq)
            continue; /* removed since: its delivery is on its way, its part is the one above */
        if (ack >= uc->last_seq)
            continue; /* also an ack past the end */
        uint64_t lo = ack + 1 > uc->joined_seq ? ack + 1 : uc->joined_seq;
        if (uc->last_seq < lo)
            continue;
        struct cu_part *p = &sp->cu[n++];
        memcpy(p->conv, nd->key, nd->klen);
        p->convlen = nd->klen;
        p->lo = lo;
    }
    sp->ncu = n;
    /* the parts of one conversation next to each other, oldest span first */
    qsort(sp->cu, n, sizeof(*sp->cu), by_conv_then_span);
    finish_catchup(c, s);
}

static void on_acks(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct session *s = ctx;
    s->reads_out--;
    for (uint32_t i = 0; err == 0 && !s->closed && i < res->n; i++) {
        struct stg_view p[3];
        uint64_t v;
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, p, 3, NULL) < 0 ||
            val_u64_decode(res->kv[i].val, res->kv[i].vlen, &v) < 0)
            continue;
        /* a cursor stored past the conversation's end (acks were not bounded
         * before) counts up to its end: the device's next ack rewrites it */
        uint64_t bound =
            home_seq_bound(s->u, (struct strv){(const char *)p[2].p, (uint32_t)p[2].len});
        if (v > bound)
            v = bound;
        if (v > map_as_u64(map_get(&s->acks, p[2].p, (uint32_t)p[2].len)))
            map_put(&s->acks, p[2].p, (uint32_t)p[2].len, map_u64(v));
    }
    stg_result_free(res);
    if (!s->closed) {
        if (err < 0) {
            /* without its cursors the session cannot be served: the client reconnects */
            c->env.close(c->env.rt, s->conn, NULL);
        } else {
            if (c->env.ready)
                c->env.ready(c->env.rt, s->conn);
            if (s->state == S_CATCHUP)
                read_catchup(c, s);
        }
    }
    session_unref(c, s);
}

static void hello_ok(struct chat *c, struct session *s)
{
    struct strv uid = {s->u->id, s->u->idlen}, dev = {s->dev, s->devlen};
    if (enc_hello_ok(&c->fb, s->hello_id, uid, dev, c->env.cfg->heartbeat_ms, chat_now(c),
                     c->env.cfg->max_frame, c->env.shard) == 0)
        chat_send(c, s->conn, chat_frame(&c->fb));
    buf_reset(&c->fb);
}

static void session_start(struct chat *c, struct session *s)
{
    /* The hello ok goes out only now that the user's state is loaded: its
     * group conversations are in the online index, so from the moment the
     * device is told it is online every entry made durable reaches it (as a
     * push, or through the catch-up read below). Answered at hello time, a
     * group entry durable before the index had the user would never be
     * pushed to a session without resume. */
    hello_ok(c, s);
    if (s->resume) {
        s->state = S_CATCHUP;
    } else {
        /* no catch-up: deliveries held while the user's state loaded go out
         * now, live pushes start at once (PROTOCOL §4) */
        go_live(c, s);
        if (s->closed)
            return;
    }
    /* acks of an earlier session of this device may not be durable yet: they
     * are taken now, before the read, and the read only moves them forward */
    int rc = home_cursors_pending(c, (struct strv){s->u->id, s->u->idlen},
                                  (struct strv){s->dev, s->devlen}, &s->acks);
    if (rc == 0)
        rc = cursor_prefix(&c->kb, (struct strv){s->u->id, s->u->idlen},
                           (struct strv){s->dev, s->devlen});
    if (rc == 0)
        rc = io_scan_prefix_wait(c, STG_CF_CURSOR, c->kb.data, c->kb.len, NULL, 0, HOME_CONVS_MAX,
                                 on_acks, s, 0);
    if (rc == 0) {
        s->refs++;
        s->reads_out++;
    } else
        c->env.close(c->env.rt, s->conn, NULL);
}

/* ---- hello ---- */

void session_hello(struct chat *c, conn_id_t conn, struct strv user, struct strv device,
                   bool resume, uint32_t hello_id)
{
    struct user *u = home_user(c, user);
    bool fresh = !u;
    if (!u && !(u = user_new(c, user))) {
        chat_reply_err(c, conn, true, hello_id, -ENOMEM, NULL);
        c->env.close(c->env.rt, conn, NULL);
        return;
    }
    u->refs++;
    if (fresh)
        u->refs--; /* user_new's own reference becomes this call's */
    for (struct session *o = u->sessions; o; o = o->next) {
        if (o->devlen == device.len && memcmp(o->dev, device.p, device.len) == 0) {
            conn_id_t oc = o->conn;
            if (o->state == S_WAIT_USER)
                hello_ok(c, o); /* every hello is answered, then the bye follows */
            session_detach(c, o, true);
            c->env.close(c->env.rt, oc, "replaced");
            break;
        }
    }
    if (u->nsessions >= c->env.cfg->max_devices) {
        chat_reply_err(c, conn, true, hello_id, -EEXIST, "too many devices");
        c->env.close(c->env.rt, conn, NULL);
        user_unref(c, u);
        return;
    }
    struct session *s =
        device.len <= IDENT_DEVICE_MAX ? calloc(1, sizeof(*s) + device.len + 1) : NULL;
    if (s) {
        s->conn = conn;
        s->pre = calloc(1, sizeof(*s->pre));
    }
    if (!s || !s->pre || home_session_add(c, s) < 0) {
        if (s)
            free(s->pre);
        free(s);
        chat_reply_err(c, conn, true, hello_id, -ENOMEM, NULL);
        c->env.close(c->env.rt, conn, NULL);
        user_unref(c, u);
        return;
    }
    s->u = u; /* the call's user reference passes to the session */
    s->refs = 1;
    memcpy(s->dev, device.p, device.len);
    s->devlen = (uint8_t)device.len;
    s->resume = resume;
    s->hello_id = hello_id;
    s->state = S_WAIT_USER;
    map_init(&s->acks);
    map_init(&s->sent);
    map_init(&s->pre->caps);
    s->next = u->sessions;
    u->sessions = s;
    u->nsessions++;
    /* until the user's state is loaded the session only holds deliveries;
     * session_start answers the hello */
    if (u->state == U_READY) {
        session_start(c, s);
    } else if (u->state == U_FAILED) {
        chat_reply_err(c, conn, true, hello_id, -RP_ESTORAGE, "try again");
        c->env.close(c->env.rt, conn, NULL);
    }
}

/* ---- holding ---- */

int session_hold(struct chat *c, struct session *s, struct strv conv, uint64_t seq,
                 struct rbuf *frame)
{
    struct session_pre *p = s->pre;
    /* pushes held are pushes queued at go-live, behind up to half the queue's
     * bound of catch-up (a catch-up waits while the queue is past half) */
    if (p->nheld >= HOME_HELD_MAX || p->held_bytes + frame->len > c->env.cfg->outbound_limit / 2) {
        /* nothing is lost: the client reconnects and resumes from its ack
         * cursor. Every hello is answered, then the bye follows. */
        if (s->state == S_WAIT_USER)
            hello_ok(c, s);
        c->env.close(c->env.rt, s->conn, "slow");
        return -RP_EFULL;
    }
    struct held *h = malloc(sizeof(*h) + conv.len);
    if (!h)
        return -ENOMEM;
    h->next = NULL;
    h->frame = rbuf_ref(frame);
    h->seq = seq;
    h->convlen = conv.len;
    if (conv.len)
        memcpy(h->conv, conv.p, conv.len);
    if (p->held_tail)
        p->held_tail->next = h;
    else
        p->held_head = h;
    p->held_tail = h;
    p->nheld++;
    p->held_bytes += frame->len;
    return 0;
}

void session_on_drained(struct chat *c, conn_id_t conn)
{
    struct session *s = home_session(c, conn);
    if (!s || s->closed || !s->pre || !s->pre->cu_paused)
        return;
    s->pre->cu_paused = false;
    finish_catchup(c, s);
}
