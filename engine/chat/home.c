/*
 * The home role's requests and deliveries. Deliveries from owners arrive in
 * seq order per conversation (one owner, one ordered ring); home_push_entry
 * keeps, per session and conversation, the highest seq pushed, so that a seq
 * never goes out twice and never goes backwards, whatever catch-up already
 * sent.
 */
#include "engine/chat/home.h"

#include "engine/chat/core.h"
#include "engine/chat/friend.h"
#include "engine/chat/query.h"
#include "engine/chat/session.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The local users with a session who are members of one group conversation,
 * each with its entry of the conversation in the user's list (a fan-out needs
 * both; the entry lives exactly as long as the index holds the user). */
struct imember {
    struct user *u;
    struct uconv *uc;
};

struct idx {
    uint32_t n, cap;
    struct imember *m;
};

/* ---- cursors waiting for their write (struct curs) ---- */

/* Length of the (user, device) prefix of a cursor key, or 0 if malformed. */
static uint32_t curs_prefix_len(const void *k, uint32_t klen)
{
    const uint8_t *key = k;
    if (klen < 1 || klen < 2u + key[0])
        return 0;
    uint32_t plen = 2u + key[0] + key[1 + key[0]];
    return plen < klen ? plen : 0;
}

static void curs_init(struct curs *cs)
{
    map_init(&cs->devs);
    cs->n = 0;
}

static void curs_deinit(struct curs *cs)
{
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &cs->devs);
    while ((n = map_next(&it))) {
        map_deinit(n->val);
        free(n->val);
    }
    map_deinit(&cs->devs);
    cs->n = 0;
}

static struct map *curs_dev(const struct curs *cs, const void *key, uint32_t klen)
{
    uint32_t plen = curs_prefix_len(key, klen);
    return plen ? map_get(&cs->devs, key, plen) : NULL;
}

static struct map_node *curs_find(const struct curs *cs, const void *key, uint32_t klen)
{
    struct map *m = curs_dev(cs, key, klen);
    return m ? map_find(m, key, klen) : NULL;
}

/* Set key to v: false on ENOMEM or a malformed key. */
static bool curs_put(struct curs *cs, const void *key, uint32_t klen, uint64_t v)
{
    uint32_t plen = curs_prefix_len(key, klen);
    if (!plen)
        return false;
    struct map *m = map_get(&cs->devs, key, plen);
    if (!m) {
        m = calloc(1, sizeof(*m));
        if (!m || !map_put(&cs->devs, key, plen, m)) {
            free(m);
            return false;
        }
    }
    struct map_node *n = map_find(m, key, klen);
    if (n) {
        n->val = map_u64(v);
        return true;
    }
    if (!map_put(m, key, klen, map_u64(v))) {
        if (!map_count(m)) {
            map_del(&cs->devs, key, plen);
            free(m);
        }
        return false;
    }
    cs->n++;
    return true;
}

static void curs_del(struct curs *cs, const void *key, uint32_t klen)
{
    uint32_t plen = curs_prefix_len(key, klen);
    struct map *m = plen ? map_get(&cs->devs, key, plen) : NULL;
    if (!m || !map_find(m, key, klen))
        return;
    map_del(m, key, klen);
    cs->n--;
    if (!map_count(m)) {
        map_deinit(m);
        free(map_del(&cs->devs, key, plen));
    }
}

/* Every key of cs, device by device. */
struct curs_iter {
    struct map_iter devs, keys;
    bool in_dev;
};

static void curs_iter_init(struct curs_iter *it, const struct curs *cs)
{
    map_iter_init(&it->devs, &cs->devs);
    it->in_dev = false;
}

static struct map_node *curs_next(struct curs_iter *it)
{
    for (;;) {
        if (it->in_dev) {
            struct map_node *n = map_next(&it->keys);
            if (n)
                return n;
            it->in_dev = false;
        }
        struct map_node *d = map_next(&it->devs);
        if (!d)
            return NULL;
        map_iter_init(&it->keys, d->val);
        it->in_dev = true;
    }
}

