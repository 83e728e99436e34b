/*
 * io_uring helpers shared by the runtime: ring creation with the flags a
 * thread-per-core loop wants (falling back cleanly where the kernel refuses
 * one), SQE allocation that never fails, and the packing of user_data.
 *
 * user_data is never a raw pointer: it packs (op, slot, generation), so a late
 * completion for a slot that has since been reused is recognised and dropped.
 */
#ifndef RP_ENGINE_URING_H
#define RP_ENGINE_URING_H

#include <liburing.h>
#include <stdint.h>

enum uop {
    UOP_NONE,
    UOP_ACCEPT,   /* multishot accept into direct descriptors */
    UOP_RECV,     /* multishot recv of a connection */
    UOP_SEND,     /* sendmsg of a connection's queued frames */
    UOP_SHUTDOWN, /* shutdown(2) of a closing connection */
    UOP_CLOSE,    /* close of a connection's direct descriptor */
    UOP_HANDOFF,  /* MSG_RING IORING_MSG_SEND_FD of a connection to its home */
    UOP_WAKE,     /* MSG_RING data: a peer shard published to our inbox */
    UOP_TICK,     /* the per-shard timer tick */
    UOP_EVENTFD,  /* read of the shard's eventfd (storage completions, stop) */
    UOP_CANCEL,   /* async cancel; its own result is ignored */
    UOP_ADMIN,    /* admin HTTP listener / connections (engine/admin) */
    UOP__COUNT
};

static inline uint64_t ud_pack(enum uop op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffffu) << 32 | slot;
}
static inline enum uop ud_op(uint64_t ud)
{
    return (enum uop)(ud >> 56);
}
static inline uint32_t ud_slot(uint64_t ud)
{
    return (uint32_t)ud;
}
static inline uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffffu;
}

/*
 * Creates a ring of `entries` on the calling thread with SINGLE_ISSUER,
 * DEFER_TASKRUN, COOP_TASKRUN and SUBMIT_ALL, dropping flags the kernel
 * refuses (logged). Returns 0 or -errno.
 */
int uring_setup(struct io_uring *ring, unsigned entries, unsigned cq_entries);

/* The next SQE; submits what is queued to make room when the SQ is full.
 * Never returns NULL. */
struct io_uring_sqe *uring_sqe(struct io_uring *ring);

/* Fills an SQE for IORING_OP_MSG_RING with IORING_MSG_SEND_FD: install our
 * direct descriptor src_slot into target_fd's table (a free slot of its
 * choosing); no completion is posted on the target. liburing 2.3 has no
 * helper for this. */
void uring_prep_send_fd(struct io_uring_sqe *sqe, int target_fd, uint32_t src_slot,
                        uint64_t user_data);

#endif
