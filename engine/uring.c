#include "engine/uring.h"

#include "base/log.h"

#include <errno.h>
#include <string.h>

int uring_setup(struct io_uring *ring, unsigned entries, unsigned cq_entries)
{
    static const struct {
        unsigned flag;
        const char *name;
    } optional[] = {
        {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
        {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
    };
    unsigned flags = IORING_SETUP_CQSIZE;
    for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++)
        flags |= optional[i].flag;
    for (;;) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flags;
        p.cq_entries = cq_entries;
        int r = io_uring_queue_init_params(entries, ring, &p);
        if (r == 0)
            return 0;
        if (r != -EINVAL)
            return r;
        /* Drop the newest optional flag still set and try again. DEFER_TASKRUN
         * requires SINGLE_ISSUER, so they go in that order. */
        size_t i = 0;
        while (i < sizeof(optional) / sizeof(optional[0]) && !(flags & optional[i].flag))
            i++;
        if (i == sizeof(optional) / sizeof(optional[0]))
            return r;
        log_warn("uring_flag_refused", "flag=%s", optional[i].name);
        flags &= ~optional[i].flag;
    }
}

struct io_uring_sqe *uring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(ring)))
        io_uring_submit(ring);
    return sqe;
}

void uring_prep_send_fd(struct io_uring_sqe *sqe, int target_fd, uint32_t src_slot,
                        uint64_t user_data)
{
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_fd, NULL, 0, 0);
    sqe->addr = IORING_MSG_SEND_FD;
    sqe->addr3 = src_slot;
    sqe->file_index = IORING_FILE_INDEX_ALLOC;
    sqe->msg_ring_flags = IORING_MSG_RING_CQE_SKIP;
    sqe->user_data = user_data;
}
