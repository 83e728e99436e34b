/*
 * The owner role (see owner.h for the invariants). A conversation moves
 * through: LOADING (its metadata and members are being read; requests queue)
 * -> READY. Each queued request may need one storage read before it can be
 * staged (a send: its dedup record; a recall: the target entry). A send's
 * read is issued as soon as the conversation is READY, in parallel with the
 * others; a recall's only when it is next to be staged, so that it sees every
 * earlier recall. Staging always takes the queue head first, so requests are
 * sequenced in arrival order.
 */
#include "engine/chat/owner.h"

#include "engine/chat/backend.h"
#include "engine/chat/core.h"
#include "engine/chat/group.h"
#include "engine/chat/recall.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* DD_SKIP: a send of a conversation whose memory was authoritative when it came */
enum { DD_NONE, DD_PENDING, DD_MISS, DD_HIT, DD_SKIP };

/*
 * A dedup record in memory; rec is set while its entry is not yet durable.
 * node is its entry in cv->dedup (whose key bytes it reuses); prev/next link
 * it into the shard's expiry queue.
 */
struct odedup {
    uint64_t seq, ts;
    /* when it was made, by dd_clock: what the expiry queue is ordered and
     * aged by (ts follows the conversation's last ts, which can be ahead of
     * the clock) */
    uint64_t born;
    struct orec *rec;
    struct oconv *cv;
    struct map_node *node;
    struct odedup *prev, *next;
};

/* One staged unit: an entry (or a change with no entry) awaiting durability. */
struct orec {
    struct oconv *cv;
    struct fwd *f;       /* the request; freed with the record */
    struct fwd *dups;    /* sends with the same cmid, answered with dup:true */
    uint64_t seq, ts;    /* 0: no entry */
    struct rbuf *entry;  /* the msg push frame, when seq */
    struct rbuf *reply;  /* the ok frame */
    struct ochange *chg; /* group change, applied when durable */
    struct odedup *dd;   /* a send's dedup record (points back here while in flight) */
    bool barrier, is_send;
};

#define DD_KEY_MAX (1 + 64 + 64)

/* The in-memory dedup key: len(sender) | sender | cmid; returns its length. */
static uint32_t dedup_key(char *k, struct strv user, struct strv cmid)
{
    uint32_t ul = user.len > 64 ? 64 : user.len, cl = cmid.len > 64 ? 64 : cmid.len;
    k[0] = (char)ul;
    memcpy(k + 1, user.p, ul);
    memcpy(k + 1 + ul, cmid.p, cl);
    return 1 + ul + cl;
}

/* The window storage ages records by (its default when the config has none). */
static uint64_t dd_window(struct chat *c)
{
    uint64_t w = c->env.cfg->dedup_window_ms;
    return w ? w : 86400000u;
}

/* Whether a record of an entry stamped ts is past the window at now (ms):
 * storage's test for the records it holds (storage/db.c), so that memory and
 * storage agree to the millisecond. */
static bool dd_expired(struct chat *c, uint64_t ts, uint64_t now)
{
    return now > ts && now - ts > dd_window(c);
}

/* The expiry queue's clock (ms): it never goes back, so the queue stays in
 * time order and a clock that was ahead once holds no record back. */
static uint64_t dd_clock(struct chat *c)
{
    struct owner *o = &c->owner;
    uint64_t now = chat_now(c);
    if (now > o->dd_wall)
        o->dd_mono += now - o->dd_wall;
    o->dd_wall = now;
    return o->dd_mono;
}

/* A new record for key in cv, appended to the expiry queue; NULL on ENOMEM. */
static struct odedup *dd_add(struct chat *c, struct oconv *cv, const char *k, uint32_t kl,
                             uint64_t ts)
{
    struct odedup *d = calloc(1, sizeof(*d));
    /* callers looked the key up and found nothing */
    struct map_node *n = d ? map_add(&cv->dedup, k, kl, d) : NULL;
    if (!n) {
        free(d);
        return NULL;
    }
    d->cv = cv;
    d->node = n;
    d->ts = ts;
    d->born = dd_clock(c);
    struct owner *o = &c->owner;
    d->prev = o->dq_tail;
    if (o->dq_tail)
        o->dq_tail->next = d;
    else
        o->dq_head = d;
    o->dq_tail = d;
    o->ndedup++;
    return d;
}

