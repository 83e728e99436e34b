/*
 * Group ops at the owner. Rules (PROTOCOL §6, and docs/protocol.md where the
 * page is silent):
 *   create   anyone; the id must be unused (even by a dismissed group)
 *   invite   any member; ids already members are skipped
 *   join     anyone, when `open`; a member joining again is a no-op
 *   kick     owner (anyone but itself) or admin (plain members only)
 *   leave    any member but the owner
 *   dismiss  owner; every member is removed with the event
 *   update   owner or admin     admin   owner, on another member
 *   nick     any member         remark  any member, no event
 *   info, members   members only; answered at once from durable state
 * A change that changes nothing (an invite of members only, a name set to
 * the name it has, admin given to an admin) succeeds with no event. Every event's data: {kind, by,
 * users (first 20), count, fields...}.
 */
#include "engine/chat/group.h"

#include "engine/chat/core.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "protocol/ident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EVENT_USERS_MAX 20u
#define MEMBERS_DEFAULT 100u

bool group_op_readonly(int op)
{
    return op == OP_GROUP_INFO || op == OP_GROUP_MEMBERS;
}

void ochange_free(struct ochange *chg)
{
    free(chg->adds);
    free(chg->dels);
    free(chg->upds);
    free(chg->arena);
}

int group_apply(struct chat *c, struct oconv *cv, const struct ochange *chg)
{
    int rc = 0;
    if (chg->create) {
        cv->exists = true;
        free(cv->owner);
        cv->owner = strndup(chg->owner.p, chg->owner.len);
    }
    if (chg->create || chg->set_name) {
        free(cv->name);
        cv->name = strndup(chg->name.p, chg->name.len);
    }
    if (chg->create || chg->set_notice) {
        free(cv->notice);
        cv->notice = strndup(chg->notice.p, chg->notice.len);
    }
    if (chg->create || chg->set_open)
        cv->open = chg->open;
    for (uint32_t i = 0; i < chg->nadds; i++) {
        const struct ochange_member *a = &chg->adds[i];
        struct member_rec r = {.role = a->role, .joined_seq = a->joined_seq};
        if (owner_member_put(c, cv, a->user, &r) < 0)
            rc = -ENOMEM;
    }
    for (uint32_t i = 0; i < chg->nupds; i++) {
        const struct ochange_member *u = &chg->upds[i];
        struct omember *m = owner_member(cv, u->user);
        if (!m)
            continue;
        if (u->set_role)
            m->role = u->role;
        if (u->set_nick) {
            free(m->nick);
            m->nick = strndup(u->nick.p, u->nick.len);
        }
        if (u->set_remark) {
            free(m->remark);
            m->remark = strndup(u->remark.p, u->remark.len);
        }
    }
    for (uint32_t i = 0; i < chg->ndels; i++)
        owner_member_del(c, cv, chg->dels[i]);
    if (chg->dismiss)
        cv->dismissed = true;
    return rc;
}

/* ---- staging helpers ---- */

