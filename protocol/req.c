/*
 * Request decoding in three steps:
 *  1. mpscan_map: the frame is exactly one sane msgpack map, or it is fatal.
 *  2. One pass over the map records where the value of each known key lies
 *     (the last occurrence wins); unknown keys are skipped.
 *  3. The op's row in the op table says which keys it requires and which it
 *     allows; each present key of the op is decoded by its field kind, then
 *     the op's cross-field rules run.
 * `id` and `op` are read first, so that every later error can echo them.
 */
#include "protocol/req.h"

#include "protocol/utf8.h"

#include "base/err.h"
#include "protocol/ident.h"
#include "protocol/mpread.h"
#include "protocol/mpscan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum key {
    K_OP,
    K_ID,
    K_TOKEN,
    K_DEVICE,
    K_RESUME,
    K_TO,
    K_GROUP,
    K_CMID,
    K_TYPE,
    K_BODY,
    K_CONV,
    K_SEQ,
    K_BEFORE,
    K_AFTER,
    K_LIMIT,
    K_NAME,
    K_NOTICE,
    K_OPEN,
    K_USER,
    K_ADMIN,
    K_NICK,
    K_REMARK,
    K_NOTE,
    K_USERS,
    K_MEMBERS,
    K__COUNT
};

#define KEYS(X)                                                                                    \
    X(OP, "op")                                                                                    \
    X(ID, "id")                                                                                    \
    X(TOKEN, "token")                                                                              \
    X(DEVICE, "device")                                                                            \
    X(RESUME, "resume")                                                                            \
    X(TO, "to")                                                                                    \
    X(GROUP, "group")                                                                              \
    X(CMID, "cmid")                                                                                \
    X(TYPE, "type")                                                                                \
    X(BODY, "body")                                                                                \
    X(CONV, "conv")                                                                                \
    X(SEQ, "seq")                                                                                  \
    X(BEFORE, "before")                                                                            \
    X(AFTER, "after")                                                                              \
    X(LIMIT, "limit")                                                                              \
    X(NAME, "name")                                                                                \
    X(NOTICE, "notice")                                                                            \
    X(OPEN, "open")                                                                                \
    X(USER, "user")                                                                                \
    X(ADMIN, "admin")                                                                              \
    X(NICK, "nick")                                                                                \
    X(REMARK, "remark")                                                                            \
    X(NOTE, "note")                                                                                \
    X(USERS, "users")                                                                              \
    X(MEMBERS, "members")

#define KEY_NAME(k, s)    [K_##k] = s,
#define KEY_LEN(k, s)     [K_##k] = sizeof(s) - 1,
#define KEY_MISSING(k, s) [K_##k] = "missing " s,
#define KEY_INVALID(k, s) [K_##k] = "invalid " s,
static const char *const key_names[K__COUNT] = {KEYS(KEY_NAME)};
static const uint8_t key_lens[K__COUNT] = {KEYS(KEY_LEN)};
static const char *const key_missing[K__COUNT] = {KEYS(KEY_MISSING)};
static const char *const key_invalid[K__COUNT] = {KEYS(KEY_INVALID)};

#define B(k) (1u << K_##k)

struct op_row {
    const char *name;
    uint32_t required; /* besides op (and id, except for ack) */
    uint32_t optional;
};

