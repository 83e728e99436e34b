/*
 * Record encodings. Every map is written with the keys in a fixed order and
 * read in any order; a key of the wrong type is a corrupt record (-RP_EFRAME)
 * rather than a silently defaulted field.
 */
#include "engine/chat/values.h"

#include "base/err.h"
#include "protocol/enc.h"
#include "protocol/mpread.h"

#include <errno.h>
#include <msgpack.h>

const char *role_name(int role)
{
    switch (role) {
    case ROLE_OWNER:
        return "owner";
    case ROLE_ADMIN:
        return "admin";
    default:
        return "member";
    }
}

static void pk_init(msgpack_packer *pk, struct buf *b)
{
    msgpack_packer_init(pk, b, buf_msgpack_write);
}

static void pk_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    enc_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pk_kv_str(msgpack_packer *pk, const char *k, struct strv v)
{
    enc_pack_cstr(pk, k);
    enc_pack_strv(pk, v);
}

static void pk_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    enc_pack_cstr(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static int done(const struct buf *b)
{
    return buf_failed(b) ? -ENOMEM : 0;
}

/*
 * Walks a map of one-letter keys, calling field() for each; field() reads the
 * value (or returns 1 to have it skipped).
 */
typedef int (*field_fn)(struct mpr *r, char key, void *out);

static int walk(const uint8_t *p, uint32_t n, field_fn field, void *out)
{
    struct mpr r;
    uint32_t pairs;
    mpr_init(&r, p, n);
    if (mpr_map(&r, &pairs) < 0)
        return -RP_EFRAME;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv k;
        if (mpr_str(&r, &k) < 0)
            return -RP_EFRAME;
        int rc = k.len == 1 ? field(&r, k.p[0], out) : 1;
        if (rc == 1)
            rc = mpr_skip(&r);
        if (rc < 0)
            return -RP_EFRAME;
    }
    return 0;
}

static int rd_u8(struct mpr *r, uint8_t *v)
{
    uint64_t x;
    int rc = mpr_uint(r, &x);
    if (rc < 0 || x > 255)
        return -RP_EFRAME;
    *v = (uint8_t)x;
    return 0;
}

int val_conv_encode(struct buf *b, const struct conv_meta *m)
{
    msgpack_packer pk;
    pk_init(&pk, b);
    bool group = m->kind == 2;
    msgpack_pack_map(&pk, group ? 9 : 3);
    pk_kv_u64(&pk, "k", m->kind);
    pk_kv_u64(&pk, "s", m->last_seq);
    pk_kv_u64(&pk, "t", m->last_ts);
    if (group) {
        pk_kv_str(&pk, "n", m->name);
        pk_kv_str(&pk, "c", m->notice);
        pk_kv_str(&pk, "o", m->owner);
        pk_kv_bool(&pk, "p", m->open);
        pk_kv_bool(&pk, "d", m->dismissed);
        pk_kv_u64(&pk, "m", m->members);
    }
    return done(b);
}

static int conv_field(struct mpr *r, char k, void *out)
{
    struct conv_meta *m = out;
    uint64_t v;
    switch (k) {
    case 'k':
        return rd_u8(r, &m->kind);
    case 's':
        return mpr_uint(r, &m->last_seq);
    case 't':
        return mpr_uint(r, &m->last_ts);
    case 'n':
        return mpr_str(r, &m->name);
    case 'c':
        return mpr_str(r, &m->notice);
    case 'o':
        return mpr_str(r, &m->owner);
    case 'p':
        return mpr_bool(r, &m->open);
    case 'd':
        return mpr_bool(r, &m->dismissed);
    case 'm':
        if (mpr_uint(r, &v) < 0 || v > UINT32_MAX)
            return -RP_EFRAME;
        m->members = (uint32_t)v;
        return 0;
    default:
        return 1;
    }
}

int val_conv_decode(const uint8_t *p, uint32_t n, struct conv_meta *m)
{
    *m = (struct conv_meta){0};
    return walk(p, n, conv_field, m);
}

int val_member_encode(struct buf *b, const struct member_rec *m)
{
    msgpack_packer pk;
    pk_init(&pk, b);
    msgpack_pack_map(&pk, 4);
    pk_kv_u64(&pk, "r", m->role);
    pk_kv_u64(&pk, "j", m->joined_seq);
    pk_kv_str(&pk, "n", m->nick);
    pk_kv_str(&pk, "m", m->remark);
    return done(b);
}