static int put_member(struct chat *c, struct oconv *cv, struct strv user,
                      const struct member_rec *m)
{
    struct stg_batch *b = io_batch(c);
    int rc = b ? stg_key_member(&c->kb, cv->id, cv->idlen, user.p, user.len) : -ENOMEM;
    buf_reset(&c->vb);
    if (rc == 0)
        rc = val_member_encode(&c->vb, m);
    if (rc == 0)
        rc = stg_batch_put(b, STG_CF_MEMBER, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    struct userconv_rec u = {.kind = CONV_GROUP, .role = m->role, .joined_seq = m->joined_seq};
    if (rc == 0)
        rc = stg_key_userconv(&c->kb, user.p, user.len, cv->id, cv->idlen);
    buf_reset(&c->vb);
    if (rc == 0)
        rc = val_userconv_encode(&c->vb, &u);
    if (rc == 0)
        rc = stg_batch_put(b, STG_CF_USERCONV, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    return rc;
}

/* The member row and the user's row of the conversation go. With an event
 * (left_seq) a removal record (one per removal) takes the latter's place, so
 * that a device offline now still gets the event at its next login (for
 * STG_LEFT_KEEP_MS; compaction drops the record after that). */
static int del_member(struct chat *c, struct oconv *cv, struct strv user, uint64_t left_seq)
{
    struct stg_batch *b = io_batch(c);
    const struct omember *om = owner_member(cv, user);
    struct userconv_rec u = {.kind = CONV_GROUP,
                             .role = om ? om->role : 0,
                             .joined_seq = om ? om->joined_seq : 0,
                             .left_seq = left_seq,
                             .left_ts = chat_now(c)};
    int rc = b ? stg_key_member(&c->kb, cv->id, cv->idlen, user.p, user.len) : -ENOMEM;
    if (rc == 0)
        rc = stg_batch_del(b, STG_CF_MEMBER, c->kb.data, c->kb.len);
    if (rc == 0)
        rc = stg_key_userconv(&c->kb, user.p, user.len, cv->id, cv->idlen);
    if (rc == 0)
        rc = stg_batch_del(b, STG_CF_USERCONV, c->kb.data, c->kb.len);
    if (rc < 0 || !left_seq || !u.joined_seq)
        return rc;
    /* one record per removal: user|conv|left_seq */
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(left_seq >> (56 - 8 * i));
    if (buf_append(&c->kb, be, sizeof(be)) < 0)
        return -ENOMEM;
    rc = val_left_encode(&c->vb, &u);
    if (rc == 0)
        rc = stg_batch_put(b, STG_CF_LEFT, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    return rc;
}

static struct strv nstr(const char *s)
{
    return s ? strv_c(s) : (struct strv){"", 0};
}

/* The event's data map, into c->vb. */
static int event_data(struct chat *c, const char *kind, struct strv by, const struct strv *users,
                      uint32_t nusers, const struct ochange *chg, const struct req *r)
{
    msgpack_packer pk;
    buf_reset(&c->vb);
    msgpack_packer_init(&pk, &c->vb, buf_msgpack_write);
    uint32_t extra = 0;
    /* a new group's name is a changed field too: it goes in the create event */
    bool name = chg && (chg->set_name || chg->create);
    if (name)
        extra++;
    if (chg && chg->set_notice)
        extra++;
    if (chg && chg->set_open)
        extra++;
    bool admin = r->op == OP_GROUP_ADMIN, nick = r->op == OP_GROUP_NICK;
    extra += admin + nick;
    msgpack_pack_map(&pk, 4 + extra);
    enc_pack_cstr(&pk, "kind");
    enc_pack_cstr(&pk, kind);
    enc_pack_cstr(&pk, "by");
    enc_pack_strv(&pk, by);
    enc_pack_cstr(&pk, "users");
    uint32_t shown = nusers < EVENT_USERS_MAX ? nusers : EVENT_USERS_MAX;
    msgpack_pack_array(&pk, shown);
    for (uint32_t i = 0; i < shown; i++)
        enc_pack_strv(&pk, users[i]);
    enc_pack_cstr(&pk, "count");
    msgpack_pack_uint32(&pk, nusers);
    if (name) {
        enc_pack_cstr(&pk, "name");
        enc_pack_strv(&pk, chg->name);
    }
    if (chg && chg->set_notice) {
        enc_pack_cstr(&pk, "notice");
        enc_pack_strv(&pk, chg->notice);
    }
    if (chg && chg->set_open) {
        enc_pack_cstr(&pk, "open");
        if (chg->open)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
    }
    if (admin) {
        enc_pack_cstr(&pk, "admin");
        if (r->admin)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
    }
    if (nick) {
        enc_pack_cstr(&pk, "nick");
        enc_pack_strv(&pk, r->nick);
    }
    return buf_failed(&c->vb) ? -ENOMEM : 0;
}

/* The answer to a change: with the event's conv and seq when it writes one
 * (seq 0: none, a plain ok), and the group's id for a create. */
static struct rbuf *ok_frame(struct chat *c, const struct fwd *f, uint64_t seq)
{
    bool create = f->req.op == OP_GROUP_CREATE;
    if (!create && !seq) {
        if (enc_ok(&c->fb, f->req.id) < 0) {
            buf_reset(&c->fb);
            return NULL;
        }
        return chat_frame(&c->fb);
    }
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, f->req.id, 1 + (create ? 1 : 0) + (seq ? 1 : 0));
    if (create) {
        enc_pack_cstr(&pk, "group");
        enc_pack_strv(&pk, f->req.group);
    }
    enc_pack_cstr(&pk, "conv");
    enc_pack_strv(&pk, f->conv);
    if (seq) {
        enc_pack_cstr(&pk, "seq");
        msgpack_pack_uint64(&pk, seq);
    }
    if (enc_end(&c->fb, start) < 0) {
        buf_reset(&c->fb);
        return NULL;
    }
    return chat_frame(&c->fb);
}

/*
 * Writes chg's member rows and stages the event entry (kind) with it. users
 * are the affected ids for the event. Returns 1 (staged), or <0 with chg
 * freed by the caller.
 */
static int stage_event(struct chat *c, struct oconv *cv, struct fwd *f, const char *kind,
                       struct ochange *chg, const struct strv *users, uint32_t nusers)
{
    uint64_t seq = cv->staged_seq + 1;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < chg->nadds; i++) {
        chg->adds[i].joined_seq = seq;
        struct member_rec m = {.role = chg->adds[i].role, .joined_seq = seq};
        rc = put_member(c, cv, chg->adds[i].user, &m);
    }
    for (uint32_t i = 0; rc == 0 && i < chg->nupds; i++) {
        struct ochange_member *u = &chg->upds[i];
        struct omember *om = owner_member(cv, u->user);
        struct member_rec m = {.role = u->set_role ? u->role : om->role,
                               .joined_seq = om->joined_seq,
                               .nick = u->set_nick ? u->nick : nstr(om->nick),
                               .remark = u->set_remark ? u->remark : nstr(om->remark)};
        u->joined_seq = om->joined_seq;
        rc = put_member(c, cv, u->user, &m);
    }
    for (uint32_t i = 0; rc == 0 && i < chg->ndels; i++)
        rc = del_member(c, cv, chg->dels[i], kind ? seq : 0);
    struct rbuf *reply = NULL;
    if (rc == 0 && !(reply = ok_frame(c, f, kind ? seq : 0)))
        rc = -ENOMEM;
    if (rc == 0 && !kind) {
        rc = owner_stage_noentry(c, cv, f, chg, reply);
    } else if (rc == 0) {
        rc = event_data(c, kind, f->user, users, nusers, chg, &f->req);
        /* the event entry copies the data out of c->vb before it reuses it */
        uint8_t *data = rc == 0 ? malloc(c->vb.len) : NULL;
        if (rc == 0 && !data)
            rc = -ENOMEM;
        if (rc == 0) {
            uint32_t dlen = (uint32_t)c->vb.len;
            memcpy(data, c->vb.data, dlen);
            f->req.body = (struct strv){"", 0};
            f->req.body_bin = false;
            f->req.cmid = (struct strv){"", 0};
            rc = owner_stage_entry(c, cv, f, strv_c("event"), data, dlen, false, 0, chg, reply,
                                   NULL);
            free(data);
        }
    }
    if (rc < 0) {
        if (reply)
            rbuf_unref(reply);
        io_poison(c);
        return rc;
    }
    return 1;
}

/* ---- read-only ops ---- */

static int cmp_strv(const void *a, const void *b)
{
    return strv_cmp(*(const struct strv *)a, *(const struct strv *)b);
}

static int do_info(struct chat *c, struct oconv *cv, struct fwd *f, struct omember *me)
{
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, f->req.id, 8);
    enc_pack_cstr(&pk, "group");
    enc_pack_strv(&pk, f->req.group);
    enc_pack_cstr(&pk, "name");
    enc_pack_strv(&pk, nstr(cv->name));
    enc_pack_cstr(&pk, "notice");
    enc_pack_strv(&pk, nstr(cv->notice));
    enc_pack_cstr(&pk, "owner");
    enc_pack_strv(&pk, nstr(cv->owner));
    enc_pack_cstr(&pk, "open");
    if (cv->open)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    enc_pack_cstr(&pk, "count");
    msgpack_pack_uint64(&pk, map_count(&cv->members));
    enc_pack_cstr(&pk, "last_seq");
    msgpack_pack_uint64(&pk, cv->last_seq);
    enc_pack_cstr(&pk, "remark");
    enc_pack_strv(&pk, nstr(me->remark));
    if (enc_end(&c->fb, start) < 0) {
        buf_reset(&c->fb);
        return -ENOMEM;
    }
    chat_fwd_frame(c, f, chat_frame(&c->fb));
    return 0;
}