/* Unlink d from the queue and its conversation's map, and free it. */
static void dd_drop(struct chat *c, struct odedup *d)
{
    struct owner *o = &c->owner;
    if (d->prev)
        d->prev->next = d->next;
    else
        o->dq_head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        o->dq_tail = d->prev;
    map_del(&d->cv->dedup, d->node->key, d->node->klen);
    o->ndedup--;
    free(d);
}

/* Until when (ms) sends of cv must ask storage about a cmid memory does not know. */
void owner_dd_must_read(struct chat *c, struct oconv *cv, uint64_t rec_ts)
{
    uint64_t until = rec_ts + dd_window(c);
    if (until > cv->dd_read_until)
        cv->dd_read_until = until;
}

int owner_init(struct chat *c)
{
    map_init(&c->owner.convs);
    c->owner.ready_head = NULL;
    c->owner.ndedup = 0;
    c->owner.queued_bytes = 0;
    c->owner.dedup_max = OWNER_DEDUP_MAX;
    c->owner.dedup_hard = c->env.cfg->dedup_memory ? c->env.cfg->dedup_memory : OWNER_DEDUP_HARD;
    c->owner.dq_head = c->owner.dq_tail = NULL;
    c->owner.dd_mono = c->owner.dd_wall = 0;
    return 0;
}

void owner_deinit(struct chat *c)
{
    struct map_iter it;
    map_iter_init(&it, &c->owner.convs);
    struct map_node *n;
    while ((n = map_next(&it)))
        owner_conv_free(c, n->val);
    map_deinit(&c->owner.convs);
}

static void members_clear(struct oconv *cv)
{
    struct map_iter it;
    map_iter_init(&it, &cv->members);
    struct map_node *n;
    while ((n = map_next(&it))) {
        struct omember *m = n->val;
        free(m->nick);
        free(m->remark);
        free(m);
    }
    map_deinit(&cv->members);
}

void owner_conv_free(struct chat *c, struct oconv *cv)
{
    struct map_iter it;
    map_iter_init(&it, &cv->dedup);
    struct map_node *n;
    while ((n = map_next(&it)))
        dd_drop(c, n->val);
    map_deinit(&cv->dedup);
    members_clear(cv);
    while (cv->qhead) {
        struct fwd *f = cv->qhead;
        cv->qhead = f->next;
        c->owner.queued_bytes -= owner_fwd_cost(f);
        if (f->extra_ptr)
            stg_result_free(f->extra_ptr);
        free(f);
    }
    free(cv->name);
    free(cv->notice);
    free(cv->owner);
    free(cv->home_count);
    free(cv);
}

struct omember *owner_member(struct oconv *cv, struct strv user)
{
    return map_get(&cv->members, user.p, user.len);
}

/* ---- per-request reads (dedup lookups, recall targets) ---- */

static void aux_read(struct chat *c, struct oconv *cv, struct fwd *f);

static void on_aux(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct fwd *f = ctx;
    struct oconv *cv = (struct oconv *)(uintptr_t)arg;
    f->dd_state = DD_MISS;
    if (err == -ENOENT && f->dd_stale) {
        /* the read may have run before a record that has left memory since
         * was durable: its "not found" says nothing about that record */
        f->dd_state = DD_NONE;
        aux_read(c, cv, f);
        if (f->dd_state == DD_PENDING)
            return;
    } else if (err == 0 && f->req.op == OP_SEND) {
        if (val_dedup_decode(res->kv[0].val, res->kv[0].vlen, &f->dd_ts, &f->dd_seq) == 0)
            f->dd_state = DD_HIT;
        stg_result_free(res);
    } else if (err == 0) {
        f->extra_ptr = res; /* the recall target entry */
        f->dd_state = DD_HIT;
    } else if (err != -ENOENT) {
        f->extra = (uint64_t)-err; /* a failed read: the request gets `unavailable` */
    }
    if (cv->qhead == f)
        owner_mark_ready(c, cv);
}

