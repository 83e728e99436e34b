#include "base/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_deinit(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

int buf_reserve(struct buf *b, size_t n)
{
    if (b->oom)
        return -ENOMEM;
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n)
        cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    int err = buf_reserve(b, n);
    if (err)
        return err;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
    return buf_append(b, &v, 1);
}

int buf_put_be16(struct buf *b, uint16_t v)
{
    unsigned char p[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    return buf_append(b, p, 2);
}

int buf_put_be32(struct buf *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    return buf_append(b, p, 4);
}

int buf_put_be64(struct buf *b, uint64_t v)
{
    int err = buf_put_be32(b, (uint32_t)(v >> 32));
    return err ? err : buf_put_be32(b, (uint32_t)v);
}

int buf_msgpack_write(void *data, const char *bytes, size_t len)
{
    return buf_append(data, bytes, len) ? -1 : 0;
}
