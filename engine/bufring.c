/*
 * Provided receive buffers (see bufring.h). The buffer ring's entries and the
 * buffers are two mappings: the kernel pins the first, so only the second is
 * ever trimmed.
 */
#include "engine/bufring.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* liburing 2.3 predates incremental consumption (kernel 6.12). */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

static int reg(struct bufring *b, struct io_uring *ring, bool inc)
{
    struct io_uring_buf_reg r = {
        .ring_addr = (uintptr_t)b->br, .ring_entries = b->count, .bgid = b->bgid};
    r.pad = inc ? IOU_PBUF_RING_INC : 0; /* the flags field, named pad in liburing 2.3 */
    return io_uring_register_buf_ring(ring, &r, 0);
}

int bufring_init(struct bufring *b, struct io_uring *ring, uint32_t count, uint32_t size,
                 uint16_t bgid, bool want_inc)
{
    memset(b, 0, sizeof(*b));
    if (!count || count > 32768 || (count & (count - 1)) || !size)
        return -EINVAL;
    size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    void *p = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    b->br = p;
    b->count = count;
    b->size = size;
    b->bgid = bgid;
    b->bytes = (size_t)count * size;
    p = mmap(NULL, b->bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    b->mem = p;
    b->off = calloc(count, sizeof(*b->off));
    if (!b->off)
        return -ENOMEM;
    int r = want_inc ? reg(b, ring, true) : -EINVAL;
    if (r == 0) {
        b->inc = true;
    } else if (r == -EINVAL) {
        if (want_inc)
            log_info("buf_ring_inc_refused", "err=\"%s\"", err_str(r));
        r = reg(b, ring, false);
    }
    if (r)
        return r;
    io_uring_buf_ring_init(b->br);
    b->mask = (uint32_t)io_uring_buf_ring_mask(count);
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, b->mem + (size_t)i * size, size, (unsigned short)i, b->mask,
                              (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

void bufring_deinit(struct bufring *b)
{
    if (b->br)
        munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
    if (b->mem)
        munmap(b->mem, b->bytes);
    free(b->off);
    memset(b, 0, sizeof(*b));
}

int bufring_data(struct bufring *b, const struct io_uring_cqe *cqe, const uint8_t **data)
{
    uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    *data = NULL;
    if (bid >= b->count)
        return -EIO;
    uint32_t off = b->inc ? b->off[bid] : 0;
    *data = b->mem + (size_t)bid * b->size + off;
    if (cqe->res <= 0)
        return 0;
    if ((uint32_t)cqe->res > b->size - off) {
        log_error("recv_buffer_overrun", "bid=%u off=%u res=%d", bid, off, cqe->res);
        return -EIO;
    }
    return cqe->res;
}

void bufring_done(struct bufring *b, const struct io_uring_cqe *cqe)
{
    uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid >= b->count)
        return;
    if (b->inc) {
        /* A completion without bytes consumed nothing: the buffer is still
         * the kernel's current one. */
        if (cqe->res <= 0)
            return;
        if (cqe->flags & IORING_CQE_F_BUF_MORE) {
            b->off[bid] += (uint32_t)cqe->res;
            return;
        }
        b->off[bid] = 0;
    }
    io_uring_buf_ring_add(b->br, b->mem + (size_t)bid * b->size, b->size, (unsigned short)bid,
                          b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}

bool bufring_trim(struct bufring *b, struct io_uring *ring, uint64_t rx_total)
{
    uint64_t rx = rx_total - b->mark;
    b->mark = rx_total;
    if (!b->mem || rx >= b->bytes / 4 || io_uring_cq_ready(ring) || io_uring_cq_has_overflow(ring))
        return false;
    return madvise(b->mem, b->bytes, MADV_DONTNEED) == 0;
}
