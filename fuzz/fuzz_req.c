/*
 * Fuzz target for req_decode. The input is one frame payload, copied into an
 * exact-size allocation. Checked: no crash or leak; every view of a decoded
 * request lies inside the frame; users are valid ids within the limit; an
 * error always comes with a message. Whenever the pre-scan accepts the
 * input and it nests no deeper than msgpack-c's unpacker goes (32 levels;
 * the scan itself has no depth limit), msgpack-c must decode it as exactly
 * one map of exactly that size: the scan must never pass what the real
 * decoder rejects. Past the scan, bad_frame is returned if and only if a key
 * of the map is not a string.
 */
#include "base/err.h"
#include "protocol/ident.h"
#include "protocol/mpread.h"
#include "protocol/mpscan.h"
#include "protocol/req.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static bool inside(struct strv v, const uint8_t *p, size_t n)
{
    return v.len == 0 || ((const uint8_t *)v.p >= p && (const uint8_t *)v.p + v.len <= p + n);
}

/* msgpack-c's unpacker keeps a fixed stack of this many open containers
 * (MSGPACK_EMBED_STACK_SIZE, in a header msgpack.h does not export). */
#define MSGPACK_C_DEPTH 32

/* Does the one value at p[0..n) (which the scan accepted) nest deeper than
 * MSGPACK_C_DEPTH levels? The outer map is level 1. */
static bool too_deep_for_msgpack_c(const uint8_t *p, size_t n)
{
    uint64_t left[MSGPACK_C_DEPTH];
    unsigned depth = 0;
    struct mpr r;
    mpr_init(&r, p, n);
    do {
        struct mp_head h;
        if (mpr_head(&r, &h))
            abort(); /* the scan passed it */
        if (depth)
            left[depth - 1]--;
        if (h.kind == MP_ARRAY || h.kind == MP_MAP) {
            if (depth == MSGPACK_C_DEPTH)
                return true;
            left[depth++] = h.kind == MP_MAP ? 2ull * h.n : h.n;
        }
        while (depth && left[depth - 1] == 0)
            depth--;
    } while (depth);
    return false;
}

/* Are all keys of the map at p[0..n) (which the scan accepted) strings? */
static bool keys_are_strings(const uint8_t *p, size_t n)
{
    struct mpr r;
    struct mp_head h;
    mpr_init(&r, p, n);
    if (mpr_head(&r, &h) || h.kind != MP_MAP)
        abort();
    for (uint32_t i = 0; i < h.n; i++) {
        struct mp_head k;
        struct mpr at = r;
        if (mpr_head(&at, &k))
            abort();
        if (k.kind != MP_STR)
            return false;
        r = at;
        if (mpr_skip(&r))
            abort();
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct req_decoder dec;
    static bool ready;
    static const struct req_limits lim = {.max_body = 32768, .max_users = 500};
    if (size > UINT32_MAX)
        return 0;
    if (!ready)
        ready = req_decoder_init(&dec) == 0;

    uint8_t *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    struct req r;
    const char *msg;
    int err = req_decode(&dec, &lim, p, (uint32_t)size, &r, &msg);
    if (err == 0) {
        struct strv views[] = {r.token, r.device, r.to,   r.group,  r.cmid,
                               r.type,  r.conv,   r.name, r.notice, r.user,
                               r.nick,  r.remark, r.note, r.body,   r.after_user};
        for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++)
            if (!inside(views[i], p, size))
                abort();
        if (r.op >= OP__COUNT || r.nusers > lim.max_users || msg)
            abort();
        for (uint32_t i = 0; i < r.nusers; i++)
            if (!inside(r.users[i], p, size) || !ident_user_ok(r.users[i]))
                abort();
        if (r.op != OP_ACK && !r.has_id)
            abort();
    } else if (err == -RP_EREQUEST || err == -RP_ETOOLARGE || err == -RP_EFRAME) {
        if (!msg)
            abort();
    } else {
        abort();
    }

    if (mpscan_map(p, size) == 0 && too_deep_for_msgpack_c(p, size)) {
        /* beyond msgpack-c, which cannot serve as the oracle here */
        if ((err == -RP_EFRAME) == keys_are_strings(p, size))
            abort();
    } else if (mpscan_map(p, size) == 0) {
        msgpack_zone zone;
        msgpack_object obj;
        size_t off = 0;
        msgpack_zone_init(&zone, 1024);
        if (msgpack_unpack((const char *)p, size, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
            off != size || obj.type != MSGPACK_OBJECT_MAP)
            abort();
        /* past the scan, bad_frame means exactly: a key that is not a string */
        bool str_keys = true;
        for (uint32_t i = 0; i < obj.via.map.size; i++)
            str_keys &= obj.via.map.ptr[i].key.type == MSGPACK_OBJECT_STR;
        msgpack_zone_destroy(&zone);
        if ((err == -RP_EFRAME) == str_keys)
            abort();
    } else if (err != -RP_EFRAME) {
        abort();
    }
    free(p);
    return 0;
}
