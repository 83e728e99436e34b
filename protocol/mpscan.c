/*
 * Pre-scan of untrusted msgpack. The walk keeps, per open container, the
 * number of elements still expected, and their sum over all open containers.
 * Every element takes at least one byte, so whenever that sum exceeds the
 * bytes left the input cannot be valid and is rejected at once: a 5-byte
 * input can never declare billions of elements, and no decoder run after
 * this check is asked to reserve more slots than there are bytes.
 */
#include "protocol/mpscan.h"

#include "base/err.h"
#include "protocol/mpread.h"

static int scan(const uint8_t *p, size_t len, bool want_map)
{
    uint64_t remaining[MPSCAN_MAX_DEPTH];
    uint64_t pending = 1; /* the one top-level value */
    unsigned depth = 0;
    struct mpr r;
    mpr_init(&r, p, len);

    if (len == 0)
        return -RP_EFRAME;
    do {
        struct mp_head h;
        if (mpr_head(&r, &h))
            return -RP_EFRAME;
        if (depth == 0 && want_map && h.kind != MP_MAP)
            return -RP_EFRAME;
        if (depth)
            remaining[depth - 1]--;
        pending--;
        if (h.kind == MP_ARRAY || h.kind == MP_MAP) {
            if (depth == MPSCAN_MAX_DEPTH)
                return -RP_EFRAME;
            uint64_t n = h.kind == MP_MAP ? 2ull * h.n : h.n;
            remaining[depth++] = n;
            pending += n;
            if (pending > mpr_left(&r))
                return -RP_EFRAME;
        }
        while (depth && remaining[depth - 1] == 0)
            depth--;
    } while (depth);
    return mpr_left(&r) == 0 ? 0 : -RP_EFRAME;
}

int mpscan_map(const uint8_t *p, size_t len)
{
    return scan(p, len, true);
}

int mpscan_value(const uint8_t *p, size_t len)
{
    return scan(p, len, false);
}