static int do_members(struct chat *c, struct oconv *cv, struct fwd *f)
{
    size_t n = map_count(&cv->members), k = 0;
    struct strv *ids = malloc((n ? n : 1) * sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    struct map_iter it;
    struct map_node *nd;
    map_iter_init(&it, &cv->members);
    while ((nd = map_next(&it)))
        if (!f->req.has_after || strv_cmp((struct strv){nd->key, nd->klen}, f->req.after_user) > 0)
            ids[k++] = (struct strv){nd->key, nd->klen};
    qsort(ids, k, sizeof(*ids), cmp_strv);
    uint32_t limit = f->req.has_limit ? f->req.limit : MEMBERS_DEFAULT;
    /* an element is at most ~64 + 64 + 40 bytes: keep the page within max_frame */
    uint32_t fit = (c->env.cfg->max_frame - 64) / 200;
    if (fit == 0)
        fit = 1; /* max_frame is at least 256 */
    if (limit > fit)
        limit = fit;
    bool more = k > limit;
    uint32_t shown = more ? limit : (uint32_t)k;
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, f->req.id, 2);
    enc_pack_cstr(&pk, "members");
    msgpack_pack_array(&pk, shown);
    for (uint32_t i = 0; i < shown; i++) {
        struct omember *m = owner_member(cv, ids[i]);
        msgpack_pack_map(&pk, 4);
        enc_pack_cstr(&pk, "user");
        enc_pack_strv(&pk, ids[i]);
        enc_pack_cstr(&pk, "role");
        enc_pack_cstr(&pk, role_name(m->role));
        enc_pack_cstr(&pk, "nick");
        enc_pack_strv(&pk, nstr(m->nick));
        enc_pack_cstr(&pk, "joined_seq");
        msgpack_pack_uint64(&pk, m->joined_seq);
    }
    free(ids);
    enc_pack_cstr(&pk, "more");
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (enc_end(&c->fb, start) < 0) {
        buf_reset(&c->fb);
        return -ENOMEM;
    }
    chat_fwd_frame(c, f, chat_frame(&c->fb));
    return 0;
}

