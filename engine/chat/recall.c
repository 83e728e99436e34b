/*
 * Recall at the conversation's owner: the target entry (read from the log
 * just before staging, so an earlier recall of it is already durable) is
 * checked against the rules, rewritten as "recalled" with an empty body, and
 * a `recall` entry with "target" is appended, both in one batch. Recall is a
 * barrier (owner.h).
 */
#include "engine/chat/recall.h"

#include "engine/chat/core.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "protocol/ident.h"

#include <errno.h>
#include <msgpack.h>

/* The recall rules (PROTOCOL §5); f->extra_ptr holds the target entry when found. */
int recall_stage(struct chat *c, struct oconv *cv, struct fwd *f)
{
    struct stg_result *res = f->extra_ptr;
    struct entry e;
    if (f->extra)
        return -RP_ESTORAGE;
    if (cv->kind == CONV_GROUP && (!cv->exists || cv->dismissed))
        return -ENOENT;
    struct omember *me = cv->kind == CONV_GROUP ? owner_member(cv, f->user) : NULL;
    if (cv->kind == CONV_GROUP && !me)
        return -EPERM;
    if (!res || entry_decode(res->kv[0].val, res->kv[0].vlen, &e) < 0)
        return -ENOENT;
    if (!strv_eq_c(e.type, "event") && !strv_eq_c(e.type, "recall") &&
        !strv_eq_c(e.type, "recalled")) {
        bool mine = strv_eq(e.from, f->user);
        bool boss = me && me->role >= ROLE_ADMIN;
        if (!mine && !boss)
            return -EPERM;
        if (!boss && chat_now(c) > e.ts + c->env.cfg->recall_window_ms)
            return -RP_EEXPIRED;
    } else {
        return -ENOENT; /* server entries and recalled ones cannot be recalled */
    }
    /* the original now reads back as "recalled" with an empty body of its type */
    e.type = strv_c("recalled");
    e.body = (struct strv){"", 0};
    buf_reset(&c->vb);
    int rc = enc_entry(&c->vb, &e);
    if (rc == 0)
        rc = stg_key_log(&c->kb, cv->id, cv->idlen, e.seq);
    if (rc == 0)
        rc = stg_batch_put(io_batch(c), STG_CF_LOG, c->kb.data, c->kb.len, c->vb.data, c->vb.len);
    if (rc < 0)
        return rc;
    msgpack_packer pk;
    uint64_t seq = cv->staged_seq + 1;
    size_t start = enc_ok_begin(&c->fb, &pk, f->req.id, 1);
    enc_pack_cstr(&pk, "seq");
    msgpack_pack_uint64(&pk, seq);
    struct rbuf *reply = enc_end(&c->fb, start) == 0 ? chat_frame(&c->fb) : NULL;
    if (!reply) {
        buf_reset(&c->fb);
        io_poison(c);
        return -ENOMEM;
    }
    f->req.body = (struct strv){"", 0};
    f->req.body_bin = false;
    f->req.cmid = (struct strv){"", 0};
    rc =
        owner_stage_entry(c, cv, f, strv_c("recall"), NULL, 0, true, f->req.seq, NULL, reply, NULL);
    if (rc < 0) {
        rbuf_unref(reply);
        io_poison(c);
    }
    return rc < 0 ? rc : 1;
}
