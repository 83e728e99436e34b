/*
 * Refcounted immutable byte buffer: a push frame is encoded once into an rbuf
 * and shared by reference by every recipient connection, on any shard. The
 * count is atomic because references cross cores through the rings.
 *
 * Ownership: rbuf_new() returns one reference; every rbuf_ref() adds one; each
 * holder calls rbuf_unref() once, and the last one frees the buffer.
 */
#ifndef RP_BASE_RBUF_H
#define RP_BASE_RBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct rbuf {
    atomic_uint refs;
    uint32_t len;
    unsigned char data[];
};

/* A buffer of len bytes (uninitialised), with one reference; NULL on ENOMEM. */
struct rbuf *rbuf_new(uint32_t len);

/* A buffer holding a copy of data[0..len), with one reference; NULL on ENOMEM. */
struct rbuf *rbuf_copy(const void *data, uint32_t len);

static inline struct rbuf *rbuf_ref(struct rbuf *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

/* Add n references at once (fan-out to n recipients). */
static inline struct rbuf *rbuf_ref_n(struct rbuf *b, unsigned n)
{
    atomic_fetch_add_explicit(&b->refs, n, memory_order_relaxed);
    return b;
}

void rbuf_unref(struct rbuf *b);

#endif