static void aux_read(struct chat *c, struct oconv *cv, struct fwd *f)
{
    int rc;
    if (f->dd_state != DD_NONE && !(f->dd_state == DD_SKIP && f->req.op == OP_SEND))
        return;
    if (f->req.op == OP_SEND) {
        char k[DD_KEY_MAX];
        if (chat_now(c) > cv->dd_read_until) {
            f->dd_state = DD_SKIP;
            return; /* memory holds every live record of cv */
        }
        /* a live record was evicted since this send came: it is checked again */
        f->dd_state = DD_NONE;
        if (map_get(&cv->dedup, k, dedup_key(k, f->user, f->req.cmid)))
            return; /* known here (checked again when staged) */
        c->owner.dd_reads++;
        rc = stg_key_dedup(&c->kb, cv->id, cv->idlen, f->user.p, f->user.len, f->req.cmid.p,
                           f->req.cmid.len);
    } else if (f->req.op == OP_RECALL) {
        /* only when it is next to be staged: an earlier recall of the same
         * entry, a barrier, is durable by then */
        if (cv->qhead != f || cv->barrier)
            return;
        rc = stg_key_log(&c->kb, cv->id, cv->idlen, f->req.seq);
    } else {
        return;
    }
    f->dd_state = DD_PENDING;
    f->dd_stale = false; /* set again if a record leaves memory while it runs */
    if (rc == 0)
        rc = io_get(c, f->req.op == OP_SEND ? STG_CF_DEDUP : STG_CF_LOG, c->kb.data, c->kb.len,
                    on_aux, f, (uint64_t)(uintptr_t)cv);
    if (rc < 0) {
        f->dd_state = DD_MISS;
        f->extra = (uint64_t)-rc;
    }
}

void owner_aux_reads(struct chat *c, struct oconv *cv)
{
    for (struct fwd *f = cv->qhead; f; f = f->next)
        aux_read(c, cv, f);
}

void owner_mark_ready(struct chat *c, struct oconv *cv)
{
    if (cv->queued_ready || !cv->qhead)
        return;
    cv->queued_ready = true;
    cv->next_ready = c->owner.ready_head;
    c->owner.ready_head = cv;
}

void owner_on_fwd(struct chat *c, struct fwd *f)
{
    int err = 0;
    struct oconv *cv = owner_conv_get(c, f->conv, &err);
    if (!cv) {
        chat_fwd_err(c, f, err, err == -RP_EFULL ? "server busy" : NULL);
        free(f);
        return;
    }
    cv->used_ms = chat_now(c);
    if (cv->qlen >= OWNER_QUEUE_MAX) {
        chat_fwd_err(c, f, -RP_EFULL, "conversation busy");
        free(f);
        return;
    }
    if (c->owner.queued_bytes + owner_fwd_cost(f) > OWNER_QUEUED_BYTES) {
        /* storage is behind (a stall): new requests wait no more */
        chat_fwd_err(c, f, -RP_EFULL, "server busy");
        free(f);
        return;
    }
    c->owner.queued_bytes += owner_fwd_cost(f);
    fwd_queue_push(&cv->qhead, &cv->qtail, f);
    cv->qlen++;
    if (cv->state == OC_READY) {
        aux_read(c, cv, f);
        owner_mark_ready(c, cv);
    }
}

/* ---- completion and fan-out ---- */

static void dlv_add_users(char **cur, struct dlv_user *dst, uint32_t *n, struct chat *c,
                          unsigned home, const struct ochange_member *src, uint32_t nsrc,
                          const struct strv *dsrc, uint32_t ndsrc, uint64_t joined)
{
    for (uint32_t i = 0; i < nsrc + ndsrc; i++) {
        /* src is NULL only when nsrc is 0, dsrc only when ndsrc is 0 */
        // cppcheck-suppress nullPointer
        struct strv u = i < nsrc ? src[i].user : dsrc[i - nsrc];
        if (xfer_home(c, u) != home)
            continue;
        struct dlv_user *d = &dst[(*n)++];
        d->user = u;
        d->joined_seq = joined;
        d->role = i < nsrc ? src[i].role : 0;
        memcpy(*cur, u.p, u.len);
        d->user.p = *cur;
        *cur += u.len;
    }
}

