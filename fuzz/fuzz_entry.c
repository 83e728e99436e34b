/*
 * Fuzz target for the stored entry codec: entry_decode on arbitrary bytes;
 * whatever decodes is encoded again with enc_entry and must decode to equal
 * fields, and encoding that must give the very same bytes (a fixed point).
 */
#include "base/buf.h"
#include "protocol/enc.h"

#include <stdlib.h>
#include <string.h>

static bool same(const struct entry *a, const struct entry *b)
{
    return strv_eq(a->conv, b->conv) && a->seq == b->seq && strv_eq(a->from, b->from) &&
           strv_eq(a->dev, b->dev) && strv_eq(a->cmid, b->cmid) && strv_eq(a->type, b->type) &&
           strv_eq(a->body, b->body) && a->body_bin == b->body_bin && a->ts == b->ts &&
           (a->data_raw != NULL) == (b->data_raw != NULL) && a->data_len == b->data_len &&
           (!a->data_raw || memcmp(a->data_raw, b->data_raw, a->data_len) == 0) &&
           a->has_target == b->has_target && a->target == b->target;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    uint8_t *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    struct entry e, e2, e3;
    if (entry_decode(p, (uint32_t)size, &e) == 0) {
        struct buf b1, b2;
        buf_init(&b1);
        buf_init(&b2);
        if (enc_entry(&b1, &e) || entry_decode(b1.data, (uint32_t)b1.len, &e2) || !same(&e, &e2))
            abort();
        if (enc_entry(&b2, &e2) || entry_decode(b2.data, (uint32_t)b2.len, &e3) ||
            b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
            abort();
        buf_deinit(&b1);
        buf_deinit(&b2);
    }
    free(p);
    return 0;
}