/* ---- changing ops ---- */

/* The distinct ids of list (plus `first` when given) that pass keep(); caller frees. */
static struct ochange_member *pick(struct oconv *cv, struct strv first, const struct strv *list,
                                   uint32_t n, bool want_member, uint32_t *out_n)
{
    struct ochange_member *v = calloc(n + 1, sizeof(*v));
    uint32_t k = 0;
    if (!v)
        return NULL;
    struct map seen;
    map_init(&seen);
    for (uint32_t i = 0; i <= n; i++) {
        struct strv u = i == 0 ? first : list[i - 1];
        if (!u.len || map_get(&seen, u.p, u.len))
            continue;
        if ((owner_member(cv, u) != NULL) != want_member)
            continue;
        map_put(&seen, u.p, u.len, map_u64(1));
        v[k++].user = u;
    }
    map_deinit(&seen);
    *out_n = k;
    return v;
}

static int users_of(const struct ochange_member *m, uint32_t n, struct strv **out)
{
    *out = malloc((n ? n : 1) * sizeof(**out));
    if (!*out)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        (*out)[i] = m[i].user;
    return 0;
}

/* Copies the ids into chg->dels/arena (so they outlive the member map's nodes). */
static int set_dels(struct ochange *chg, const struct strv *ids, uint32_t n)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += ids[i].len;
    chg->dels = malloc((n ? n : 1) * sizeof(*chg->dels));
    chg->arena = malloc(total ? total : 1);
    if (!chg->dels || !chg->arena)
        return -ENOMEM;
    char *p = chg->arena;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(p, ids[i].p, ids[i].len);
        chg->dels[i] = (struct strv){p, ids[i].len};
        p += ids[i].len;
    }
    chg->ndels = n;
    return 0;
}

