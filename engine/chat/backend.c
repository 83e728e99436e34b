/*
 * The admin API (see backend.h for the routing). An admin request carries no
 * connection: its struct fwd has conn 0, an empty device and `admin` set, and
 * every place that answers a forwarded request checks that flag first
 * (chat_fwd_err in chat.c, the send replies in owner.c). The entry's `dev` is
 * therefore empty, which is also what makes every device of the sender get
 * the push (home.c skips only a non-empty sending device).
 */
#include "engine/chat/backend.h"

#include "engine/chat/core.h"
#include "engine/chat/session.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "base/log.h"
#include "protocol/ident.h"
#include "protocol/req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_MAX 16u
#define CMID_MAX 64u

/* Send res to env->admin_done of shard dst; the views in res are copied. */
static void answer(struct chat *c, unsigned dst, uint64_t tag, const struct chat_admin_result *res)
{
    size_t n = res->conv.len;
    uint32_t nd = res->ndevices < CHAT_ADMIN_DEVICES_MAX ? res->ndevices : CHAT_ADMIN_DEVICES_MAX;
    for (uint32_t i = 0; i < nd; i++)
        n += res->devices[i].len;
    struct admin_done *d = calloc(1, sizeof(*d) + n);
    if (!d) {
        /* the caller must hear something: the short form without any view */
        d = calloc(1, sizeof(*d));
        if (!d)
            goto lost;
        d->res.err = -ENOMEM;
        d->res.msg = "out of memory";
    } else {
        d->res = *res;
        d->res.ndevices = nd;
        char *cur = d->data;
        struct strv *v[1 + CHAT_ADMIN_DEVICES_MAX];
        uint32_t nv = 0;
        v[nv++] = &d->res.conv;
        for (uint32_t i = 0; i < nd; i++)
            v[nv++] = &d->res.devices[i];
        for (uint32_t i = 0; i < nv; i++) {
            if (v[i]->len)
                memcpy(cur, v[i]->p, v[i]->len);
            v[i]->p = cur;
            cur += v[i]->len;
        }
    }
    d->tag = tag;
    if (xfer_send(c, dst, XK_ADMIN_DONE, 0, d) == 0)
        return;
    free(d);
lost:
    log_error("chat_admin_answer_lost", "tag=%llu", (unsigned long long)tag);
}

static void answer_err(struct chat *c, unsigned dst, uint64_t tag, int err, const char *msg)
{
    struct chat_admin_result res = {.err = err};
    res.msg = msg ? msg : code_name(code_from_err(err));
    answer(c, dst, tag, &res);
}

void backend_reply_err(struct chat *c, const struct fwd *f, int err, const char *msg)
{
    answer_err(c, f->admin_shard, f->admin_tag, err, msg);
}

void backend_reply_send(struct chat *c, const struct fwd *f, struct strv conv, uint64_t seq,
                        uint64_t ts, bool dup)
{
    struct chat_admin_result res = {.conv = conv, .seq = seq, .ts = ts, .dup = dup};
    answer(c, f->admin_shard, f->admin_tag, &res);
}

void backend_on_done(struct chat *c, struct admin_done *d)
{
    if (c->env.admin_done)
        c->env.admin_done(c->env.rt, d->tag, &d->res);
    else
        log_warn("chat_admin_no_callback", "tag=%llu", (unsigned long long)d->tag);
    free(d);
}

/* ---- at the caller ---- */

/* Route an admin call to the home of f->user; f is consumed either way. */
static void to_home(struct chat *c, struct fwd *f, enum admin_op op)
{
    if (xfer_send(c, xfer_home(c, f->user), XK_ADMIN, op, f) == 0)
        return;
    answer_err(c, c->env.shard, f->admin_tag, -ENOMEM, NULL);
    free(f);
}

static struct fwd *admin_fwd(struct chat *c, uint64_t tag, struct strv user, const struct req *r)
{
    struct fwd *f =
        fwd_new(r, user, (struct strv){"", 0}, (struct strv){"", 0}, 0, xfer_home(c, user));
    if (!f) {
        answer_err(c, c->env.shard, tag, -ENOMEM, NULL);
        return NULL;
    }
    f->admin = true;
    f->admin_shard = c->env.shard;
    f->admin_tag = tag;
    return f;
}

/* The §5 rules that do not need any state; a decoded request passes them all. */
static int check_send(struct chat *c, struct strv from, const struct req *r, const char **msg)
{
    *msg = NULL;
    if (!ident_user_ok(from)) {
        *msg = "bad from";
        return -RP_EREQUEST;
    }
    if ((r->to.len != 0) == (r->has_group || r->group.len != 0)) {
        *msg = "exactly one of to and group";
        return -RP_EREQUEST;
    }
    if (!ident_user_ok(r->to.len ? r->to : r->group)) {
        *msg = r->to.len ? "bad to" : "bad group";
        return -RP_EREQUEST;
    }
    if (r->cmid.len < 1 || r->cmid.len > CMID_MAX) {
        *msg = "bad cmid";
        return -RP_EREQUEST;
    }
    if (r->type.len < 1 || r->type.len > TYPE_MAX || strv_eq_c(r->type, "event") ||
        strv_eq_c(r->type, "recall") || strv_eq_c(r->type, "recalled")) {
        *msg = "bad type";
        return -RP_EREQUEST;
    }
    if (r->body.len > c->env.cfg->max_body) {
        *msg = "body too large";
        return -RP_ETOOLARGE;
    }
    return 0;
}