int home_init(struct chat *c)
{
    imap_init(&c->home.users);
    imap_init(&c->home.conns);
    map_init(&c->home.index);
    curs_init(&c->home.cursors);
    curs_init(&c->home.written);
    map_init(&c->home.friend_keys);
    c->home.friend_gen_last = 0;
    buf_init(&c->home.sweep_from);
    buf_init(&c->home.sweep_page);
    c->home.sweep_failed = false;
    c->home.sweep_pause = c->home.sweep_wait = 0;
    c->home.sweep_loads = 0;
    c->home.sweep_state = 0; /* the sweep starts at the first tick */
    return 0;
}

void home_deinit(struct chat *c)
{
    session_free_all(c);
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, &c->home.index);
    while ((n = map_next(&it))) {
        struct idx *x = n->val;
        free(x->m);
        free(x);
    }
    map_deinit(&c->home.index);
    /* a stop whose grace ended while writes failed (a full disk): those
     * cursors move back at the next start, as after a crash */
    if (c->home.cursors.n || c->home.written.n)
        log_warn("chat_cursors_unwritten", "waiting=%zu writing=%zu", c->home.cursors.n,
                 c->home.written.n);
    curs_deinit(&c->home.cursors);
    curs_deinit(&c->home.written);
    friend_deinit(c);
}

/* The home's tables index users and sessions through links inside them.
 * Users by the seeded hash of struct map (user ids can be names people pick,
 * so chains must not be predictable); sessions by their connection id,
 * mixed so that consecutive ids spread over the slots. */
static uint64_t mix(uint64_t h)
{
    return (h * 0x9e3779b97f4a7c15ull) >> 29;
}

static uint64_t user_hash(const char *id, size_t len)
{
    return map_hash(id, (uint32_t)len);
}

static uint64_t user_link_hash(const struct ilink *l)
{
    const struct user *u = (const struct user *)((const char *)l - offsetof(struct user, by_id));
    return user_hash(u->id, u->idlen);
}

static uint64_t session_link_hash(const struct ilink *l)
{
    const struct session *s =
        (const struct session *)((const char *)l - offsetof(struct session, by_conn));
    return mix(s->conn);
}

struct user *home_user(struct chat *c, struct strv id)
{
    for (struct ilink *l = imap_chain(&c->home.users, user_hash(id.p, id.len)); l; l = l->next) {
        struct user *u = (struct user *)((char *)l - offsetof(struct user, by_id));
        if (u->idlen == id.len && memcmp(u->id, id.p, id.len) == 0)
            return u;
    }
    return NULL;
}

struct session *home_session(struct chat *c, conn_id_t conn)
{
    for (struct ilink *l = imap_chain(&c->home.conns, mix(conn)); l; l = l->next) {
        struct session *s = (struct session *)((char *)l - offsetof(struct session, by_conn));
        if (s->conn == conn)
            return s;
    }
    return NULL;
}

int home_user_add(struct chat *c, struct user *u)
{
    return imap_add(&c->home.users, &u->by_id, user_hash(u->id, u->idlen), user_link_hash);
}

void home_user_remove(struct chat *c, struct user *u)
{
    imap_remove(&c->home.users, &u->by_id, user_hash(u->id, u->idlen));
}

int home_session_add(struct chat *c, struct session *s)
{
    return imap_add(&c->home.conns, &s->by_conn, mix(s->conn), session_link_hash);
}

void home_session_remove(struct chat *c, struct session *s)
{
    imap_remove(&c->home.conns, &s->by_conn, mix(s->conn));
}

