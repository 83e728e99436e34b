/*
 * A bounds-checked msgpack cursor over a byte range, reading one value header
 * at a time into views of the input: no allocation, no recursion. It is the
 * reader under mpscan, req and entry_decode. It checks that each header and
 * each str/bin/ext payload fits in the range; that containers hold what they
 * declare is mpscan's job (or the caller's, as it walks them).
 *
 * Thread: pure functions on caller-owned cursors, any thread.
 */
#ifndef RP_PROTOCOL_MPREAD_H
#define RP_PROTOCOL_MPREAD_H

#include "protocol/strv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mp_kind {
    MP_NIL,
    MP_BOOL,
    MP_UINT,
    MP_INT,
    MP_FLOAT,
    MP_STR,
    MP_BIN,
    MP_EXT,
    MP_ARRAY,
    MP_MAP
};

/* One decoded value header. */
struct mp_head {
    enum mp_kind kind;
    bool b;              /* MP_BOOL */
    uint64_t u;          /* MP_UINT, and MP_INT when the value is >= 0 */
    int64_t i;           /* MP_INT (negative or not) */
    uint32_t n;          /* MP_STR/BIN/EXT payload bytes; MP_ARRAY elements; MP_MAP pairs */
    const uint8_t *data; /* MP_STR/BIN/EXT payload (for EXT, after the type byte) */
};

struct mpr {
    const uint8_t *p;
    const uint8_t *end;
};

static inline void mpr_init(struct mpr *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->end = p + len;
}

static inline size_t mpr_left(const struct mpr *r)
{
    return (size_t)(r->end - r->p);
}

/*
 * Reads one value header and, for scalars, str, bin and ext, its payload;
 * for an array or map only the header (its elements follow). 0, or
 * -RP_EFRAME (truncated, or the never-used byte 0xc1); the cursor does not
 * move on error.
 */
int mpr_head(struct mpr *r, struct mp_head *h);

/* Skips one whole value, containers included. 0 or -RP_EFRAME. */
int mpr_skip(struct mpr *r);

/*
 * Typed reads. Each returns 0, -RP_EREQUEST when the next value is of another
 * type (cursor still moved past it, so a caller may carry on), or -RP_EFRAME
 * when the bytes are malformed.
 */
int mpr_map(struct mpr *r, uint32_t *pairs);
int mpr_array(struct mpr *r, uint32_t *n);
int mpr_str(struct mpr *r, struct strv *s);
/* A str or a bin; *bin tells which. */
int mpr_strbin(struct mpr *r, struct strv *s, bool *bin);
/* A non-negative integer in any msgpack integer format. */
int mpr_uint(struct mpr *r, uint64_t *v);
int mpr_bool(struct mpr *r, bool *v);

#endif