void chat_admin_send(struct chat *c, uint64_t tag, struct strv from, const struct req *req)
{
    const char *msg;
    struct req r = *req;
    r.op = OP_SEND;
    int rc = check_send(c, from, &r, &msg);
    if (rc == 0 && xfer_congested(c)) {
        rc = -RP_EFULL;
        msg = "server busy";
    }
    if (rc < 0) {
        answer_err(c, c->env.shard, tag, rc, msg);
        return;
    }
    r.has_group = r.to.len == 0;
    struct fwd *f = admin_fwd(c, tag, from, &r);
    if (f)
        to_home(c, f, ADMIN_SEND);
}

static void admin_user_call(struct chat *c, uint64_t tag, struct strv user, enum admin_op op)
{
    if (!ident_user_ok(user)) {
        answer_err(c, c->env.shard, tag, -RP_EREQUEST, "bad user");
        return;
    }
    struct req r = {.op = OP_PING}; /* no op of its own: the xmsg says what */
    struct fwd *f = admin_fwd(c, tag, user, &r);
    if (f)
        to_home(c, f, op);
}

void chat_admin_presence(struct chat *c, uint64_t tag, struct strv user)
{
    admin_user_call(c, tag, user, ADMIN_PRESENCE);
}

void chat_admin_kick(struct chat *c, uint64_t tag, struct strv user)
{
    admin_user_call(c, tag, user, ADMIN_KICK);
}

/* ---- at the user's home ---- */

/* Forward a checked send to the conversation's owner, as a client send would be. */
static void route_send(struct chat *c, struct fwd *f)
{
    char conv[IDENT_CONV_MAX];
    uint32_t n = f->req.to.len ? ident_conv_direct(conv, f->user, f->req.to)
                               : ident_conv_group(conv, f->req.group);
    struct fwd *o = NULL;
    int rc = xfer_congested(c) ? -RP_EFULL : 0;
    if (rc == 0) {
        o = fwd_new(&f->req, f->user, f->dev, (struct strv){conv, n}, 0, c->env.shard);
        rc = o ? 0 : -ENOMEM;
    }
    if (rc == 0) {
        o->admin = true;
        o->not_friends = f->not_friends;
        o->admin_shard = f->admin_shard;
        o->admin_tag = f->admin_tag;
        rc = xfer_send(c, xfer_owner(c, o->conv), XK_FWD, 0, o);
    }
    if (rc < 0) {
        free(o);
        backend_reply_err(c, f, rc, rc == -RP_EFULL ? "server busy" : NULL);
    }
    free(f);
}

static void on_friend(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct fwd *f = ctx;
    struct friend_rec fr;
    bool yes = err == 0 && val_friend_decode(res->kv[0].val, res->kv[0].vlen, &fr) == 0 &&
               fr.state == FRIEND_YES;
    stg_result_free(res);
    if (err < 0 && err != -ENOENT) {
        backend_reply_err(c, f, -RP_ESTORAGE, "storage unavailable");
        free(f);
        return;
    }
    f->not_friends = !yes;
    route_send(c, f);
}

static void home_send(struct chat *c, struct fwd *f)
{
    if (!f->req.to.len || !c->env.cfg->dm_friends_only || strv_eq(f->req.to, f->user)) {
        route_send(c, f);
        return;
    }
    struct user *u = home_user(c, f->user);
    struct ufriend *fr =
        u && u->state == U_READY ? map_get(&u->friends, f->req.to.p, f->req.to.len) : NULL;
    if (u && u->state == U_READY && (fr || !u->friends_cut)) {
        /* not friends: a retry still gets its original (see home.c do_send) */
        f->not_friends = !fr || fr->state != FRIEND_YES;
        route_send(c, f);
        return;
    }
    /* no session holds the friend list, or not all of it: ask storage (this
     * home writes it) */
    int rc = stg_key_friend(&c->kb, f->user.p, f->user.len, f->req.to.p, f->req.to.len);
    if (rc == 0)
        rc = io_get(c, STG_CF_FRIEND, c->kb.data, c->kb.len, on_friend, f, 0);
    if (rc < 0) {
        backend_reply_err(c, f, rc, NULL);
        free(f);
    }
}

static void home_presence(struct chat *c, struct fwd *f)
{
    struct chat_admin_result res = {0};
    struct user *u = home_user(c, f->user);
    for (struct session *s = u ? u->sessions : NULL; s; s = s->next) {
        res.online = true;
        if (res.ndevices < CHAT_ADMIN_DEVICES_MAX)
            res.devices[res.ndevices++] = (struct strv){s->dev, s->devlen};
    }
    answer(c, f->admin_shard, f->admin_tag, &res);
}

static void home_kick(struct chat *c, struct fwd *f)
{
    struct chat_admin_result res = {0};
    res.kicked = session_kick_user(c, f->user, "kicked");
    answer(c, f->admin_shard, f->admin_tag, &res);
}

void backend_on_home(struct chat *c, struct fwd *f, uint64_t op)
{
    switch (op) {
    case ADMIN_SEND:
        home_send(c, f);
        return; /* f consumed */
    case ADMIN_PRESENCE:
        home_presence(c, f);
        break;
    case ADMIN_KICK:
        home_kick(c, f);
        break;
    default:
        backend_reply_err(c, f, -EINVAL, "unknown admin call");
        break;
    }
    free(f);
}