static void deliver_to(struct chat *c, struct orec *r, unsigned home)
{
    const struct ochange *chg = r->chg;
    size_t n = r->cv->idlen + r->f->user.len + r->f->dev.len;
    uint32_t nusers = chg ? chg->nadds + chg->ndels + chg->nupds : 0;
    for (uint32_t i = 0; chg && i < chg->nadds; i++)
        n += chg->adds[i].user.len;
    for (uint32_t i = 0; chg && i < chg->ndels; i++)
        n += chg->dels[i].len;
    for (uint32_t i = 0; chg && i < chg->nupds; i++)
        n += chg->upds[i].user.len;
    struct dlv *d = calloc(1, sizeof(*d) + nusers * sizeof(struct dlv_user) + n);
    if (!d)
        goto oom;
    d->adds = (struct dlv_user *)(void *)d->data;
    char *cur = d->data + nusers * sizeof(struct dlv_user);
    if (chg) {
        dlv_add_users(&cur, d->adds, &d->nadds, c, home, chg->adds, chg->nadds, NULL, 0, r->seq);
        /* a role change reaches the member's home as a re-add with the old joined_seq */
        for (uint32_t i = 0; i < chg->nupds; i++)
            if (chg->upds[i].set_role)
                dlv_add_users(&cur, d->adds, &d->nadds, c, home, &chg->upds[i], 1, NULL, 0,
                              chg->upds[i].joined_seq);
        d->dels = d->adds + d->nadds;
        dlv_add_users(&cur, d->dels, &d->ndels, c, home, NULL, 0, chg->dels, chg->ndels, 0);
        d->dismissed = chg->dismiss;
    }
    struct strv s[3] = {{r->cv->id, r->cv->idlen}, r->f->user, r->f->dev};
    struct strv *dst[3] = {&d->conv, &d->from, &d->dev};
    for (int i = 0; i < 3; i++) {
        memcpy(cur, s[i].p, s[i].len);
        *dst[i] = (struct strv){cur, s[i].len};
        cur += s[i].len;
    }
    d->seq = r->seq;
    d->ts = r->ts;
    d->frame = rbuf_ref(r->entry);
    if (xfer_send(c, home, XK_DELIVER, 0, d) == 0)
        return;
    rbuf_unref(d->frame);
    free(d);
oom:
    log_error("chat_deliver_oom", "conv=%.*s seq=%llu", (int)r->cv->idlen, r->cv->id,
              (unsigned long long)r->seq);
}

static void fanout(struct chat *c, struct orec *r)
{
    struct oconv *cv = r->cv;
    unsigned ns = c->env.nshards;
    if (cv->kind == CONV_DIRECT) {
        struct strv a, b;
        ident_conv_parse((struct strv){cv->id, cv->idlen}, &a, &b);
        unsigned ha = xfer_home(c, a), hb = xfer_home(c, b);
        deliver_to(c, r, ha);
        if (hb != ha)
            deliver_to(c, r, hb);
        return;
    }
    /* after group_apply: members hold the adds; the removed ones' homes are added here */
    bool *to = calloc(ns, sizeof(*to));
    if (!to)
        return;
    for (unsigned s = 0; s < ns; s++)
        to[s] = cv->home_count[s] > 0;
    for (uint32_t i = 0; r->chg && i < r->chg->ndels; i++)
        to[xfer_home(c, r->chg->dels[i])] = true;
    for (unsigned s = 0; s < ns; s++)
        if (to[s])
            deliver_to(c, r, s);
    free(to);
}

/* Send frame (NULL: none, an admin request is answered by the caller) to f's
 * connection through its home, which moves the author's read cursor in
 * f->conv to seq: sending implies reading. Takes the frame's reference. */
static void reply_read(struct chat *c, const struct fwd *f, struct rbuf *frame, uint64_t seq,
                       bool retry)
{
    struct rpl *p = rpl_new(f->conn, frame, f->user, f->conv, seq);
    if (p)
        p->retry = retry;
    if (!p || xfer_send(c, f->home, XK_REPLY, 0, p) < 0) {
        if (frame)
            rbuf_unref(frame);
        free(p);
    }
}

static void reply_dups(struct chat *c, struct orec *r, int err)
{
    while (r->dups) {
        struct fwd *d = r->dups;
        r->dups = d->next;
        if (err < 0) {
            chat_fwd_err(c, d, err, NULL);
        } else if (d->admin) {
            backend_reply_send(c, d, (struct strv){r->cv->id, r->cv->idlen}, r->seq, r->ts, true);
        } else if (enc_send_ok(&c->fb, d->req.id, (struct strv){r->cv->id, r->cv->idlen}, r->seq,
                               r->ts, true) == 0) {
            chat_fwd_frame(c, d, chat_frame(&c->fb));
        } else {
            buf_reset(&c->fb);
            chat_fwd_err(c, d, -ENOMEM, NULL);
        }
        free(d);
    }
}

