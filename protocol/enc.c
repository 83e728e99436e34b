/*
 * Frame encoders and the stored entry codec. Frames are packed straight into
 * the caller's buf behind a placeholder prefix that enc_end fills in, so a
 * frame is built with one pass and no copy. The stored form of an entry is the
 * very map of its `msg` push: delivering a stored entry is a prefix plus a
 * memcpy, and a push frame is built once for every recipient.
 */
#include "protocol/enc.h"

#include "base/err.h"
#include "protocol/mpread.h"
#include "protocol/mpscan.h"

#include <errno.h>
#include <string.h>

static const char *const code_names[CODE__COUNT] = {
    [CODE_BAD_FRAME] = "bad_frame",       [CODE_BAD_REQUEST] = "bad_request",
    [CODE_UNAUTHORIZED] = "unauthorized", [CODE_FORBIDDEN] = "forbidden",
    [CODE_NOT_FOUND] = "not_found",       [CODE_CONFLICT] = "conflict",
    [CODE_TOO_LARGE] = "too_large",       [CODE_RATE_LIMITED] = "rate_limited",
    [CODE_EXPIRED] = "expired",           [CODE_UNAVAILABLE] = "unavailable",
    [CODE_INTERNAL] = "internal",
};

const char *code_name(enum err_code c)
{
    return (unsigned)c < CODE__COUNT ? code_names[c] : code_names[CODE_INTERNAL];
}

enum err_code code_from_err(int err)
{
    switch (-err) {
    case RP_EFRAME:
        return CODE_BAD_FRAME;
    case RP_EREQUEST:
    case EINVAL:
        return CODE_BAD_REQUEST;
    case RP_EAUTH:
        return CODE_UNAUTHORIZED;
    case EPERM:
    case EACCES:
        return CODE_FORBIDDEN;
    case ENOENT:
        return CODE_NOT_FOUND;
    case EEXIST:
        return CODE_CONFLICT;
    case RP_ETOOLARGE:
    case E2BIG:
    case EMSGSIZE:
        return CODE_TOO_LARGE;
    case EAGAIN:
        return CODE_RATE_LIMITED;
    case RP_EEXPIRED:
    case ETIME:
        return CODE_EXPIRED;
    case RP_ESTORAGE:
    case RP_EFULL:
    case RP_ECLOSED:
    case EBUSY:
        return CODE_UNAVAILABLE;
    default:
        return CODE_INTERNAL;
    }
}

void enc_begin(struct buf *b, msgpack_packer *pk)
{
    static const uint8_t zero[4];
    buf_append(b, zero, sizeof(zero));
    msgpack_packer_init(pk, b, buf_msgpack_write);
}

int enc_end(struct buf *b, size_t start)
{
    if (buf_failed(b))
        return -ENOMEM;
    if (b->len < start + 4)
        return -RP_ETOOLARGE;
    size_t n = b->len - start - 4;
    if (n == 0 || n > UINT32_MAX)
        return -RP_ETOOLARGE;
    uint8_t *p = b->data + start;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    return 0;
}

int enc_raw(struct buf *b, const void *p, size_t n)
{
    return buf_append(b, p, n);
}

void enc_pack_strv(msgpack_packer *pk, struct strv s)
{
    msgpack_pack_str(pk, s.len);
    msgpack_pack_str_body(pk, s.p, s.len);
}

static inline void kv_str(msgpack_packer *pk, const char *k, struct strv v)
{
    enc_pack_cstr(pk, k);
    enc_pack_strv(pk, v);
}

static inline void kv_cstr(msgpack_packer *pk, const char *k, const char *v)
{
    kv_str(pk, k, strv_c(v));
}

static inline void kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    enc_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

int enc_error(struct buf *b, bool has_id, uint32_t id, enum err_code code, const char *msg)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, has_id ? 4 : 3);
    kv_cstr(&pk, "op", "error");
    if (has_id)
        kv_u64(&pk, "id", id);
    kv_cstr(&pk, "code", code_name(code));
    kv_cstr(&pk, "msg", msg ? msg : code_name(code));
    return enc_end(b, start);
}

