/*
 * Friend ops. State per side: FRIEND_ASKED (this user asked the peer),
 * FRIEND_ASKING (the peer asked this user), FRIEND_YES. A request to a peer
 * who has already asked this user is an accept.
 */
#include "engine/chat/friend.h"

#include "engine/chat/core.h"
#include "engine/chat/values.h"

#include "base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct pending_ok {
    conn_id_t conn;
    uint32_t id;
};

static void on_written(struct chat *c, void *ctx, int err)
{
    struct pending_ok *p = ctx;
    if (err < 0)
        chat_reply_err(c, p->conn, true, p->id, err, NULL);
    else
        chat_reply_ok(c, p->conn, p->id);
    free(p);
}

/* Stage user|peer := state (FRIEND_NONE deletes) and update memory when loaded. */
static int put_side(struct chat *c, struct strv user, struct strv peer, uint8_t state, uint64_t ts,
                    struct strv note)
{
    struct stg_batch *b = io_batch(c);
    int rc = b ? stg_key_friend(&c->kb, user.p, user.len, peer.p, peer.len) : -ENOMEM;
    if (rc == 0 && state == FRIEND_NONE) {
        rc = stg_batch_del(b, STG_CF_FRIEND, c->kb.data, c->kb.len);
    } else if (rc == 0) {
        struct friend_rec fr = {.state = state, .ts = ts, .note = note};
        buf_reset(&c->vb);
        rc = val_friend_encode(&c->vb, &fr);
        if (rc == 0)
            rc = stg_batch_put(b, STG_CF_FRIEND, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    }
    if (rc < 0)
        return rc;
    struct user *u = home_user(c, user);
    if (!u)
        return 0;
    struct ufriend *f = map_get(&u->friends, peer.p, peer.len);
    if (state == FRIEND_NONE) {
        if (f) {
            map_del(&u->friends, peer.p, peer.len);
            free(f->note);
            free(f);
        }
        return 0;
    }
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f || !map_put(&u->friends, peer.p, peer.len, f)) {
            free(f);
            return -ENOMEM;
        }
    }
    free(f->note);
    f->note = note.len ? strndup(note.p, note.len) : NULL;
    f->state = state;
    f->ts = ts;
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
    struct pending_ok *p = malloc(sizeof(*p));
    struct fwd *pf = fwd_new(&op, me, (struct strv){s->dev, s->devlen}, (struct strv){"", 0},
                             s->conn, c->env.shard);
    int rc = p && pf ? 0 : -ENOMEM;
    if (rc == 0)
        rc = put_side(c, me, peer, mine, now, mine == FRIEND_ASKED ? r->note : (struct strv){0});
    if (rc == 0) {
        p->conn = s->conn;
        p->id = r->id;
        rc = io_on_commit(c, on_written, p);
    }
    if (rc < 0) {
        io_poison(c);
        free(p);
        free(pf);
        chat_reply_err(c, s->conn, true, r->id, rc, NULL);
        return;
    }
    pf->extra = now;
    if (xfer_send(c, xfer_home(c, peer), XK_FRIEND, 0, pf) < 0)
        free(pf);
    if (mine == FRIEND_YES)
        push(c, me, "added", peer, (struct strv){0}, false);
    else if (mine == FRIEND_NONE)
        push(c, me, "removed", peer, (struct strv){0}, false);
}

void friend_on_peer(struct chat *c, struct fwd *f)
{
    struct strv peer = f->req.user, from = f->user;
    int rc = 0;
    switch (f->req.op) {
    case OP_FRIEND_REQUEST:
        rc = put_side(c, peer, from, FRIEND_ASKING, f->extra, f->req.note);
        push(c, peer, "request", from, f->req.note, true);
        break;
    case OP_FRIEND_ACCEPT:
        rc = put_side(c, peer, from, FRIEND_YES, f->extra, (struct strv){0});
        push(c, peer, "added", from, (struct strv){0}, false);
        break;
    default:
        rc = put_side(c, peer, from, FRIEND_NONE, 0, (struct strv){0});
        push(c, peer, "removed", from, (struct strv){0}, false);
        break;
    }
    if (rc < 0)
        io_poison(c);
    free(f);
}
