/*
 * Fuzz target for req_decode. The input is one frame payload, copied into an
 * exact-size allocation. Checked: no crash or leak; every view of a decoded
 * request lies inside the frame; users are valid ids within the limit; an
 * error always comes with a message. Whenever the pre-scan accepts the
 * input, msgpack-c must decode it as exactly one map of exactly that size:
 * the scan must never pass what the real decoder rejects. Past the scan,
 * bad_frame is returned if and only if a key of the map is not a string.
 */
#include "base/err.h"
#include "protocol/ident.h"
#include "protocol/mpscan.h"
#include "protocol/req.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static bool inside(struct strv v, const uint8_t *p, size_t n)
{
    return v.len == 0 || ((const uint8_t *)v.p >= p && (const uint8_t *)v.p + v.len <= p + n);
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

    if (mpscan_map(p, size) == 0) {
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