static int member_field(struct mpr *r, char k, void *out)
{
    struct member_rec *m = out;
    switch (k) {
    case 'r':
        return rd_u8(r, &m->role);
    case 'j':
        return mpr_uint(r, &m->joined_seq);
    case 'n':
        return mpr_str(r, &m->nick);
    case 'm':
        return mpr_str(r, &m->remark);
    default:
        return 1;
    }
}

int val_member_decode(const uint8_t *p, uint32_t n, struct member_rec *m)
{
    *m = (struct member_rec){0};
    return walk(p, n, member_field, m);
}

int val_userconv_encode(struct buf *b, const struct userconv_rec *u)
{
    msgpack_packer pk;
    pk_init(&pk, b);
    msgpack_pack_map(&pk, u->left_seq ? 4 : 3);
    pk_kv_u64(&pk, "k", u->kind);
    pk_kv_u64(&pk, "r", u->role);
    pk_kv_u64(&pk, "j", u->joined_seq);
    if (u->left_seq)
        pk_kv_u64(&pk, "l", u->left_seq);
    return done(b);
}

static int userconv_field(struct mpr *r, char k, void *out)
{
    struct userconv_rec *u = out;
    switch (k) {
    case 'k':
        return rd_u8(r, &u->kind);
    case 'r':
        return rd_u8(r, &u->role);
    case 'j':
        return mpr_uint(r, &u->joined_seq);
    case 'l':
        return mpr_uint(r, &u->left_seq);
    default:
        return 1;
    }
}

int val_userconv_decode(const uint8_t *p, uint32_t n, struct userconv_rec *u)
{
    *u = (struct userconv_rec){0};
    return walk(p, n, userconv_field, u);
}

int val_left_encode(struct buf *b, const struct userconv_rec *u)
{
    uint8_t ts[8];
    for (int i = 0; i < 8; i++)
        ts[i] = (uint8_t)(u->left_ts >> (56 - 8 * i));
    buf_reset(b);
    if (buf_append(b, ts, sizeof(ts)) < 0)
        return -ENOMEM;
    return val_userconv_encode(b, u); /* appends */
}

int val_left_decode(const uint8_t *p, uint32_t n, struct userconv_rec *u)
{
    if (n < 8)
        return -EINVAL;
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | p[i];
    int rc = val_userconv_decode(p + 8, n - 8, u);
    u->left_ts = ts;
    return rc < 0 ? rc : u->left_seq ? 0 : -EINVAL;
}

int val_friend_encode(struct buf *b, const struct friend_rec *f)
{
    msgpack_packer pk;
    pk_init(&pk, b);
    msgpack_pack_map(&pk, f->run ? 4 : 3);
    pk_kv_u64(&pk, "s", f->state);
    pk_kv_u64(&pk, "t", f->ts);
    pk_kv_str(&pk, "n", f->note);
    if (f->run)
        pk_kv_u64(&pk, "r", f->run);
    return done(b);
}

static int friend_field(struct mpr *r, char k, void *out)
{
    struct friend_rec *f = out;
    switch (k) {
    case 's':
        return rd_u8(r, &f->state);
    case 't':
        return mpr_uint(r, &f->ts);
    case 'n':
        return mpr_str(r, &f->note);
    case 'r':
        return mpr_uint(r, &f->run);
    default:
        return 1;
    }
}

int val_friend_decode(const uint8_t *p, uint32_t n, struct friend_rec *f)
{
    *f = (struct friend_rec){0};
    return walk(p, n, friend_field, f);
}

int val_dedup_encode(struct buf *b, uint64_t ts, uint64_t seq)
{
    buf_put_be64(b, ts);
    buf_put_be64(b, seq);
    return done(b);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int val_dedup_decode(const uint8_t *p, uint32_t n, uint64_t *ts, uint64_t *seq)
{
    if (n < 16)
        return -RP_EFRAME;
    *ts = be64(p);
    *seq = be64(p + 8);
    return 0;
}

int val_u64_encode(struct buf *b, uint64_t v)
{
    buf_put_be64(b, v);
    return done(b);
}

int val_u64_decode(const uint8_t *p, uint32_t n, uint64_t *v)
{
    if (n != 8)
        return -RP_EFRAME;
    *v = be64(p);
    return 0;
}