static void dedup_forget(struct chat *c, struct oconv *cv, struct orec *r);

static void rec_done(struct chat *c, void *ctx, int err)
{
    struct orec *r = ctx;
    struct oconv *cv = r->cv;
    cv->busy--;
    if (r->barrier)
        cv->barrier = false;
    if (err < 0) {
        /* give the seqs back: nothing of the batch was written */
        cv->staged_seq = cv->last_seq;
        cv->staged_ts = cv->last_ts;
        /* a failed write should have left nothing, but a record it may have left
         * anyway must still be found: storage is asked again for a window */
        if (r->ts)
            owner_dd_must_read(c, cv, r->ts);
        if (r->is_send)
            dedup_forget(c, cv, r);
        chat_fwd_err(c, r->f, err, "storage unavailable");
        reply_dups(c, r, err);
        if (r->reply)
            rbuf_unref(r->reply);
    } else {
        if (r->seq && r->seq != cv->last_seq + 1) /* completions come in seq order */
            log_error("chat_seq_out_of_order", "conv=%.*s seq=%llu last_seq=%llu", (int)cv->idlen,
                      cv->id, (unsigned long long)r->seq, (unsigned long long)cv->last_seq);
        if (r->seq > cv->last_seq) {
            cv->last_seq = r->seq;
            cv->last_ts = r->ts;
        }
        if (r->chg && group_apply(c, cv, r->chg) < 0)
            log_error("chat_group_apply_oom", "conv=%.*s", (int)cv->idlen, cv->id);
        if (r->seq) {
            c->stats.entries++;
            fanout(c, r);
        }
        /* Sending implies reading: the home moves the author's read cursor.
         * So does writing a group event or a recall (not one that takes the
         * author out of the group). */
        bool author_reads =
            r->is_send || (r->seq && r->reply && !r->f->admin && r->f->req.op != OP_GROUP_LEAVE &&
                           r->f->req.op != OP_GROUP_DISMISS);
        if (author_reads) {
            if (r->f->admin) {
                backend_reply_send(c, r->f, r->f->conv, r->seq, r->ts, false);
                rbuf_unref(r->reply);
                r->reply = NULL;
            }
            reply_read(c, r->f, r->reply, r->seq, false);
        } else {
            chat_fwd_frame(c, r->f, r->reply);
        }
        reply_dups(c, r, 0);
    }
    if (r->dd) {
        /* the record is durable: the dedup entry no longer points here */
        r->dd->rec = NULL;
        r->dd = NULL;
    }
    if (r->entry)
        rbuf_unref(r->entry);
    if (r->chg) {
        ochange_free(r->chg);
        free(r->chg);
    }
    free(r->f);
    free(r);
    owner_mark_ready(c, cv);
}

/* ---- staging ---- */

static void dedup_forget(struct chat *c, struct oconv *cv, struct orec *r)
{
    (void)cv;
    if (r->dd && r->dd->rec == r)
        dd_drop(c, r->dd);
    r->dd = NULL;
}

static struct orec *rec_new(struct chat *c, struct oconv *cv, struct fwd *f)
{
    struct orec *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cv = cv;
    r->f = f;
    if (io_on_commit(c, rec_done, r) < 0) {
        free(r);
        return NULL;
    }
    io_mark_dep(c);
    cv->busy++;
    return r;
}

static int put_userconv(struct chat *c, struct strv user, struct oconv *cv,
                        const struct userconv_rec *u)
{
    struct buf *v = &c->vb;
    buf_reset(v);
    int rc = stg_key_userconv(&c->kb, user.p, user.len, cv->id, cv->idlen);
    if (rc == 0)
        rc = val_userconv_encode(v, u);
    if (rc == 0)
        rc = stg_batch_put(io_batch(c), STG_CF_USERCONV, c->kb.data, c->kb.len, v->data, v->len);
    return rc;
}