static const struct op_row ops[OP__COUNT] = {
    [OP_HELLO] = {"hello", B(TOKEN) | B(DEVICE), B(RESUME)},
    [OP_PING] = {"ping", 0, 0},
    [OP_SEND] = {"send", B(CMID) | B(TYPE) | B(BODY), B(TO) | B(GROUP)},
    [OP_ACK] = {"ack", B(CONV) | B(SEQ), 0},
    [OP_READ] = {"read", B(CONV) | B(SEQ), 0},
    [OP_RECALL] = {"recall", B(CONV) | B(SEQ), 0},
    [OP_SYNC] = {"sync", 0, B(AFTER)},
    [OP_HISTORY] = {"history", B(CONV), B(BEFORE) | B(AFTER) | B(LIMIT)},
    [OP_GROUP_CREATE] = {"group.create", B(NAME), B(MEMBERS) | B(GROUP)},
    [OP_GROUP_INVITE] = {"group.invite", B(GROUP) | B(USERS), 0},
    [OP_GROUP_JOIN] = {"group.join", B(GROUP), 0},
    [OP_GROUP_KICK] = {"group.kick", B(GROUP) | B(USERS), 0},
    [OP_GROUP_LEAVE] = {"group.leave", B(GROUP), 0},
    [OP_GROUP_DISMISS] = {"group.dismiss", B(GROUP), 0},
    [OP_GROUP_UPDATE] = {"group.update", B(GROUP), B(NAME) | B(NOTICE) | B(OPEN)},
    [OP_GROUP_ADMIN] = {"group.admin", B(GROUP) | B(USER) | B(ADMIN), 0},
    [OP_GROUP_NICK] = {"group.nick", B(GROUP) | B(NICK), 0},
    [OP_GROUP_REMARK] = {"group.remark", B(GROUP) | B(REMARK), 0},
    [OP_GROUP_INFO] = {"group.info", B(GROUP), 0},
    [OP_GROUP_MEMBERS] = {"group.members", B(GROUP), B(AFTER) | B(LIMIT)},
    [OP_GROUP_LIST] = {"group.list", 0, B(AFTER)},
    [OP_FRIEND_REQUEST] = {"friend.request", B(USER), B(NOTE)},
    [OP_FRIEND_ACCEPT] = {"friend.accept", B(USER), 0},
    [OP_FRIEND_REMOVE] = {"friend.remove", B(USER), 0},
    [OP_FRIEND_LIST] = {"friend.list", 0, B(AFTER)},
};
_Static_assert(sizeof(ops) / sizeof(ops[0]) == OP__COUNT, "one row per op");
_Static_assert(K__COUNT <= 32, "key masks are 32 bits");

const char *op_name(enum op op)
{
    return (unsigned)op < OP__COUNT ? ops[op].name : "?";
}

int op_from_name(struct strv s)
{
    for (int i = 0; i < OP__COUNT; i++)
        if (s.len > 0 && ops[i].name[0] == s.p[0] && strv_eq_c(s, ops[i].name))
            return i;
    return -1;
}

int req_decoder_init(struct req_decoder *d)
{
    d->users = NULL;
    d->cap = 0;
    return 0;
}

void req_decoder_deinit(struct req_decoder *d)
{
    free(d->users);
    d->users = NULL;
    d->cap = 0;
}

/* Where each known key's value lies in the frame. */
struct slots {
    const uint8_t *at[K__COUNT];
    const uint8_t *end;
};

/* Every frame's keys come through here: lengths compared first, no strlen. */
static int find_key(struct strv k)
{
    for (int i = 0; i < K__COUNT; i++)
        if (k.len == key_lens[i] && memcmp(k.p, key_names[i], k.len) == 0)
            return i;
    return -1;
}

/* Step 2. Keys must be strings; values are only skipped here. */
static int index_map(const uint8_t *frame, uint32_t len, struct slots *s, const char **msg)
{
    struct mpr r;
    uint32_t pairs;
    mpr_init(&r, frame, len);
    memset(s, 0, sizeof(*s));
    s->end = frame + len;
    if (mpr_map(&r, &pairs))
        return -RP_EFRAME;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv k;
        /* PROTOCOL §2: a frame is a map with string keys; anything else is
         * not a frame of this protocol at all. */
        if (mpr_str(&r, &k)) {
            *msg = "keys must be strings";
            return -RP_EFRAME;
        }
        int key = find_key(k);
        if (key >= 0)
            s->at[key] = r.p;
        if (mpr_skip(&r))
            return -RP_EFRAME;
    }
    return 0;
}

static void reader_at(const struct slots *s, enum key k, struct mpr *r)
{
    r->p = s->at[k];
    r->end = s->end;
}

static int get_text(const struct slots *s, enum key k, uint32_t min, uint32_t max, struct strv *out)
{
    struct mpr r;
    reader_at(s, k, &r);
    if (mpr_str(&r, out) || out->len < min || out->len > max || !utf8_valid(out->p, out->len))
        return -RP_EREQUEST;
    return 0;
}

static int get_id(const struct slots *s, enum key k, bool device, struct strv *out)
{
    struct mpr r;
    reader_at(s, k, &r);
    if (mpr_str(&r, out))
        return -RP_EREQUEST;
    return (device ? ident_device_ok(*out) : ident_user_ok(*out)) ? 0 : -RP_EREQUEST;
}