/* {"op":op,"id":id} */
static int enc_op_id(struct buf *b, const char *op, uint32_t id)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, 2);
    kv_cstr(&pk, "op", op);
    kv_u64(&pk, "id", id);
    return enc_end(b, start);
}

size_t enc_ok_begin(struct buf *b, msgpack_packer *pk, uint32_t id, uint32_t fields)
{
    size_t start = b->len;
    enc_begin(b, pk);
    msgpack_pack_map(pk, fields + 2);
    enc_pack_cstr(pk, "op");
    enc_pack_cstr(pk, "ok");
    enc_pack_cstr(pk, "id");
    msgpack_pack_uint32(pk, id);
    return start;
}

int enc_ok(struct buf *b, uint32_t id)
{
    return enc_op_id(b, "ok", id);
}

int enc_pong(struct buf *b, uint32_t id)
{
    return enc_op_id(b, "pong", id);
}

int enc_bye(struct buf *b, const char *reason)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, 2);
    kv_cstr(&pk, "op", "bye");
    kv_cstr(&pk, "reason", reason);
    return enc_end(b, start);
}

int enc_synced(struct buf *b)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, 1);
    kv_cstr(&pk, "op", "synced");
    return enc_end(b, start);
}

int enc_hello_ok(struct buf *b, uint32_t id, struct strv user, struct strv device,
                 uint32_t heartbeat_ms, uint64_t server_time, uint32_t max_frame, unsigned shard)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, 8);
    kv_cstr(&pk, "op", "ok");
    kv_u64(&pk, "id", id);
    kv_str(&pk, "user", user);
    kv_str(&pk, "device", device);
    kv_u64(&pk, "heartbeat_ms", heartbeat_ms);
    kv_u64(&pk, "server_time", server_time);
    kv_u64(&pk, "max_frame", max_frame);
    kv_u64(&pk, "shard", shard);
    return enc_end(b, start);
}

int enc_send_ok(struct buf *b, uint32_t id, struct strv conv, uint64_t seq, uint64_t ts, bool dup)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, dup ? 6 : 5);
    kv_cstr(&pk, "op", "ok");
    kv_u64(&pk, "id", id);
    kv_str(&pk, "conv", conv);
    kv_u64(&pk, "seq", seq);
    kv_u64(&pk, "ts", ts);
    if (dup) {
        enc_pack_cstr(&pk, "dup");
        msgpack_pack_true(&pk);
    }
    return enc_end(b, start);
}

int enc_entry(struct buf *b, const struct entry *e)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, buf_msgpack_write);
    msgpack_pack_map(&pk, 9 + (e->data_raw != NULL) + e->has_target);
    kv_cstr(&pk, "op", "msg");
    kv_str(&pk, "conv", e->conv);
    kv_u64(&pk, "seq", e->seq);
    kv_str(&pk, "from", e->from);
    kv_str(&pk, "dev", e->dev);
    kv_str(&pk, "cmid", e->cmid);
    kv_str(&pk, "type", e->type);
    enc_pack_cstr(&pk, "body");
    if (e->body_bin) {
        msgpack_pack_bin(&pk, e->body.len);
        msgpack_pack_bin_body(&pk, e->body.p, e->body.len);
    } else {
        enc_pack_strv(&pk, e->body);
    }
    kv_u64(&pk, "ts", e->ts);
    if (e->data_raw) {
        enc_pack_cstr(&pk, "data");
        buf_append(b, e->data_raw, e->data_len);
    }
    if (e->has_target)
        kv_u64(&pk, "target", e->target);
    return buf_failed(b) ? -ENOMEM : 0;
}

int enc_entry_frame(struct buf *b, const struct entry *e)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    enc_entry(b, e);
    return enc_end(b, start);
}

int enc_frame_raw(struct buf *b, const void *map, uint32_t len)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    buf_append(b, map, len);
    return enc_end(b, start);
}

