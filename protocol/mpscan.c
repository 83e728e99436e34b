/*
 * Pre-scan of untrusted msgpack. The walk keeps one number: how many values
 * are still expected (the top-level one, then the elements every container
 * declares). Every value takes at least one byte, so whenever that count
 * exceeds the bytes left the input cannot be valid and is rejected at once:
 * a 5-byte input can never declare billions of elements, and no decoder run
 * after this check is asked to reserve more slots than there are bytes.
 *
 * Nesting costs the walk nothing (no recursion, no stack of containers), so
 * it has no depth limit: a well-formed map is accepted however deep the
 * values of its keys nest, within the frame's bytes.
 */
#include "protocol/mpscan.h"

#include "base/err.h"
#include "protocol/mpread.h"

static int scan(const uint8_t *p, size_t len, bool want_map)
{
    struct mpr r;
    struct mp_head h;
    mpr_init(&r, p, len);

    if (len == 0)
        return -RP_EFRAME;
    if (want_map) {
        struct mpr first = r;
        if (mpr_head(&first, &h) || h.kind != MP_MAP)
            return -RP_EFRAME;
    }
    /* mpr_skip is that walk: it fails as soon as the count passes the bytes left */
    if (mpr_skip(&r))
        return -RP_EFRAME;
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
