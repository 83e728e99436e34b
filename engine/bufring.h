/*
 * A shard's provided receive buffers: one io_uring buffer ring over one
 * anonymous mapping of `count` buffers of `size` bytes, from which multishot
 * receives (IOSQE_BUFFER_SELECT) take their buffers.
 *
 * Incremental consumption. Where the kernel supports IOU_PBUF_RING_INC (6.12
 * and later) a receive takes only the bytes it needs from the current
 * buffer, and consecutive receives share it: each completion's data starts
 * where the previous completion naming the same buffer ended, and the buffer
 * is the kernel's until a completion comes without IORING_CQE_F_BUF_MORE.
 * Many small frames (logins above all) then fill a few buffers instead of a
 * page each. Older kernels refuse the flag and get whole-buffer consumption:
 * every completion returns its buffer.
 *
 * Trimming. The buffers' bytes are dead once their completions are consumed,
 * so a quiet shard can give the pages back (bufring_trim); a receive into a
 * trimmed page faults in a fresh one.
 *
 * Thread: the shard's thread (the thread of the ring's submitter).
 */
#ifndef RP_ENGINE_BUFRING_H
#define RP_ENGINE_BUFRING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufring {
    struct io_uring_buf_ring *br; /* the ring the kernel reads */
    unsigned char *mem;           /* count * size bytes, a mapping of its own */
    size_t bytes;
    uint32_t count, size, mask;
    uint16_t bgid;
    bool inc;      /* incremental consumption accepted */
    uint32_t *off; /* with inc: where the next completion's data starts, per buffer */
    uint64_t mark; /* bytes received at the last bufring_trim call */
};

/*
 * Maps the buffers and registers them as group bgid of ring (count a power of
 * two up to 32768), asking for incremental consumption unless want_inc is
 * false (and falling back without it when the kernel refuses it with
 * -EINVAL). 0 or -errno; on failure bufring_deinit releases what was made.
 */
int bufring_init(struct bufring *b, struct io_uring *ring, uint32_t count, uint32_t size,
                 uint16_t bgid, bool want_inc);

/* Unmaps everything (after the ring is gone, or after unregistering). A
 * zeroed struct is accepted. */
void bufring_deinit(struct bufring *b);

/*
 * The data of a completion that carries IORING_CQE_F_BUFFER: sets *data and
 * returns the byte count (0 for a completion without bytes). -EIO when the
 * completion does not fit in the buffer where this side believes the
 * kernel's position is (never expected: the stream can no longer be
 * trusted). The bytes are valid until bufring_done for the same completion.
 */
int bufring_data(struct bufring *b, const struct io_uring_cqe *cqe, const uint8_t **data);

/* The completion's data was consumed: the buffer goes back to the ring if
 * the kernel is done with it. Call once per completion with a buffer, after
 * bufring_data. */
void bufring_done(struct bufring *b, const struct io_uring_cqe *cqe);

/*
 * Gives the buffers' pages back to the kernel (MADV_DONTNEED) when fewer than
 * a quarter of the buffer bytes were received since the last call
 * (rx_total: a running count of received bytes), and nothing unreaped may
 * still point into them: no completion waiting in the CQ or in the kernel's
 * overflow list. Returns whether it trimmed.
 *
 * Safe because every completion reaped so far has been consumed (its bytes
 * copied where they must outlive the call) and the kernel writes into the
 * buffers only inside io_uring_enter with DEFER_TASKRUN, or otherwise on the
 * way back to user space — after madvise has returned, never during it.
 */
bool bufring_trim(struct bufring *b, struct io_uring *ring, uint64_t rx_total);

#endif