static int get_uint(const struct slots *s, enum key k, uint64_t *v)
{
    struct mpr r;
    reader_at(s, k, &r);
    return mpr_uint(&r, v) ? -RP_EREQUEST : 0;
}

static int get_bool(const struct slots *s, enum key k, bool *v)
{
    struct mpr r;
    reader_at(s, k, &r);
    return mpr_bool(&r, v) ? -RP_EREQUEST : 0;
}

static int get_users(struct req_decoder *d, const struct req_limits *lim, const struct slots *s,
                     enum key k, struct req *out, const char **msg)
{
    struct mpr r;
    uint32_t n;
    reader_at(s, k, &r);
    if (mpr_array(&r, &n)) {
        *msg = key_invalid[k];
        return -RP_EREQUEST;
    }
    if (n > lim->max_users) {
        *msg = "too many users";
        return -RP_ETOOLARGE;
    }
    if (n > d->cap) {
        struct strv *u = realloc(d->users, (size_t)n * sizeof(*u));
        if (!u)
            return -ENOMEM;
        d->users = u;
        d->cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (mpr_str(&r, &d->users[i]) || !ident_user_ok(d->users[i])) {
            *msg = key_invalid[k];
            return -RP_EREQUEST;
        }
    }
    out->users = d->users;
    out->nusers = n;
    return 0;
}

static bool reserved_type(struct strv t)
{
    return strv_eq_c(t, "event") || strv_eq_c(t, "recall") || strv_eq_c(t, "recalled");
}

/* Decodes one present key of the op into out. */
static int get_field(struct req_decoder *d, const struct req_limits *lim, const struct slots *s,
                     enum key k, struct req *out, const char **msg)
{
    uint64_t v;
    int err = 0;
    struct mpr r;

    *msg = key_invalid[k];
    switch (k) {
    case K_TOKEN:
        /* an empty str is a malformed token, which the hello refuses as
         * unauthorized like any other: no lower bound here */
        return get_text(s, k, 0, UINT32_MAX, &out->token);
    case K_DEVICE:
        return get_id(s, k, true, &out->device);
    case K_RESUME:
        return get_bool(s, k, &out->resume);
    case K_TO:
        return get_id(s, k, false, &out->to);
    case K_GROUP:
        out->has_group = true;
        return get_id(s, k, false, &out->group);
    case K_USER:
        return get_id(s, k, false, &out->user);
    case K_CMID:
        return get_text(s, k, 1, REQ_CMID_MAX, &out->cmid);
    case K_TYPE:
        if ((err = get_text(s, k, 1, REQ_TYPE_MAX, &out->type)))
            return err;
        if (reserved_type(out->type)) {
            *msg = "reserved type";
            return -RP_EREQUEST;
        }
        return 0;
    case K_BODY:
        reader_at(s, k, &r);
        if (mpr_strbin(&r, &out->body, &out->body_bin))
            return -RP_EREQUEST;
        if (out->body.len > lim->max_body) {
            *msg = "body too large";
            return -RP_ETOOLARGE;
        }
        return 0;
    case K_CONV:
        reader_at(s, k, &r);
        if (mpr_str(&r, &out->conv) || ident_conv_parse(out->conv, NULL, NULL) == CONV_BAD)
            return -RP_EREQUEST;
        return 0;
    case K_SEQ:
        return get_uint(s, k, &out->seq);
    case K_BEFORE:
        out->has_before = true;
        return get_uint(s, k, &out->before);
    case K_AFTER:
        out->has_after = true;
        if (out->op == OP_GROUP_MEMBERS || out->op == OP_GROUP_LIST || out->op == OP_FRIEND_LIST)
            return get_id(s, k, false, &out->after_user);
        if (out->op == OP_SYNC) /* the cursor a previous page gave ("next") */
            return get_text(s, k, 1, REQ_SYNC_CURSOR_MAX, &out->after_user);
        return get_uint(s, k, &out->after);
    case K_LIMIT:
        if ((err = get_uint(s, k, &v)))
            return err;
        if (v < 1 || v > (out->op == OP_HISTORY ? REQ_HISTORY_LIMIT_MAX : REQ_MEMBERS_LIMIT_MAX))
            return -RP_EREQUEST;
        out->limit = (uint32_t)v;
        out->has_limit = true;
        return 0;
    case K_NAME:
        out->has_name = true;
        return get_text(s, k, 1, REQ_NAME_MAX, &out->name);
    case K_NOTICE:
        out->has_notice = true;
        return get_text(s, k, 0, REQ_NOTICE_MAX, &out->notice);
    case K_OPEN:
        out->has_open = true;
        return get_bool(s, k, &out->open);
    case K_ADMIN:
        out->has_admin = true;
        return get_bool(s, k, &out->admin);
    case K_NICK:
        return get_text(s, k, 0, REQ_NICK_MAX, &out->nick);
    case K_REMARK:
        return get_text(s, k, 0, REQ_REMARK_MAX, &out->remark);
    case K_NOTE:
        out->has_note = true;
        return get_text(s, k, 0, REQ_NOTE_MAX, &out->note);
    case K_USERS:
    case K_MEMBERS:
        out->has_members = k == K_MEMBERS;
        return get_users(d, lim, s, k, out, msg);
    default:
        return 0;
    }
}

