/*
 * Growable byte buffer for building frames and keys. Grows by doubling; an
 * allocation failure is sticky (buf_failed) so that a sequence of appends can
 * be checked once at the end.
 */
#ifndef RP_BASE_BUF_H
#define RP_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    unsigned char *data;
    size_t len;
    size_t cap;
    bool oom;
};

static inline void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void buf_deinit(struct buf *b);

/* Make room for n more bytes; 0 or -ENOMEM (and the buffer is marked failed). */
int buf_reserve(struct buf *b, size_t n);

/* Append n bytes; 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t n);

static inline void buf_reset(struct buf *b)
{
    b->len = 0;
    b->oom = false;
}

static inline bool buf_failed(const struct buf *b)
{
    return b->oom;
}

/* Append integers in big-endian order. */
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_be16(struct buf *b, uint16_t v);
int buf_put_be32(struct buf *b, uint32_t v);
int buf_put_be64(struct buf *b, uint64_t v);

/* msgpack-c packer callback writing into a struct buf (data = struct buf *). */
int buf_msgpack_write(void *data, const char *bytes, size_t len);

#endif
