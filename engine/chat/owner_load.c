/*
 * Loading a conversation into the owner (see owner.h): its metadata record,
 * then its members page by page, while requests for it queue. A failed read
 * fails the queued requests with `unavailable` and forgets the conversation,
 * so the next request starts a fresh load. Also the member bookkeeping that
 * loading and group.c share (owner_member_put/del keep the per-home counts).
 */
#include "engine/chat/owner.h"

#include "engine/chat/core.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void fail_queue(struct chat *c, struct oconv *cv, int err)
{
    while (cv->qhead) {
        struct fwd *f = cv->qhead;
        cv->qhead = f->next;
        cv->qlen--;
        c->owner.queued_bytes -= owner_fwd_cost(f);
        chat_fwd_err(c, f, err, NULL);
        if (f->extra_ptr)
            stg_result_free(f->extra_ptr);
        free(f);
    }
    cv->qtail = NULL;
}

static void load_failed(struct chat *c, struct oconv *cv)
{
    log_warn("chat_conv_load_failed", "conv=%.*s", (int)cv->idlen, cv->id);
    fail_queue(c, cv, -RP_ESTORAGE);
    map_del(&c->owner.convs, cv->id, cv->idlen);
    owner_conv_free(c, cv);
}

static void load_done(struct chat *c, struct oconv *cv)
{
    /* every record in storage was written with an entry, in the batch that made
     * last_ts at least its ts: once last_ts is out of the window, none is live */
    if (cv->last_seq)
        owner_dd_must_read(c, cv, cv->last_ts);
    cv->state = OC_READY;
    cv->staged_seq = cv->last_seq;
    cv->staged_ts = cv->last_ts;
    owner_aux_reads(c, cv);
    owner_mark_ready(c, cv);
}

static char *dup_strv(struct strv s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.p, s.len);
        p[s.len] = 0;
    }
    return p;
}

static int member_set(struct chat *c, struct oconv *cv, struct strv user,
                      const struct member_rec *r)
{
    struct omember *m = owner_member(cv, user);
    bool fresh = !m;
    if (fresh) {
        m = calloc(1, sizeof(*m));
        if (!m || !map_put(&cv->members, user.p, user.len, m)) {
            free(m);
            return -ENOMEM;
        }
        cv->home_count[xfer_home(c, user)]++;
    }
    m->role = r->role;
    m->joined_seq = r->joined_seq;
    free(m->nick);
    free(m->remark);
    m->nick = r->nick.len ? dup_strv(r->nick) : NULL;
    m->remark = r->remark.len ? dup_strv(r->remark) : NULL;
    return 0;
}

void owner_member_del(struct chat *c, struct oconv *cv, struct strv user)
{
    struct omember *m = map_del(&cv->members, user.p, user.len);
    if (!m)
        return;
    cv->home_count[xfer_home(c, user)]--;
    free(m->nick);
    free(m->remark);
    free(m);
}

int owner_member_put(struct chat *c, struct oconv *cv, struct strv user, const struct member_rec *r)
{
    return member_set(c, cv, user, r);
}

static int scan_members(struct chat *c, struct oconv *cv, const void *lower, size_t llen);

static void on_members(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct oconv *cv = ctx;
    if (err < 0)
        goto fail;
    for (uint32_t i = 0; i < res->n; i++) {
        struct stg_view parts[2];
        struct member_rec r;
        if (stg_key_split(res->kv[i].key, res->kv[i].klen, parts, 2, NULL) < 0 ||
            val_member_decode(res->kv[i].val, res->kv[i].vlen, &r) < 0)
            continue;
        struct strv u = {parts[1].p, (uint32_t)parts[1].len};
        if (member_set(c, cv, u, &r) < 0)
            goto fail;
    }
    if (res->more && res->n) {
        /* the next page starts just above the last key: the key with a 0 byte appended */
        struct buf k;
        buf_init(&k);
        buf_append(&k, res->kv[res->n - 1].key, res->kv[res->n - 1].klen);
        buf_put_u8(&k, 0);
        int rc = buf_failed(&k) ? -ENOMEM : scan_members(c, cv, k.data, k.len);
        buf_deinit(&k);
        stg_result_free(res);
        if (rc < 0)
            load_failed(c, cv);
        return;
    }
    stg_result_free(res);
    load_done(c, cv);
    return;
fail:
    stg_result_free(res);
    load_failed(c, cv);
}

static int scan_members(struct chat *c, struct oconv *cv, const void *lower, size_t llen)
{
    struct buf p;
    buf_init(&p);
    int rc = stg_key_prefix(&p, cv->id, cv->idlen);
    if (rc == 0)
        rc = io_scan_prefix(c, STG_CF_MEMBER, p.data, p.len, lower, llen, OWNER_MEMBER_PAGE,
                            on_members, cv, 0);
    buf_deinit(&p);
    return rc;
}

static void on_meta(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct oconv *cv = ctx;
    struct conv_meta m;
    if (err == -ENOENT) {
        cv->exists = cv->kind == CONV_DIRECT;
        load_done(c, cv);
        return;
    }
    if (err < 0 || val_conv_decode(res->kv[0].val, res->kv[0].vlen, &m) < 0) {
        stg_result_free(res);
        load_failed(c, cv);
        return;
    }
    cv->exists = true;
    cv->last_seq = m.last_seq;
    cv->last_ts = m.last_ts;
    if (cv->kind == CONV_GROUP) {
        cv->dismissed = m.dismissed;
        cv->open = m.open;
        cv->name = dup_strv(m.name);
        cv->notice = dup_strv(m.notice);
        cv->owner = dup_strv(m.owner);
    }
    stg_result_free(res);
    if (cv->kind == CONV_GROUP && (!cv->name || !cv->notice || !cv->owner)) {
        load_failed(c, cv);
        return;
    }
    if (cv->kind == CONV_GROUP && !cv->dismissed) {
        if (scan_members(c, cv, NULL, 0) < 0)
            load_failed(c, cv);
        return;
    }
    load_done(c, cv);
}

/* The loaded (or now loading) conversation; NULL on ENOMEM or a bad id. */
struct oconv *owner_conv_get(struct chat *c, struct strv id, int *err)
{
    struct oconv *cv = map_get(&c->owner.convs, id.p, id.len);
    if (cv)
        return cv;
    *err = -EINVAL;
    enum conv_kind kind = ident_conv_parse(id, NULL, NULL);
    if (kind == CONV_BAD || id.len >= sizeof(cv->id))
        return NULL;
    *err = -ENOMEM;
    cv = calloc(1, sizeof(*cv));
    if (!cv)
        return NULL;
    cv->home_count = calloc(c->env.nshards, sizeof(*cv->home_count));
    memcpy(cv->id, id.p, id.len);
    cv->idlen = id.len;
    cv->kind = (uint8_t)kind;
    cv->state = OC_LOADING;
    map_init(&cv->members);
    map_init(&cv->dedup);
    if (!cv->home_count || !map_put(&c->owner.convs, id.p, id.len, cv))
        goto fail;
    int rc = stg_key_conv(&c->kb, id.p, id.len);
    if (rc == 0)
        rc = io_get(c, STG_CF_CONV, c->kb.data, c->kb.len, on_meta, cv, 0);
    if (rc < 0) {
        *err = rc;
        map_del(&c->owner.convs, id.p, id.len);
        goto fail;
    }
    return cv;
fail:
    free(cv->home_count);
    free(cv);
    return NULL;
}
