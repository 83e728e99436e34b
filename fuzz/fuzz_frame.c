/*
 * Fuzz target for frame_next. The input is [k][k fragment sizes][max][stream]:
 * the stream is fed once whole and once in fragments of the given sizes
 * (cycled, as a multishot receive would deliver it), each fragment in its own
 * exact-size allocation so that any over-read is caught. Halfway through, the
 * fragmented decoder's pending bytes are handed to a fresh decoder. Both runs
 * must yield the same frames and end in the same state.
 */
#include "base/buf.h"
#include "protocol/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void record(struct buf *out, const uint8_t *f, uint32_t fl)
{
    buf_put_be32(out, fl);
    buf_append(out, f, fl);
}

/* Feeds data[0..len) in one call loop; returns the final error (0 if none). */
static int feed(struct frame_dec *d, const uint8_t *data, size_t len, struct buf *out)
{
    size_t used = 0;
    while (used < len) {
        const uint8_t *f;
        uint32_t fl;
        int r = frame_next(d, data + used, len - used, &f, &fl);
        if (r < 0)
            return r;
        if (r == 0 && !f)
            abort(); /* no progress on a non-empty input */
        if (f)
            record(out, f, fl);
        used += (size_t)r;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t k = data[0] % 8 + 1;
    if (size < 1 + k + 1)
        return 0;
    const uint8_t *sizes = data + 1;
    uint32_t max_frame = 1 + (uint32_t)data[1 + k] * 16;
    const uint8_t *stream = data + 2 + k;
    size_t len = size - 2 - k;

    struct buf whole, frag;
    buf_init(&whole);
    buf_init(&frag);
    struct frame_dec a, b;
    frame_dec_init(&a, max_frame);
    frame_dec_init(&b, max_frame);
    int ea = feed(&a, stream, len, &whole);

    int eb = 0;
    size_t off = 0, i = 0;
    while (off < len && !eb) {
        size_t n = (size_t)sizes[i++ % k] + 1;
        if (n > len - off)
            n = len - off;
        uint8_t *piece = malloc(n);
        memcpy(piece, stream + off, n);
        eb = feed(&b, piece, n, &frag);
        free(piece);
        off += n;
        if (i == k && !eb) {
            /* hand the connection over mid-stream */
            const uint8_t *p;
            size_t pn = frame_dec_pending(&b, &p);
            uint8_t *copy = pn ? malloc(pn) : NULL;
            if (pn)
                memcpy(copy, p, pn);
            frame_dec_deinit(&b);
            frame_dec_init(&b, max_frame);
            eb = feed(&b, copy, pn, &frag);
            free(copy);
        }
    }
    if (ea != eb || whole.len != frag.len ||
        (whole.len && memcmp(whole.data, frag.data, whole.len) != 0))
        abort();
    if (!ea) {
        const uint8_t *p1, *p2;
        size_t n1 = frame_dec_pending(&a, &p1), n2 = frame_dec_pending(&b, &p2);
        if (n1 != n2 || (n1 && memcmp(p1, p2, n1) != 0))
            abort();
    }
    frame_dec_deinit(&a);
    frame_dec_deinit(&b);
    buf_deinit(&whole);
    buf_deinit(&frag);
    return 0;
}
