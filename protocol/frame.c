/*
 * Length-prefix reassembly. Two phases per frame: the 4 header bytes, then the
 * payload. When a receive holds a whole frame and nothing is buffered, the
 * payload is handed out in place (the common case for small requests); only a
 * frame split across receives is copied into a buffer sized from its checked
 * header. That buffer also keeps the header bytes in front of the payload, so
 * frame_dec_pending can return everything held as one contiguous run.
 *
 * A buffer whose frame was handed out stays alive until the next call, as the
 * contract promises, and is freed then; an idle connection holds nothing.
 */
#include "protocol/frame.h"

#include "base/err.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Consumed counts are returned as int. */
#define FRAME_MAX_LIMIT ((uint32_t)INT_MAX - FRAME_HDR)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frame_dec_init(struct frame_dec *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame < FRAME_MAX_LIMIT ? max_frame : FRAME_MAX_LIMIT;
}

void frame_dec_deinit(struct frame_dec *d)
{
    free(d->buf);
    free(d->done);
    memset(d, 0, sizeof(*d));
}

static int fail(struct frame_dec *d, int err)
{
    free(d->buf);
    d->buf = NULL;
    d->have = d->need = 0;
    d->err = err;
    return err;
}

static int check_len(struct frame_dec *d, uint32_t l)
{
    if (l == 0)
        return -RP_EFRAME;
    if (l > d->max_frame)
        return -RP_ETOOLARGE;
    return 0;
}

int frame_next(struct frame_dec *d, const uint8_t *data, size_t len, const uint8_t **frame,
               uint32_t *flen)
{
    size_t used = 0;
    int err;

    *frame = NULL;
    *flen = 0;
    free(d->done);
    d->done = NULL;
    if (d->err)
        return d->err;

    if (!d->buf) {
        if (d->have == 0 && len >= FRAME_HDR) {
            uint32_t l = be32(data);
            if ((err = check_len(d, l)))
                return fail(d, err);
            if (len - FRAME_HDR >= l) {
                *frame = data + FRAME_HDR;
                *flen = l;
                return (int)(FRAME_HDR + l);
            }
        }
        while (d->have < FRAME_HDR && used < len)
            d->hdr[d->have++] = data[used++];
        if (d->have < FRAME_HDR)
            return (int)used;
        uint32_t l = be32(d->hdr);
        if ((err = check_len(d, l)))
            return fail(d, err);
        d->buf = malloc((size_t)FRAME_HDR + l);
        if (!d->buf)
            return fail(d, -ENOMEM);
        memcpy(d->buf, d->hdr, FRAME_HDR);
        d->need = l;
    }

    size_t want = (size_t)FRAME_HDR + d->need - d->have;
    size_t n = len - used < want ? len - used : want;
    if (n)
        memcpy(d->buf + d->have, data + used, n);
    d->have += (uint32_t)n;
    used += n;
    if (d->have == FRAME_HDR + d->need) {
        *frame = d->buf + FRAME_HDR;
        *flen = d->need;
        d->done = d->buf;
        d->buf = NULL;
        d->have = d->need = 0;
    }
    return (int)used;
}

size_t frame_dec_pending(const struct frame_dec *d, const uint8_t **p)
{
    *p = NULL;
    if (d->err || d->have == 0)
        return 0;
    *p = d->buf ? d->buf : d->hdr;
    return d->have;
}