int home_index_add(struct chat *c, struct strv conv, struct user *u, struct uconv *uc)
{
    struct idx *x = map_get(&c->home.index, conv.p, conv.len);
    if (!x) {
        x = calloc(1, sizeof(*x));
        if (!x || !map_put(&c->home.index, conv.p, conv.len, x)) {
            free(x);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < x->n; i++) {
        if (x->m[i].u == u) {
            x->m[i].uc = uc;
            return 0;
        }
    }
    if (x->n == x->cap) {
        uint32_t nc = x->cap ? x->cap * 2 : 4;
        struct imember *nm = realloc(x->m, nc * sizeof(*nm));
        if (!nm)
            return -ENOMEM;
        x->m = nm;
        x->cap = nc;
    }
    x->m[x->n++] = (struct imember){u, uc};
    return 0;
}

void home_index_del(struct chat *c, struct strv conv, struct user *u)
{
    struct idx *x = map_get(&c->home.index, conv.p, conv.len);
    if (!x)
        return;
    for (uint32_t i = 0; i < x->n; i++) {
        if (x->m[i].u == u) {
            x->m[i] = x->m[--x->n];
            break;
        }
    }
    if (!x->n) {
        map_del(&c->home.index, conv.p, conv.len);
        free(x->m);
        free(x);
    }
}

struct uconv *home_uconv_put(struct chat *c, struct user *u, struct strv conv, uint8_t kind,
                             uint64_t joined_seq)
{
    struct uconv *uc = map_get(&u->convs, conv.p, conv.len);
    if (!uc) {
        uc = calloc(1, sizeof(*uc));
        if (!uc || !map_put(&u->convs, conv.p, conv.len, uc)) {
            free(uc);
            return NULL;
        }
        if (kind == CONV_GROUP && home_index_add(c, conv, u, uc) < 0) {
            map_del(&u->convs, conv.p, conv.len);
            free(uc);
            return NULL;
        }
    }
    uc->kind = kind;
    uc->joined_seq = joined_seq;
    map_del(&u->gone, conv.p, conv.len);
    return uc;
}

/* The time of the latest removal recorded for a group. */
static uint64_t left_latest(const struct uleft *l)
{
    return l->n ? l->s[l->n - 1].left_ts : 0;
}

void home_left_put(struct user *u, struct strv conv, uint64_t left_seq, uint64_t joined_seq,
                   uint64_t left_ts)
{
    if (!joined_seq)
        return; /* where the user's part began is unknown: nothing is sent */
    struct uleft *l = map_get(&u->left, conv.p, conv.len);
    if (!l) {
        if (map_count(&u->left) >= HOME_LEFT_MAX) {
            /* full: the group removed from longest ago makes room (a rare, linear walk) */
            struct map_iter it;
            struct map_node *n, *oldest = NULL;
            map_iter_init(&it, &u->left);
            while ((n = map_next(&it)))
                if (!oldest || left_latest(n->val) < left_latest(oldest->val))
                    oldest = n;
            if (!oldest || left_latest(oldest->val) > left_ts)
                return;
            free(map_del(&u->left, oldest->key, oldest->klen));
        }
        l = calloc(1, sizeof(*l));
        if (!l || !map_add(&u->left, conv.p, conv.len, l)) {
            free(l);
            return; /* then a device offline now learns it from history's forbidden */
        }
    }
    uint32_t i = 0;
    while (i < l->n && l->s[i].left_seq < left_seq)
        i++;
    if (i < l->n && l->s[i].left_seq == left_seq)
        return; /* known */
    if (l->n == HOME_LEFT_SPANS) {
        if (i == 0)
            return; /* older than every kept one */
        memmove(&l->s[0], &l->s[1], (size_t)(i - 1) * sizeof(l->s[0]));
        i--;
    } else {
        memmove(&l->s[i + 1], &l->s[i], (size_t)(l->n - i) * sizeof(l->s[0]));
        l->n++;
    }
    l->s[i] = (struct uleft_span){left_seq, joined_seq, left_ts};
}

void home_uconv_del(struct chat *c, struct user *u, struct strv conv, uint64_t left_seq)
{
    struct uconv *uc = map_del(&u->convs, conv.p, conv.len);
    if (u->state == U_LOADING)
        map_put(&u->gone, conv.p, conv.len, map_u64(1));
    if (left_seq && conv.p[0] == 'g')
        home_left_put(u, conv, left_seq, uc ? uc->joined_seq : 0, chat_now(c));
    if (!uc)
        return;
    if (uc->kind == CONV_GROUP)
        home_index_del(c, conv, u);
    free(uc);
}

/* Put a cursor with those waiting for their write; the first starts the wait. */
static bool cursor_wait(struct chat *c, const void *key, uint32_t klen, uint64_t seq)
{
    if (!c->home.cursors.n)
        c->home.cursors_since = chat_now(c);
    return curs_put(&c->home.cursors, key, klen, seq);
}

void home_cursor_set(struct chat *c, struct strv user, struct strv dev, struct strv conv,
                     uint64_t seq)
{
    if (stg_key_cursor(&c->kb, user.p, user.len, dev.p, dev.len, conv.p, conv.len) < 0)
        return;
    struct map_node *n = curs_find(&c->home.cursors, c->kb.data, (uint32_t)c->kb.len);
    if (n && map_as_u64(n->val) >= seq)
        return;
    if (!cursor_wait(c, c->kb.data, (uint32_t)c->kb.len, seq))
        log_warn("chat_cursor_oom", "user=%.*s", (int)user.len, user.p);
}

static void on_cursors_done(struct chat *c, void *ctx, int err)
{
    struct curs *m = ctx;
    struct curs_iter wi;
    struct map_node *wn;
    curs_iter_init(&wi, m);
    while ((wn = curs_next(&wi))) {
        /* no longer in flight, unless a newer value of the key is */
        struct map_node *w = curs_find(&c->home.written, wn->key, wn->klen);
        if (w && map_as_u64(w->val) <= map_as_u64(wn->val))
            curs_del(&c->home.written, wn->key, wn->klen);
    }
    if (err < 0) {
        /* keep them for a later batch, never moving a newer value back: one
         * staged, or one in flight (a later batch, which is not failed with
         * this one, and puts its own value back if it fails); not at once,
         * or a full disk would be retried on every pass of the loop */
        c->home.cursors_retry = chat_now(c) + HOME_CURSORS_RETRY_MS;
        struct curs_iter it;
        struct map_node *n;
        curs_iter_init(&it, m);
        while ((n = curs_next(&it))) {
            struct map_node *cur = curs_find(&c->home.cursors, n->key, n->klen);
            struct map_node *w = curs_find(&c->home.written, n->key, n->klen);
            if ((!cur || map_as_u64(cur->val) < map_as_u64(n->val)) &&
                (!w || map_as_u64(w->val) < map_as_u64(n->val)))
                cursor_wait(c, n->key, n->klen, map_as_u64(n->val));
        }
    }
    curs_deinit(m);
    free(m);
}

void home_stage(struct chat *c)
{
    size_t n_waiting = c->home.cursors.n;
    if (!n_waiting)
        return;
    uint64_t now = chat_now(c);
    if (now < c->home.cursors_retry)
        return;
    if (!c->stopping && n_waiting < HOME_CURSORS_EAGER &&
        now - c->home.cursors_since < c->env.cfg->cursor_delay_ms)
        return;
    struct curs *m = malloc(sizeof(*m));
    struct stg_batch *b = io_batch(c);
    if (!m || !b) {
        free(m);
        return;
    }
    *m = c->home.cursors;
    if (io_on_commit(c, on_cursors_done, m) < 0) {
        free(m);
        return;
    }
    curs_init(&c->home.cursors);
    struct curs_iter it;
    struct map_node *n;
    curs_iter_init(&it, m);
    while ((n = curs_next(&it))) {
        buf_reset(&c->vb);
        struct map_node *w = curs_find(&c->home.written, n->key, n->klen);
        if (w && map_as_u64(w->val) < map_as_u64(n->val))
            w->val = n->val;
        else if (!w && !curs_put(&c->home.written, n->key, n->klen, map_as_u64(n->val)))
            log_warn("chat_cursor_oom", "written=%zu", c->home.written.n);
        if (val_u64_encode(&c->vb, map_as_u64(n->val)) < 0 ||
            stg_batch_put(b, STG_CF_CURSOR, n->key, n->klen, c->vb.data, c->vb.len) < 0) {
            io_poison(c);
            return;
        }
    }
}

/* Into out (conv -> seq): the values of src's keys under prefix k. */
static int pending_from(const struct curs *src, const struct buf *k, struct map *out)
{
    struct map *m = map_get(&src->devs, k->data, (uint32_t)k->len);
    if (!m)
        return 0;
    struct map_iter it;
    struct map_node *n;
    map_iter_init(&it, m);
    while ((n = map_next(&it))) {
        struct stg_view p[3];
        if (stg_key_split(n->key, n->klen, p, 3, NULL) < 0)
            continue;
        uint64_t v = map_as_u64(n->val);
        if (v > map_as_u64(map_get(out, p[2].p, (uint32_t)p[2].len)) &&
            !map_put(out, p[2].p, (uint32_t)p[2].len, map_u64(v)))
            return -ENOMEM;
    }
    return 0;
}

int home_cursors_pending(struct chat *c, struct strv user, struct strv dev, struct map *out)
{
    if (!c->home.cursors.n && !c->home.written.n)
        return 0;
    /* the (user, dev) prefix of cursor keys: the two encoded strings */
    struct buf k, t;
    buf_init(&k);
    buf_init(&t);
    int rc = stg_key_prefix(&k, user.p, user.len);
    if (rc == 0)
        rc = stg_key_prefix(&t, dev.p, dev.len);
    if (rc == 0)
        rc = buf_append(&k, t.data, t.len);
    buf_deinit(&t);
    if (rc == 0)
        rc = pending_from(&c->home.cursors, &k, out);
    if (rc == 0)
        rc = pending_from(&c->home.written, &k, out);
    buf_deinit(&k);
    return rc;
}

/* ---- pushing ---- */

void home_push_entry(struct chat *c, struct session *s, struct strv conv, uint64_t seq,
                     struct rbuf *frame)
{
    if (s->closed)
        return;
    if (s->state != S_LIVE) {
        session_hold(c, s, conv, seq, frame);
        return;
    }
    struct map_node *n = map_find(&s->sent, conv.p, conv.len);
    if (n && map_as_u64(n->val) >= seq)
        return;
    if (n)
        n->val = map_u64(seq);
    else
        map_put(&s->sent, conv.p, conv.len, map_u64(seq));
    if (chat_push(c, s->conn, frame) == 0)
        c->stats.deliveries++;
}

void home_push_user(struct chat *c, struct user *u, struct strv except, struct rbuf *frame)
{
    /* a session whose hello is not answered yet gets nothing before the ok
     * (it reads this state with its user's); one catching up gets it after
     * synced, behind the entries held with it */
    for (struct session *s = u->sessions; s; s = s->next) {
        if (s->closed || s->state == S_WAIT_USER ||
            strv_eq((struct strv){s->dev, s->devlen}, except))
            continue;
        if (s->state == S_CATCHUP)
            session_hold(c, s, (struct strv){NULL, 0}, 0, frame);
        else
            chat_push(c, s->conn, frame);
    }
}

/* Offers d to u's sessions; uc is u's entry of d->conv when the caller has it
 * (NULL: looked up). Returns whether it was offered to any (online, or
 * logging in; the sending device does not count). */
static bool push_to_user(struct chat *c, struct user *u, struct uconv *uc, const struct dlv *d)
{
    if (!uc)
        uc = map_get(&u->convs, d->conv.p, d->conv.len);
    if (!uc && d->conv.p[0] == 'd')
        uc = home_uconv_put(c, u, d->conv, CONV_DIRECT, 1);
    /* An entry from before u joined: a login may read the membership from
     * storage before this shard has the entries committed ahead of the join. */
    if (uc && d->seq < uc->joined_seq)
        return false;
    if (uc && d->seq > uc->last_seq) {
        uc->last_seq = d->seq;
        uc->last_ts = d->ts;
    }
    bool self = strv_eq((struct strv){u->id, u->idlen}, d->from), offered = false;
    for (struct session *s = u->sessions; s; s = s->next) {
        if (self && d->dev.len && strv_eq((struct strv){s->dev, s->devlen}, d->dev))
            continue; /* the sending device has it already */
        home_push_entry(c, s, d->conv, d->seq, d->frame);
        offered = true;
    }
    return offered;
}

void home_on_deliver(struct chat *c, struct dlv *d)
{
    bool online = false;
    for (uint32_t i = 0; i < d->nadds; i++) {
        struct user *u = home_user(c, d->adds[i].user);
        struct uconv *uc =
            u ? home_uconv_put(c, u, d->conv, CONV_GROUP, d->adds[i].joined_seq) : NULL;
        if (uc)
            uc->role = d->adds[i].role;
    }
    if (d->conv.p[0] == 'd') {
        struct strv a, b;
        if (ident_conv_parse(d->conv, &a, &b) == CONV_DIRECT) {
            struct user *ua = home_user(c, a), *ub = strv_eq(a, b) ? NULL : home_user(c, b);
            if (ua)
                online |= push_to_user(c, ua, NULL, d);
            if (ub)
                online |= push_to_user(c, ub, NULL, d);
        }
    } else {
        struct idx *x = map_get(&c->home.index, d->conv.p, d->conv.len);
        for (uint32_t i = 0; x && i < x->n; i++)
            online |= push_to_user(c, x->m[i].u, x->m[i].uc, d);
    }
    if (online) { /* the delay until a push could go out: offline members have none */
        static const uint32_t bounds[CHAT_LAT_N] = CHAT_LAT_BOUNDS_MS;
        uint64_t now = chat_now(c), lat = now > d->ts ? now - d->ts : 0;
        chat_hist_add(c->stats.push_latency_hist, bounds, CHAT_LAT_N, lat);
        c->stats.push_latency_sum_ms += lat;
    }
    for (uint32_t i = 0; i < d->ndels; i++) {
        struct user *u = home_user(c, d->dels[i].user);
        if (!u)
            continue;
        /* a catch-up being read may hold entries past the removal */
        for (struct session *s = u->sessions; s; s = s->next)
            if (s->state == S_CATCHUP && s->pre)
                map_put(&s->pre->caps, d->conv.p, d->conv.len, map_u64(d->seq));
        home_uconv_del(c, u, d->conv, d->frame ? d->seq : 0);
    }
    rbuf_unref(d->frame);
    free(d);
}

/* Sending implies reading: r's author has read its conversation up to
 * r->read_seq. */
static void read_by_sending(struct chat *c, const struct rpl *r)
{
    /* an admin send has no frame and no connection (conn 0 is not a session) */
    struct session *s = r->frame ? home_session(c, r->conn) : NULL;
    struct user *u = s ? s->u : home_user(c, r->user);
    struct uconv *uc = u ? map_get(&u->convs, r->conv.p, r->conv.len) : NULL;
    /* compared with the cursor as clients see it (a member invited back has
     * a fresh entry: its read_seq is 0 until a read, the stored one higher) */
    if (r->retry && (!u || u->state != U_READY || !uc || r->read_seq <= home_read_seq(uc)))
        return;
    if (u && !uc && r->conv.p[0] == 'd')
        uc = home_uconv_put(c, u, r->conv, CONV_DIRECT, 1);
    if (uc) {
        if (r->read_seq > uc->last_seq)
            uc->last_seq = r->read_seq;
        if (r->read_seq > uc->read_seq)
            uc->read_seq = r->read_seq;
    }
    home_cursor_set(c, r->user, strv_c(VAL_READ_DEVICE), r->conv, r->read_seq);
}

void home_on_reply(struct chat *c, struct rpl *r)
{
    if (r->read_seq)
        read_by_sending(c, r);
    if (r->frame) {
        c->env.send(c->env.rt, r->conn, r->frame);
        rbuf_unref(r->frame);
    }
    free(r);
}

void home_on_user_frame(struct chat *c, struct ufr *f)
{
    struct user *u = home_user(c, f->user);
    if (u)
        home_push_user(c, u, f->except_dev, f->frame);
    rbuf_unref(f->frame);
    free(f);
}

/* ---- requests answered here ---- */

/* The highest seq a device of u can have received in conv: the conversation's
 * last seq as the home knows it, or for a group u was removed from its last
 * removal event; 0 when conv is not u's. */
uint64_t home_seq_bound(const struct user *u, struct strv conv)
{
    const struct uconv *uc = map_get(&u->convs, conv.p, (uint32_t)conv.len);
    if (uc)
        return uc->last_seq;
    const struct uleft *l = map_get(&u->left, conv.p, (uint32_t)conv.len);
    return l && l->n ? l->s[l->n - 1].left_seq : 0;
}

uint64_t home_read_seq(const struct uconv *uc)
{
    uint64_t floor = uc->joined_seq ? uc->joined_seq - 1 : 0;
    uint64_t rd = uc->read_seq > floor ? uc->read_seq : floor;
    return rd < uc->last_seq ? rd : uc->last_seq;
}

/* An ack past what exists is taken as an ack of the last entry: kept as it
 * came, it would count entries not yet written as received, and this
 * device would miss them. */
static void do_ack(struct chat *c, struct session *s, const struct req *r)
{
    struct strv me = {s->u->id, s->u->idlen};
    uint64_t bound = home_seq_bound(s->u, r->conv);
    if (bound == 0)
        return; /* not one of the user's conversations: ignored (ack has no reply) */
    uint64_t seq = r->seq < bound ? r->seq : bound;
    struct map_node *n = map_find(&s->acks, r->conv.p, r->conv.len);
    if (n && map_as_u64(n->val) >= seq)
        return;
    if (n)
        n->val = map_u64(seq);
    else if (!map_put(&s->acks, r->conv.p, r->conv.len, map_u64(seq)))
        return;
    home_cursor_set(c, me, (struct strv){s->dev, s->devlen}, r->conv, seq);
}

static void do_read(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    struct strv me = {u->id, u->idlen};
    struct uconv *uc = map_get(&u->convs, r->conv.p, r->conv.len);
    if (!uc) {
        chat_reply_err(c, s->conn, true, r->id, -ENOENT, "no such conversation");
        return;
    }
    /* compared with the cursor as sync reports it: a read at or below a
     * member's joined_seq - 1 moves nothing a client can see, and its push
     * would tell the other devices less than sync does */
    uint64_t seq = r->seq < uc->last_seq ? r->seq : uc->last_seq;
    if (seq > home_read_seq(uc)) {
        uc->read_seq = seq;
        home_cursor_set(c, me, strv_c(VAL_READ_DEVICE), r->conv, seq);
        if (enc_read_push(&c->fb, r->conv, me, seq) == 0) {
            struct rbuf *f = chat_frame(&c->fb);
            if (f) {
                home_push_user(c, u, (struct strv){s->dev, s->devlen}, f);
                struct strv a, b;
                if (uc->kind == CONV_DIRECT && ident_conv_parse(r->conv, &a, &b) == CONV_DIRECT &&
                    !strv_eq(a, b)) {
                    struct strv peer = strv_eq(a, me) ? b : a;
                    struct ufr *p = ufr_new(rbuf_ref(f), peer, (struct strv){"", 0});
                    if (!p || xfer_send(c, xfer_home(c, peer), XK_USER_FRAME, 0, p) < 0) {
                        if (p)
                            rbuf_unref(p->frame);
                        else
                            rbuf_unref(f);
                        free(p);
                    }
                }
                rbuf_unref(f);
            }
        }
        buf_reset(&c->fb);
    }
    chat_reply_ok(c, s->conn, r->id);
}

/* Forward a request to the owner of conv. */
static void forward_as(struct chat *c, struct session *s, const struct req *r, struct strv conv,
                       bool not_friends)
{
    if (xfer_congested(c)) {
        chat_reply_err(c, s->conn, r->has_id, r->id, -RP_EFULL, "server busy");
        return;
    }
    struct fwd *f = fwd_new(r, (struct strv){s->u->id, s->u->idlen},
                            (struct strv){s->dev, s->devlen}, conv, s->conn, c->env.shard);
    if (f)
        f->not_friends = not_friends;
    if (!f || xfer_send(c, xfer_owner(c, conv), XK_FWD, 0, f) < 0) {
        free(f);
        chat_reply_err(c, s->conn, r->has_id, r->id, -ENOMEM, NULL);
    }
}

static void forward(struct chat *c, struct session *s, const struct req *r, struct strv conv)
{
    forward_as(c, s, r, conv, false);
}

/* A direct send between users who are not friends (dm_policy friends) still
 * goes to the owner, marked: a retry of a send accepted while they were gets
 * its original back (dedup comes first), anything else "not friends". */
static void do_send(struct chat *c, struct session *s, const struct req *r)
{
    char conv[IDENT_CONV_MAX];
    struct strv me = {s->u->id, s->u->idlen};
    bool not_friends = false;
    uint32_t n;
    if (r->to.len) {
        if (c->env.cfg->dm_friends_only && !strv_eq(r->to, me)) {
            struct ufriend *f = map_get(&s->u->friends, r->to.p, r->to.len);
            not_friends = !f || f->state != FRIEND_YES;
        }
        n = ident_conv_direct(conv, me, r->to);
    } else {
        n = ident_conv_group(conv, r->group);
    }
    forward_as(c, s, r, (struct strv){conv, n}, not_friends);
}

static void do_conv_op(struct chat *c, struct session *s, const struct req *r)
{
    struct strv a, b, me = {s->u->id, s->u->idlen};
    enum conv_kind k = ident_conv_parse(r->conv, &a, &b);
    if (k == CONV_BAD) {
        chat_reply_err(c, s->conn, true, r->id, -RP_EREQUEST, "bad conv");
        return;
    }
    if (k == CONV_DIRECT && !strv_eq(a, me) && !strv_eq(b, me)) {
        chat_reply_err(c, s->conn, true, r->id, -EPERM, "not a member");
        return;
    }
    forward(c, s, r, r->conv);
}

static void do_group_op(struct chat *c, struct session *s, const struct req *r)
{
    char conv[IDENT_CONV_MAX];
    struct req copy = *r;
    char gid[IDENT_USER_MAX + 1];
    if (r->op == OP_GROUP_CREATE && !r->group.len) {
        /* A generated id: unique per shard and time, so no lookup is needed,
         * and with 64 bits keyed by a secret of this run, so that no one can
         * take the ids a shard will generate next before it does (nor can an
         * earlier run's, should the clock have gone back). */
        int n = snprintf(gid, sizeof(gid), "g%llx-%u-%llx", (unsigned long long)chat_now(c),
                         c->env.shard, (unsigned long long)++c->gid_counter);
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        if (!HMAC(EVP_sha256(), c->env.cfg->gid_key, (int)sizeof(c->env.cfg->gid_key),
                  (const uint8_t *)gid, (size_t)n, mac, &maclen) ||
            maclen < 8) {
            chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
            return;
        }
        for (unsigned i = 0; i < 8; i++)
            n += snprintf(gid + n, sizeof(gid) - (size_t)n, i ? "%02x" : "-%02x", mac[i]);
        copy.group = (struct strv){gid, (uint32_t)n};
    }
    uint32_t n = ident_conv_group(conv, copy.group);
    forward(c, s, &copy, (struct strv){conv, n});
}

void home_on_request(struct chat *c, conn_id_t conn, const struct req *r)
{
    struct session *s = home_session(c, conn);
    if (!s)
        return;
    switch (r->op) {
    case OP_SEND:
        do_send(c, s, r);
        break;
    case OP_ACK:
        do_ack(c, s, r);
        break;
    case OP_READ:
        do_read(c, s, r);
        break;
    case OP_RECALL:
        do_conv_op(c, s, r);
        break;
    case OP_SYNC:
        query_sync(c, s, r);
        break;
    case OP_HISTORY:
        query_history(c, s, r);
        break;
    case OP_GROUP_LIST:
        query_group_list(c, s, r);
        break;
    case OP_FRIEND_REQUEST:
    case OP_FRIEND_ACCEPT:
    case OP_FRIEND_REMOVE:
    case OP_FRIEND_LIST:
        friend_on_request(c, s, r);
        break;
    case OP_GROUP_CREATE:
    case OP_GROUP_INVITE:
    case OP_GROUP_JOIN:
    case OP_GROUP_KICK:
    case OP_GROUP_LEAVE:
    case OP_GROUP_DISMISS:
    case OP_GROUP_UPDATE:
    case OP_GROUP_ADMIN:
    case OP_GROUP_NICK:
    case OP_GROUP_REMARK:
    case OP_GROUP_INFO:
    case OP_GROUP_MEMBERS:
        do_group_op(c, s, r);
        break;
    default:
        chat_reply_err(c, conn, r->has_id, r->id, -RP_EREQUEST, "unexpected op");
        break;
    }
}