/* Step 3's cross-field rules. */
static int check_op(const struct req *out, const char **msg)
{
    switch (out->op) {
    case OP_SEND:
        if ((out->to.len != 0) == out->has_group) {
            *msg = "exactly one of to and group";
            return -RP_EREQUEST;
        }
        return 0;
    case OP_HISTORY:
        if (out->has_before && out->has_after) {
            *msg = "before and after are exclusive";
            return -RP_EREQUEST;
        }
        return 0;
    case OP_GROUP_UPDATE:
        if (!out->has_name && !out->has_notice && !out->has_open) {
            *msg = "nothing to update";
            return -RP_EREQUEST;
        }
        return 0;
    default:
        return 0;
    }
}

/* Reads op and id so that errors can echo them. The op is read even when the
 * id is invalid: a ping with a mistyped id is a bad ping (bad_request, also
 * before hello), not an unknown request. */
static int get_head(const struct slots *s, struct req *out, const char **msg)
{
    uint64_t id;
    struct strv name;
    struct mpr r;
    int op, err = 0;

    if (!s->at[K_OP]) {
        *msg = key_missing[K_OP];
        err = -RP_EREQUEST;
    } else {
        reader_at(s, K_OP, &r);
        if (mpr_str(&r, &name)) {
            *msg = key_invalid[K_OP];
            err = -RP_EREQUEST;
        } else if ((op = op_from_name(name)) < 0) {
            *msg = "unknown op";
            err = -RP_EREQUEST;
        } else {
            out->op = (enum op)op;
        }
    }
    if (s->at[K_ID]) {
        if (get_uint(s, K_ID, &id) || id > UINT32_MAX) {
            *msg = key_invalid[K_ID];
            return -RP_EREQUEST;
        }
        out->has_id = true;
        out->id = (uint32_t)id;
    }
    if (err)
        return err;
    if (!out->has_id && out->op != OP_ACK) {
        *msg = key_missing[K_ID];
        return -RP_EREQUEST;
    }
    return 0;
}

int req_decode(struct req_decoder *d, const struct req_limits *lim, const uint8_t *frame,
               uint32_t len, struct req *out, const char **errmsg)
{
    const char *msg_store = NULL, **msg = errmsg ? errmsg : &msg_store;
    struct slots s;
    int err;

    memset(out, 0, sizeof(*out));
    out->op = OP__COUNT;
    out->resume = true;
    *msg = NULL;

    if (mpscan_map(frame, len)) {
        *msg = "bad frame";
        return -RP_EFRAME;
    }
    if ((err = index_map(frame, len, &s, msg)))
        goto fail;
    if ((err = get_head(&s, out, msg)))
        goto fail;

    const struct op_row *row = &ops[out->op];
    for (int k = K_TOKEN; k < K__COUNT; k++) {
        uint32_t bit = 1u << k;
        if (!((row->required | row->optional) & bit))
            continue;
        if (!s.at[k]) {
            if (row->required & bit) {
                *msg = key_missing[k];
                err = -RP_EREQUEST;
                goto fail;
            }
            continue;
        }
        if ((err = get_field(d, lim, &s, (enum key)k, out, msg)))
            goto fail;
    }
    if ((err = check_op(out, msg)))
        goto fail;
    *msg = NULL;
    return 0;

fail:
    if (err == -RP_EFRAME && !*msg)
        *msg = "bad frame";
    return err;
}