int enc_read_push(struct buf *b, struct strv conv, struct strv user, uint64_t seq)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, 4);
    kv_cstr(&pk, "op", "read");
    kv_str(&pk, "conv", conv);
    kv_str(&pk, "user", user);
    kv_u64(&pk, "seq", seq);
    return enc_end(b, start);
}

int enc_friend_push(struct buf *b, const char *event, struct strv user_key, struct strv user,
                    struct strv note, bool has_note)
{
    msgpack_packer pk;
    size_t start = b->len;
    enc_begin(b, &pk);
    msgpack_pack_map(&pk, has_note ? 4 : 3);
    kv_cstr(&pk, "op", "friend");
    kv_cstr(&pk, "event", event);
    enc_pack_strv(&pk, user_key);
    enc_pack_strv(&pk, user);
    if (has_note)
        kv_str(&pk, "note", note);
    return enc_end(b, start);
}

/* Entry fields that must be present, as bits. */
enum {
    F_CONV = 1 << 0,
    F_SEQ = 1 << 1,
    F_FROM = 1 << 2,
    F_DEV = 1 << 3,
    F_CMID = 1 << 4,
    F_TYPE = 1 << 5,
    F_BODY = 1 << 6,
    F_TS = 1 << 7,
    F_OP = 1 << 8,
    F_ALL = (1 << 9) - 1,
};

static int entry_field(struct mpr *r, struct strv k, struct entry *out, unsigned *seen)
{
    struct strv op;
    unsigned bit = 0;
    int err = -RP_EFRAME;

    if (strv_eq_c(k, "op")) {
        bit = F_OP;
        err = mpr_str(r, &op) || !strv_eq_c(op, "msg") ? -RP_EFRAME : 0;
    } else if (strv_eq_c(k, "conv")) {
        bit = F_CONV;
        err = mpr_str(r, &out->conv);
    } else if (strv_eq_c(k, "seq")) {
        bit = F_SEQ;
        err = mpr_uint(r, &out->seq);
    } else if (strv_eq_c(k, "from")) {
        bit = F_FROM;
        err = mpr_str(r, &out->from);
    } else if (strv_eq_c(k, "dev")) {
        bit = F_DEV;
        err = mpr_str(r, &out->dev);
    } else if (strv_eq_c(k, "cmid")) {
        bit = F_CMID;
        err = mpr_str(r, &out->cmid);
    } else if (strv_eq_c(k, "type")) {
        bit = F_TYPE;
        err = mpr_str(r, &out->type);
    } else if (strv_eq_c(k, "body")) {
        bit = F_BODY;
        err = mpr_strbin(r, &out->body, &out->body_bin);
    } else if (strv_eq_c(k, "ts")) {
        bit = F_TS;
        err = mpr_uint(r, &out->ts);
    } else if (strv_eq_c(k, "target")) {
        out->has_target = true;
        err = mpr_uint(r, &out->target);
    } else if (strv_eq_c(k, "data")) {
        const uint8_t *at = r->p;
        uint32_t pairs;
        struct mpr probe = *r;
        err = mpr_map(&probe, &pairs);
        if (!err)
            err = mpr_skip(r);
        out->data_raw = at;
        out->data_len = (uint32_t)(r->p - at);
    } else {
        err = mpr_skip(r);
    }
    *seen |= bit;
    return err ? -RP_EFRAME : 0;
}

int entry_decode(const uint8_t *p, uint32_t len, struct entry *out)
{
    struct mpr r;
    uint32_t pairs;
    unsigned seen = 0;

    memset(out, 0, sizeof(*out));
    if (mpscan_map(p, len))
        return -RP_EFRAME;
    mpr_init(&r, p, len);
    if (mpr_map(&r, &pairs))
        return -RP_EFRAME;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv k;
        if (mpr_str(&r, &k) || entry_field(&r, k, out, &seen))
            goto fail;
    }
    if (seen != F_ALL)
        goto fail;
    return 0;

fail:
    memset(out, 0, sizeof(*out));
    return -RP_EFRAME;
}