int owner_stage_entry(struct chat *c, struct oconv *cv, struct fwd *f, struct strv type,
                      const uint8_t *data, uint32_t dlen, bool has_target, uint64_t target,
                      struct ochange *chg, struct rbuf *reply, struct orec **out)
{
    struct stg_batch *b = io_batch(c);
    if (!b)
        return -ENOMEM;
    uint64_t now = chat_now(c);
    uint64_t seq = cv->staged_seq + 1;
    uint64_t ts = now > cv->staged_ts ? now : cv->staged_ts;
    struct entry e = {.conv = {cv->id, cv->idlen},
                      .seq = seq,
                      .from = f->user,
                      .dev = f->dev,
                      .cmid = f->req.cmid,
                      .type = type,
                      .body = f->req.body,
                      .body_bin = f->req.body_bin,
                      .ts = ts,
                      .data_raw = data,
                      .data_len = dlen,
                      .has_target = has_target,
                      .target = target};
    buf_reset(&c->fb);
    if (enc_entry_frame(&c->fb, &e) < 0) {
        buf_reset(&c->fb);
        return -ENOMEM;
    }
    struct rbuf *frame = chat_frame(&c->fb);
    if (!frame)
        return -ENOMEM;
    int rc = stg_key_log(&c->kb, cv->id, cv->idlen, seq);
    if (rc == 0)
        rc = stg_batch_put(b, STG_CF_LOG, c->kb.data, c->kb.len, frame->data + 4, frame->len - 4);
    if (rc == 0 && f->req.op == OP_SEND) {
        buf_reset(&c->vb);
        rc = stg_key_dedup(&c->kb, cv->id, cv->idlen, f->user.p, f->user.len, f->req.cmid.p,
                           f->req.cmid.len);
        if (rc == 0)
            rc = val_dedup_encode(&c->vb, ts, seq);
        if (rc == 0)
            rc = stg_batch_put(b, STG_CF_DEDUP, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    }
    if (rc == 0 && cv->kind == CONV_DIRECT && seq == 1) {
        /* the conversation starts: it enters both users' conversation lists */
        struct strv a, bb;
        ident_conv_parse((struct strv){cv->id, cv->idlen}, &a, &bb);
        struct userconv_rec u = {.kind = CONV_DIRECT, .joined_seq = 1};
        rc = put_userconv(c, a, cv, &u);
        if (rc == 0 && !strv_eq(a, bb))
            rc = put_userconv(c, bb, cv, &u);
    }
    struct orec *r = rc == 0 ? rec_new(c, cv, f) : NULL;
    if (!r) {
        rbuf_unref(frame);
        return rc < 0 ? rc : -ENOMEM;
    }
    cv->staged_seq = seq;
    cv->staged_ts = ts;
    cv->meta_dirty = true;
    if (chg)
        cv->meta_chg = chg;
    r->seq = seq;
    r->ts = ts;
    r->entry = frame;
    r->chg = chg;
    r->reply = reply;
    r->is_send = f->req.op == OP_SEND;
    r->barrier = f->req.op != OP_SEND;
    if (r->barrier)
        cv->barrier = true;
    if (out)
        *out = r;
    return 0;
}

/* A change with no log entry (remark): staged so that it is durable before the ok. */
int owner_stage_noentry(struct chat *c, struct oconv *cv, struct fwd *f, struct ochange *chg,
                        struct rbuf *reply)
{
    struct orec *r = rec_new(c, cv, f);
    if (!r)
        return -ENOMEM;
    r->chg = chg;
    r->reply = reply;
    r->barrier = true;
    cv->barrier = true;
    return 0;
}

int owner_put_meta(struct chat *c, struct oconv *cv, const struct ochange *chg)
{
    struct conv_meta m = {.kind = cv->kind,
                          .last_seq = cv->staged_seq,
                          .last_ts = cv->staged_ts,
                          .open = cv->open,
                          .dismissed = cv->dismissed,
                          .members = (uint32_t)map_count(&cv->members)};
    if (cv->kind == CONV_GROUP) {
        m.name = cv->name ? strv_c(cv->name) : (struct strv){"", 0};
        m.notice = cv->notice ? strv_c(cv->notice) : (struct strv){"", 0};
        m.owner = cv->owner ? strv_c(cv->owner) : (struct strv){"", 0};
        if (chg) {
            if (chg->create || chg->set_name)
                m.name = chg->name;
            if (chg->create || chg->set_notice)
                m.notice = chg->notice;
            if (chg->create)
                m.owner = chg->owner;
            if (chg->create || chg->set_open)
                m.open = chg->open;
            if (chg->dismiss)
                m.dismissed = true;
            m.members = m.members + chg->nadds - chg->ndels;
        }
    }
    buf_reset(&c->vb);
    int rc = val_conv_encode(&c->vb, &m);
    if (rc == 0)
        rc = stg_key_conv(&c->kb, cv->id, cv->idlen);
    if (rc == 0) {
        struct stg_batch *b = io_batch(c);
        rc = b ? stg_batch_put(b, STG_CF_CONV, c->kb.data, c->kb.len, c->vb.data, c->vb.len)
               : -ENOMEM;
    }
    return rc;
}

/* Returns 1 when f was consumed by a record or a reply, <0 to answer f with an error. */
static int stage_send(struct chat *c, struct oconv *cv, struct fwd *f)
{
    /* a retry of what was stored gets the original, also when its sender has
     * left the group since or the group is gone: dedup comes first */
    char k[DD_KEY_MAX];
    uint32_t kl = dedup_key(k, f->user, f->req.cmid);
    struct odedup *d = map_get(&cv->dedup, k, kl);
    uint64_t now = chat_now(c);
    /* the tick drops records once a second: one past the window may still be
     * here, and a read from storage may have aged while the send waited */
    if (d && !d->rec && dd_expired(c, d->ts, now)) {
        dd_drop(c, d);
        d = NULL;
    }
    if (f->dd_state == DD_HIT && dd_expired(c, f->dd_ts, now))
        f->dd_state = DD_MISS;
    if (d && d->rec) {
        /* the original is not durable yet: answer with it */
        f->next = d->rec->dups;
        d->rec->dups = f;
        return 1;
    }
    if (d || f->dd_state == DD_HIT) {
        uint64_t dseq = d ? d->seq : f->dd_seq, dts = d ? d->ts : f->dd_ts;
        /* the retry reads the entry again, as its original did (a crash may
         * have lost that move), unless the sender has left the group since */
        bool reads =
            cv->kind != CONV_GROUP || (cv->exists && !cv->dismissed && owner_member(cv, f->user));
        if (f->admin) {
            backend_reply_send(c, f, f->conv, dseq, dts, true);
            if (reads)
                reply_read(c, f, NULL, dseq, true);
            free(f);
            return 1;
        }
        if (enc_send_ok(&c->fb, f->req.id, f->conv, dseq, dts, true) < 0) {
            buf_reset(&c->fb);
            return -ENOMEM;
        }
        struct rbuf *fr = chat_frame(&c->fb);
        if (reads && fr)
            reply_read(c, f, fr, dseq, true);
        else
            chat_fwd_frame(c, f, fr);
        free(f);
        return 1;
    }
    if (f->extra)
        return -RP_ESTORAGE; /* the dedup lookup failed: a dup cannot be ruled out */
    if (f->not_friends) {
        chat_fwd_err(c, f, -EPERM, "not friends");
        free(f);
        return 1;
    }
    if (cv->kind == CONV_GROUP) {
        if (!cv->exists || cv->dismissed)
            return -ENOENT;
        if (!owner_member(cv, f->user))
            return -EPERM;
    }
    if (f->dd_state == DD_SKIP)
        c->owner.dd_reads_skipped++;
    uint64_t seq = cv->staged_seq + 1;
    uint64_t ts = now > cv->staged_ts ? now : cv->staged_ts;
    d = dd_add(c, cv, k, kl, ts);
    if (!d)
        return -ENOMEM;
    struct rbuf *reply = NULL;
    struct orec *r = NULL;
    int rc = enc_send_ok(&c->fb, f->req.id, f->conv, seq, ts, false);
    if (rc == 0 && !(reply = chat_frame(&c->fb)))
        rc = -ENOMEM;
    if (rc == 0) {
        rc = owner_stage_entry(c, cv, f, f->req.type, NULL, 0, false, 0, NULL, reply, &r);
        if (rc < 0)
            io_poison(c); /* the batch may hold some of the entry's puts */
    }
    if (rc < 0) {
        buf_reset(&c->fb);
        if (reply)
            rbuf_unref(reply);
        dd_drop(c, d);
        return rc;
    }
    d->seq = seq;
    d->ts = r->ts; // NOLINT(clang-analyzer-core.NullDereference): set when rc is 0
    d->rec = r;
    r->dd = d;
    return 1;
}

static void stage_conv(struct chat *c, struct oconv *cv)
{
    if (cv->state != OC_READY)
        return;
    while (cv->qhead && !cv->barrier) {
        struct fwd *f = cv->qhead;
        if (f->req.op == OP_RECALL && f->dd_state == DD_NONE) {
            /* read the target only now: an earlier recall of it is durable by now */
            aux_read(c, cv, f);
        } else if (f->req.op == OP_SEND && (f->dd_state == DD_SKIP || f->dd_state == DD_NONE)) {
            /* memory may have lost a live record since the send came */
            aux_read(c, cv, f);
        }
        if (f->dd_state == DD_PENDING)
            break;
        cv->qhead = f->next;
        if (!cv->qhead)
            cv->qtail = NULL;
        cv->qlen--;
        c->owner.queued_bytes -= owner_fwd_cost(f);
        f->next = NULL;
        struct stg_result *aux = f->req.op == OP_RECALL ? f->extra_ptr : NULL;
        int rc;
        if (f->req.op == OP_SEND)
            rc = stage_send(c, cv, f);
        else if (f->req.op == OP_RECALL)
            rc = recall_stage(c, cv, f);
        else
            rc = group_stage(c, cv, f);
        if (aux) {
            stg_result_free(aux); /* a recall's f is never freed by its staging */
            f->extra_ptr = NULL;
        }
        if (rc < 0) {
            chat_fwd_err(c, f, rc, NULL);
            free(f);
        }
    }
    if (cv->meta_dirty && owner_put_meta(c, cv, cv->meta_chg) < 0)
        io_poison(c);
    cv->meta_dirty = false;
    cv->meta_chg = NULL;
}

void owner_stage(struct chat *c)
{
    struct oconv *cv = c->owner.ready_head;
    c->owner.ready_head = NULL;
    while (cv) {
        struct oconv *next = cv->next_ready;
        cv->queued_ready = false;
        stage_conv(c, cv);
        cv = next;
    }
}

/* A live record of cv is gone from memory: queued sends that read storage before
 * it was durable read again. */
static void dd_evicted(struct chat *c, struct oconv *cv, uint64_t ts)
{
    owner_dd_must_read(c, cv, ts);
    for (struct fwd *f = cv->qhead; f; f = f->next) {
        if (f->req.op != OP_SEND)
            continue;
        if (f->dd_state == DD_MISS && !f->extra)
            f->dd_state = DD_NONE;
        else if (f->dd_state == DD_PENDING)
            f->dd_stale = true; /* its answer may predate the record */
    }
    if (cv->state == OC_READY)
        owner_aux_reads(c, cv);
}

/* Drop the dedup records memory does not keep: with all, those past their
 * window and those a crowded memory lets go; else only the oldest past
 * dedup_hard. */
static void dd_expire(struct chat *c, bool all)
{
    struct owner *o = &c->owner;
    if (!all && o->ndedup <= o->dedup_hard)
        return;
    uint64_t now = chat_now(c), mono = dd_clock(c);
    uint64_t window = dd_window(c);
    /* records are queued in creation order, so the old ones are at the head;
     * one still in flight is young and ends the walk */
    struct odedup *d;
    /* dd_drop unlinks d from the head, so each pass reads a live record */
    while ((d = o->dq_head) && !d->rec) { // NOLINT(clang-analyzer-unix.Malloc)
        /* young: kept unless memory is crowded and it is a minute old, or
         * memory is full */
        if (o->ndedup <= o->dedup_hard &&
            (!all || (d->born + window >= mono &&
                      (o->ndedup <= o->dedup_max || d->born + OWNER_DEDUP_MIN_MS >= mono))))
            break;
        struct oconv *cv = d->cv;
        uint64_t ts = d->ts;
        dd_drop(c, d);
        if (ts + window >= now)
            dd_evicted(c, cv, ts); /* storage still answers for it */
    }
}

void owner_dedup_bound(struct chat *c)
{
    dd_expire(c, false);
}

void owner_tick(struct chat *c)
{
    struct owner *o = &c->owner;
    uint64_t now = chat_now(c);
    dd_expire(c, true);
    if (map_count(&o->convs) <= OWNER_CONVS_MAX)
        return;
    struct map_iter it;
    map_iter_init(&it, &o->convs);
    struct map_node *n;
    while ((n = map_next(&it))) {
        struct oconv *cv = n->val;
        if (cv->state == OC_READY && !cv->qhead && !cv->busy && !cv->queued_ready &&
            cv->used_ms + 60000 < now) {
            map_del(&o->convs, cv->id, cv->idlen);
            owner_conv_free(c, cv);
        }
    }
}
