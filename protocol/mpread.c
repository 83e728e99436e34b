/*
 * msgpack cursor. The format table follows the msgpack specification; all
 * multi-byte numbers are big-endian. mpr_head never reads past r->end, and a
 * declared payload length is compared against the bytes left before any
 * pointer arithmetic uses it.
 */
#include "protocol/mpread.h"

#include "base/err.h"

#include <string.h>

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Width in bytes of the length/count/value field that follows type byte c, for
 * the formats that carry one; 0 for the others. */
static unsigned field_width(uint8_t c)
{
    switch (c) {
    case 0xc4: /* bin8 */
    case 0xc7: /* ext8 */
    case 0xcc: /* uint8 */
    case 0xd0: /* int8 */
    case 0xd9: /* str8 */
        return 1;
    case 0xc5:
    case 0xc8:
    case 0xcd:
    case 0xd1:
    case 0xda:
    case 0xdc: /* array16 */
    case 0xde: /* map16 */
        return 2;
    case 0xc6:
    case 0xc9:
    case 0xca: /* float32 */
    case 0xce:
    case 0xd2:
    case 0xdb:
    case 0xdd: /* array32 */
    case 0xdf: /* map32 */
        return 4;
    case 0xcb: /* float64 */
    case 0xcf:
    case 0xd3:
        return 8;
    default:
        return 0;
    }
}

static int head_sized(struct mp_head *h, enum mp_kind kind, const uint8_t **q, const uint8_t *end,
                      uint64_t n)
{
    h->kind = kind;
    if (kind == MP_EXT) {
        if (end - *q < 1)
            return -RP_EFRAME;
        (*q)++; /* the ext type byte */
    }
    if ((uint64_t)(end - *q) < n)
        return -RP_EFRAME;
    h->n = (uint32_t)n;
    h->data = *q;
    *q += n;
    return 0;
}

int mpr_head(struct mpr *r, struct mp_head *h)
{
    const uint8_t *q = r->p, *end = r->end;
    if (q >= end)
        return -RP_EFRAME;
    uint8_t c = *q++;
    memset(h, 0, sizeof(*h));

    if (c <= 0x7f) {
        h->kind = MP_UINT;
        h->u = c;
        h->i = c;
        goto done;
    }
    if (c >= 0xe0) {
        h->kind = MP_INT;
        h->i = (int8_t)c;
        goto done;
    }
    if (c <= 0x8f) {
        h->kind = MP_MAP;
        h->n = c & 0x0f;
        goto done;
    }
    if (c <= 0x9f) {
        h->kind = MP_ARRAY;
        h->n = c & 0x0f;
        goto done;
    }
    if (c <= 0xbf) {
        if (head_sized(h, MP_STR, &q, end, c & 0x1f))
            return -RP_EFRAME;
        goto done;
    }

    unsigned w = field_width(c);
    if ((size_t)(end - q) < w)
        return -RP_EFRAME;
    uint64_t v = be(q, w);
    q += w;
    int err = 0;
    switch (c) {
    case 0xc0:
        h->kind = MP_NIL;
        break;
    case 0xc2:
    case 0xc3:
        h->kind = MP_BOOL;
        h->b = c == 0xc3;
        break;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        err = head_sized(h, MP_BIN, &q, end, v);
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9:
        err = head_sized(h, MP_EXT, &q, end, v);
        break;
    case 0xca:
    case 0xcb:
        h->kind = MP_FLOAT;
        break;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        h->kind = MP_UINT;
        h->u = v;
        h->i = (int64_t)v; /* meaningful only up to INT64_MAX */
        break;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        /* sign-extend the w-byte two's complement value */
        int64_t s = (int64_t)(v << (64 - 8 * w)) >> (64 - 8 * w);
        h->kind = MP_INT;
        h->i = s;
        h->u = s >= 0 ? (uint64_t)s : 0;
        break;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext 1, 2, 4, 8, 16 */
        err = head_sized(h, MP_EXT, &q, end, 1u << (c - 0xd4));
        break;
    case 0xd9:
    case 0xda:
    case 0xdb:
        err = head_sized(h, MP_STR, &q, end, v);
        break;
    case 0xdc:
    case 0xdd:
        h->kind = MP_ARRAY;
        h->n = (uint32_t)v;
        break;
    case 0xde:
    case 0xdf:
        h->kind = MP_MAP;
        h->n = (uint32_t)v;
        break;
    default: /* 0xc1: never used */
        return -RP_EFRAME;
    }
    if (err)
        return err;
done:
    r->p = q;
    return 0;
}

int mpr_skip(struct mpr *r)
{
    /* Values still to skip. Each needs at least one byte, so a count above the
     * bytes left is malformed and stops the walk early. */
    uint64_t todo = 1;
    struct mpr c = *r;
    while (todo) {
        struct mp_head h;
        if (mpr_head(&c, &h))
            return -RP_EFRAME;
        todo--;
        if (h.kind == MP_ARRAY)
            todo += h.n;
        else if (h.kind == MP_MAP)
            todo += 2ull * h.n;
        if (todo > mpr_left(&c))
            return -RP_EFRAME;
    }
    *r = c;
    return 0;
}

/* Reads a header and checks its kind; a container of the wrong kind is
 * skipped whole so that the cursor stays on a value boundary. */
static int typed(struct mpr *r, struct mp_head *h, enum mp_kind want)
{
    struct mpr save = *r;
    if (mpr_head(r, h))
        return -RP_EFRAME;
    if (h->kind == want)
        return 0;
    if (h->kind == MP_ARRAY || h->kind == MP_MAP) {
        *r = save;
        if (mpr_skip(r))
            return -RP_EFRAME;
    }
    return -RP_EREQUEST;
}

int mpr_map(struct mpr *r, uint32_t *pairs)
{
    struct mp_head h;
    int err = typed(r, &h, MP_MAP);
    if (!err)
        *pairs = h.n;
    return err;
}

int mpr_array(struct mpr *r, uint32_t *n)
{
    struct mp_head h;
    int err = typed(r, &h, MP_ARRAY);
    if (!err)
        *n = h.n;
    return err;
}

int mpr_str(struct mpr *r, struct strv *s)
{
    struct mp_head h;
    int err = typed(r, &h, MP_STR);
    if (!err)
        *s = (struct strv){(const char *)h.data, h.n};
    return err;
}

int mpr_strbin(struct mpr *r, struct strv *s, bool *bin)
{
    struct mp_head h;
    int err = typed(r, &h, MP_STR);
    if (err == -RP_EREQUEST && h.kind == MP_BIN)
        err = 0;
    if (err)
        return err;
    *s = (struct strv){(const char *)h.data, h.n};
    *bin = h.kind == MP_BIN;
    return 0;
}

int mpr_uint(struct mpr *r, uint64_t *v)
{
    struct mp_head h;
    int err = typed(r, &h, MP_UINT);
    if (err == -RP_EREQUEST && h.kind == MP_INT && h.i >= 0)
        err = 0;
    if (!err)
        *v = h.kind == MP_UINT ? h.u : (uint64_t)h.i;
    return err;
}

int mpr_bool(struct mpr *r, bool *v)
{
    struct mp_head h;
    int err = typed(r, &h, MP_BOOL);
    if (!err)
        *v = h.b;
    return err;
}
