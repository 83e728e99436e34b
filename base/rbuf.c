#include "base/rbuf.h"

#include <stdlib.h>
#include <string.h>

struct rbuf *rbuf_new(uint32_t len)
{
    struct rbuf *b = malloc(sizeof(*b) + len);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

struct rbuf *rbuf_copy(const void *data, uint32_t len)
{
    struct rbuf *b = rbuf_new(len);
    if (b && len)
        memcpy(b->data, data, len);
    return b;
}

void rbuf_unref(struct rbuf *b)
{
    if (!b)
        return;
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}
