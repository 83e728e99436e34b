/*
 * ringpush driver: length-prefixed msgpack frames (PROTOCOL §1-6). Login is a
 * hello with resume false (no catch-up, live pushes at once) and a token minted
 * here with the server's secret. Group membership is set up with group.create
 * and group.invite, at most 500 users per request (PROTOCOL §6).
 */
#include "drv.h"

#include "base/err.h"
#include "protocol/jwt.h"
#include "protocol/mpread.h"

#include <errno.h>

#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TOKEN_TTL_S (7 * 24 * 3600)

/* Request ids only need to be unique among the requests in flight on one
 * connection; the generator does not match replies by id. */
static uint32_t next_id = 1;

/* Reserves the 4-byte length prefix; returns its offset for frame_end. */
static size_t frame_begin(struct buf *out, msgpack_packer *pk)
{
    size_t at = out->len;
    buf_put_be32(out, 0);
    msgpack_packer_init(pk, out, buf_msgpack_write);
    return at;
}

static int frame_end(struct buf *out, size_t at)
{
    if (buf_failed(out))
        return -ENOMEM;
    uint32_t n = (uint32_t)(out->len - at - 4);
    out->data[at] = (uint8_t)(n >> 24);
    out->data[at + 1] = (uint8_t)(n >> 16);
    out->data[at + 2] = (uint8_t)(n >> 8);
    out->data[at + 3] = (uint8_t)n;
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    pack_str(pk, s, strlen(s));
}

/* Starts a request map: op and id, then `extra` more pairs. */
static void pack_head(msgpack_packer *pk, size_t extra, const char *op)
{
    msgpack_pack_map(pk, extra + 2);
    pack_cstr(pk, "op");
    pack_cstr(pk, op);
    pack_cstr(pk, "id");
    msgpack_pack_uint32(pk, next_id++);
}

static int rp_login(struct buf *out, const struct drv_cfg *cfg, const char *user)
{
    struct buf tok;
    msgpack_packer pk;
    int rc;

    buf_init(&tok);
    rc = jwt_sign_hs256(user, strlen(user), (uint64_t)time(NULL) + TOKEN_TTL_S,
                        (const uint8_t *)cfg->secret, strlen(cfg->secret), &tok);
    if (rc < 0)
        goto out_tok;
    size_t at = frame_begin(out, &pk);
    pack_head(&pk, 3, "hello");
    pack_cstr(&pk, "token");
    pack_str(&pk, (const char *)tok.data, tok.len);
    pack_cstr(&pk, "device");
    pack_cstr(&pk, "b");
    pack_cstr(&pk, "resume");
    msgpack_pack_false(&pk);
    rc = frame_end(out, at);
out_tok:
    buf_deinit(&tok);
    return rc;
}

static int rp_subscribe(struct buf *out, const char *topic)
{
    return 0;
}

static int rp_publish(struct buf *out, bool group, const char *target, const uint8_t *payload,
                      uint64_t seq)
{
    msgpack_packer pk;
    struct drv_stamp st;
    char cmid[48];

    /* The cmid must be new across runs against the same data directory, or
     * the server's dedup would answer without delivering: add the send time. */
    if (drv_stamp_read(payload, DRV_PAYLOAD, &st) < 0)
        st.sent_ns = 0;
    int n = snprintf(cmid, sizeof(cmid), "%llx.%llx", (unsigned long long)seq,
                     (unsigned long long)st.sent_ns);
    size_t at = frame_begin(out, &pk);
    pack_head(&pk, 4, "send");
    pack_cstr(&pk, group ? "group" : "to");
    pack_cstr(&pk, target);
    pack_cstr(&pk, "cmid");
    pack_str(&pk, cmid, (size_t)n);
    pack_cstr(&pk, "type");
    pack_cstr(&pk, "text");
    pack_cstr(&pk, "body");
    msgpack_pack_bin(&pk, DRV_PAYLOAD);
    msgpack_pack_bin_body(&pk, payload, DRV_PAYLOAD);
    return frame_end(out, at);
}

static int rp_ping(struct buf *out)
{
    msgpack_packer pk;
    size_t at = frame_begin(out, &pk);
    pack_head(&pk, 0, "ping");
    return frame_end(out, at);
}

static int rp_group_add(struct buf *out, const char *group, bool create, const char *const *members,
                        unsigned n)
{
    msgpack_packer pk;
    size_t at = frame_begin(out, &pk);
    pack_head(&pk, create ? 3 : 2, create ? "group.create" : "group.invite");
    pack_cstr(&pk, "group");
    pack_cstr(&pk, group);
    if (create) {
        pack_cstr(&pk, "name");
        pack_cstr(&pk, group);
    }
    pack_cstr(&pk, create ? "members" : "users");
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++)
        pack_cstr(&pk, members[i]);
    return frame_end(out, at);
}

/* Reads the keys the generator needs from one frame's map. */
static int classify(const uint8_t *p, size_t len, struct drv_ev *ev)
{
    struct mpr r;
    uint32_t pairs;
    struct strv op = {0}, code = {0}, body = {0};
    bool bin = false, heartbeat = false;

    mpr_init(&r, p, len);
    if (mpr_map(&r, &pairs) < 0)
        return -RP_EFRAME;
    for (uint32_t i = 0; i < pairs; i++) {
        struct strv key;
        if (mpr_str(&r, &key) < 0)
            return -RP_EFRAME;
        int rc;
        if (strv_eq_c(key, "op"))
            rc = mpr_str(&r, &op);
        else if (strv_eq_c(key, "code"))
            rc = mpr_str(&r, &code);
        else if (strv_eq_c(key, "body"))
            rc = mpr_strbin(&r, &body, &bin);
        else {
            heartbeat |= strv_eq_c(key, "heartbeat_ms");
            rc = mpr_skip(&r);
        }
        if (rc == -RP_EFRAME)
            return rc;
    }
    ev->kind = DRV_EV_NONE;
    if (strv_eq_c(op, "ok")) {
        ev->kind = heartbeat ? DRV_EV_READY : DRV_EV_ACK;
    } else if (strv_eq_c(op, "pong")) {
        ev->kind = DRV_EV_PONG;
    } else if (strv_eq_c(op, "msg") && bin) {
        ev->kind = DRV_EV_MSG;
        ev->payload = (const uint8_t *)body.p;
        ev->payload_len = body.len;
    } else if (strv_eq_c(op, "error") || strv_eq_c(op, "bye")) {
        ev->kind = DRV_EV_ERROR;
        snprintf(ev->what, sizeof(ev->what), "%.*s %.*s", (int)op.len, op.p, (int)code.len, code.p);
    }
    return 0;
}

static long rp_parse(const uint8_t *in, size_t len, struct drv_ev *ev)
{
    if (len < 4)
        return 0;
    uint32_t n = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
    if (n == 0 || n > (1u << 24))
        return -RP_EFRAME;
    if (len - 4 < n)
        return 0;
    int rc = classify(in + 4, n, ev);
    return rc < 0 ? rc : (long)n + 4;
}

const struct drv drv_ringpush = {
    .name = "ringpush",
    .acks = true,
    .login = rp_login,
    .subscribe = rp_subscribe,
    .publish = rp_publish,
    .ping = rp_ping,
    .parse = rp_parse,
    .group_add = rp_group_add,
};