/* Does a group's text field (NULL: empty) already hold v? */
static bool holds(const char *cur, struct strv v)
{
    size_t n = cur ? strlen(cur) : 0;
    return n == v.len && (n == 0 || memcmp(cur, v.p, n) == 0);
}

int group_stage(struct chat *c, struct oconv *cv, struct fwd *f)
{
    const struct req *r = &f->req;
    struct strv me = f->user;
    bool live = cv->exists && !cv->dismissed;
    struct omember *m = live ? owner_member(cv, me) : NULL;
    int role = m ? m->role : -1;
    struct ochange *chg = NULL;
    struct strv *users = NULL;
    const char *kind = NULL;
    uint32_t nusers = 0;
    int rc;

    if (r->op == OP_GROUP_CREATE) {
        if (cv->exists)
            return -EEXIST;
    } else if (!live) {
        return -ENOENT;
    } else if (!m && r->op != OP_GROUP_JOIN) {
        return -EPERM;
    }
    if (r->op == OP_GROUP_INFO)
        return do_info(c, cv, f, m) < 0 ? -ENOMEM : (free(f), 0);
    if (r->op == OP_GROUP_MEMBERS)
        return do_members(c, cv, f) < 0 ? -ENOMEM : (free(f), 0);

    chg = calloc(1, sizeof(*chg));
    if (!chg)
        return -ENOMEM;
    uint32_t limit = c->env.cfg->max_group_size;
    switch (r->op) {
    case OP_GROUP_CREATE:
        kind = "create";
        chg->create = true;
        chg->name = r->name;
        chg->notice = (struct strv){"", 0};
        chg->owner = me;
        chg->adds = pick(cv, me, r->users, r->nusers, false, &chg->nadds);
        if (!chg->adds)
            goto oom;
        if (chg->nadds > limit) {
            rc = -E2BIG;
            goto fail;
        }
        chg->adds[0].role = ROLE_OWNER;
        break;
    case OP_GROUP_INVITE:
    case OP_GROUP_JOIN:
        if (r->op == OP_GROUP_JOIN && m) {
            rc = 0;
            goto noop;
        }
        if (r->op == OP_GROUP_JOIN && !cv->open) {
            rc = -EPERM;
            goto fail;
        }
        kind = r->op == OP_GROUP_JOIN ? "join" : "invite";
        chg->adds = r->op == OP_GROUP_JOIN
                        ? pick(cv, me, NULL, 0, false, &chg->nadds)
                        : pick(cv, (struct strv){0}, r->users, r->nusers, false, &chg->nadds);
        if (!chg->adds)
            goto oom;
        if (map_count(&cv->members) + chg->nadds > limit) {
            rc = -E2BIG;
            goto fail;
        }
        break;
    case OP_GROUP_KICK:
    case OP_GROUP_LEAVE: {
        struct ochange_member *v;
        uint32_t n;
        if (r->op == OP_GROUP_LEAVE) {
            if (role == ROLE_OWNER) {
                rc = -EPERM;
                goto fail;
            }
            v = pick(cv, me, NULL, 0, true, &n);
        } else {
            if (role < ROLE_ADMIN) {
                rc = -EPERM;
                goto fail;
            }
            v = pick(cv, (struct strv){0}, r->users, r->nusers, true, &n);
            for (uint32_t i = 0; v && i < n; i++) {
                struct omember *t = owner_member(cv, v[i].user);
                if (strv_eq(v[i].user, me) || t->role >= role) {
                    free(v);
                    rc = -EPERM;
                    goto fail;
                }
            }
        }
        if (!v)
            goto oom;
        kind = r->op == OP_GROUP_LEAVE ? "leave" : "kick";
        rc = users_of(v, n, &users);
        nusers = n;
        if (rc == 0)
            rc = set_dels(chg, users, n);
        free(v);
        if (rc < 0)
            goto fail;
        break;
    }
    case OP_GROUP_DISMISS: {
        if (role != ROLE_OWNER) {
            rc = -EPERM;
            goto fail;
        }
        kind = "dismiss";
        chg->dismiss = true;
        size_t n = map_count(&cv->members), k = 0;
        struct strv *all = malloc((n ? n : 1) * sizeof(*all));
        if (!all)
            goto oom;
        struct map_iter it;
        struct map_node *nd;
        map_iter_init(&it, &cv->members);
        while ((nd = map_next(&it)))
            all[k++] = (struct strv){nd->key, nd->klen};
        rc = set_dels(chg, all, (uint32_t)k);
        free(all);
        if (rc < 0)
            goto fail;
        break;
    }
    case OP_GROUP_UPDATE:
        if (role < ROLE_ADMIN) {
            rc = -EPERM;
            goto fail;
        }
        if ((!r->has_name || holds(cv->name, r->name)) &&
            (!r->has_notice || holds(cv->notice, r->notice)) &&
            (!r->has_open || r->open == cv->open)) {
            rc = 0;
            goto noop;
        }
        /* the event carries the fields that change (PROTOCOL §6), not the
         * ones given with the value they already had */
        kind = "update";
        chg->set_name = r->has_name && !holds(cv->name, r->name);
        chg->name = r->name;
        chg->set_notice = r->has_notice && !holds(cv->notice, r->notice);
        chg->notice = r->notice;
        chg->set_open = r->has_open && r->open != cv->open;
        chg->open = r->open;
        break;
    case OP_GROUP_ADMIN: {
        struct omember *t = owner_member(cv, r->user);
        if (role != ROLE_OWNER) {
            rc = -EPERM;
            goto fail;
        }
        if (!t) {
            rc = -ENOENT;
            goto fail;
        }
        if (t->role == ROLE_OWNER) {
            rc = -EPERM;
            goto fail;
        }
        if (t->role == (r->admin ? ROLE_ADMIN : ROLE_MEMBER)) {
            rc = 0;
            goto noop;
        }
        kind = "admin";
        chg->upds = calloc(1, sizeof(*chg->upds));
        if (!chg->upds)
            goto oom;
        chg->nupds = 1;
        chg->upds[0] = (struct ochange_member){
            .user = r->user, .role = r->admin ? ROLE_ADMIN : ROLE_MEMBER, .set_role = true};
        users = malloc(sizeof(*users));
        if (!users)
            goto oom;
        users[0] = r->user;
        nusers = 1;
        break;
    }
    case OP_GROUP_NICK:
    case OP_GROUP_REMARK:
        if (m && (r->op == OP_GROUP_NICK ? holds(m->nick, r->nick) : holds(m->remark, r->remark))) {
            rc = 0;
            goto noop;
        }
        kind = r->op == OP_GROUP_NICK ? "nick" : NULL;
        chg->upds = calloc(1, sizeof(*chg->upds));
        if (!chg->upds)
            goto oom;
        chg->nupds = 1;
        chg->upds[0].user = me;
        chg->upds[0].set_nick = r->op == OP_GROUP_NICK;
        chg->upds[0].nick = r->nick;
        chg->upds[0].set_remark = r->op == OP_GROUP_REMARK;
        chg->upds[0].remark = r->remark;
        if (kind) {
            users = malloc(sizeof(*users));
            if (!users)
                goto oom;
            users[0] = me;
            nusers = 1;
        }
        break;
    default:
        rc = -RP_EREQUEST;
        goto fail;
    }
    if (!users && chg->nadds) {
        if (users_of(chg->adds, chg->nadds, &users) < 0)
            goto oom;
        nusers = chg->nadds;
    } else if (!users && chg->ndels) { /* kick, leave, dismiss: the removed */
        nusers = chg->ndels;
        users = malloc(nusers * sizeof(*users));
        if (!users)
            goto oom;
        memcpy(users, chg->dels, nusers * sizeof(*users));
    }
    if ((r->op == OP_GROUP_INVITE || r->op == OP_GROUP_KICK) && !chg->nadds && !chg->ndels) {
        rc = 0;
        goto noop; /* nobody affected: no event */
    }
    rc = stage_event(c, cv, f, kind, chg, users, nusers);
    free(users);
    if (rc < 0) {
        ochange_free(chg);
        free(chg);
    }
    return rc; // NOLINT(clang-analyzer-unix.Malloc): staged, chg belongs to its record
oom:
    rc = -ENOMEM;
fail:
    free(users);
    ochange_free(chg);
    free(chg);
    return rc;
noop:
    free(users);
    ochange_free(chg);
    free(chg);
    chat_fwd_ok(c, f);
    free(f);
    return 0;
}
