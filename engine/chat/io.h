/*
 * Storage access of the chat layer: reads with completion callbacks, and the
 * shard's group commit.
 *
 * Reads: io_read() queues a read through env->read and remembers which
 * callback the completion goes to. When the storage queue is full the read is
 * kept (bytes copied) and retried on every io_flush, in order. At most
 * IO_READS_MAX reads hold a slot at once. Past that io_read refuses
 * (-RP_EFULL: the request it serves gets "server busy"). The _wait variants,
 * which loading a user's state and a session's catch-up use (at login, and
 * for the friend sweep), wait in memory in call order until a slot comes
 * free, so a wave of logins slows down instead of failing. They never take
 * the last quarter of the slots, which stays for everything else a shard
 * reads (a conversation's state for a send, a dedup check, a query), and
 * their waiting is bounded too: past IO_WAIT_BYTES of waiting reads they
 * refuse like io_read. While reads wait (io_reads_backlogged), a catch-up
 * reads only a few conversations ahead.
 *
 * Writes: the shard stages all of one loop iteration's puts into one batch
 * (io_batch) and registers a callback per staged unit of work (io_on_commit).
 * io_flush submits it. Up to write_pipeline (at most IO_FLIGHT_MAX) batches
 * are in flight per shard, so the storage writer can find the next group
 * waiting when it finishes one; completions come back in submit order.
 *
 * Seqs. The owner stages work that takes seqs (io_mark_dep) only when the
 * batch can be submitted in the same flush (io_can_stage). A batch with seqs
 * submitted while others with seqs are in flight took its seqs after theirs,
 * so it is marked after_prev and storage fails it when the one before it
 * failed: a failed batch never leaves a later one succeeding with higher seqs
 * (the log stays gapless). A batch without seqs is marked indep: it neither
 * waits on the chain nor breaks it. After a failure nothing is submitted and the owner stages
 * nothing until every batch in flight has completed (and so given its seqs back): then a staged
 * batch holding seqs (possible only after a refused submit) fails too, and one holding only other
 * rows (friends, cursors) is submitted as if nothing had happened.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_IO_H
#define RP_CHAT_IO_H

#include "engine/chat/map.h"
#include "storage/storage.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

#define IO_READS_MAX  65536u
#define IO_WAIT_BYTES (64u << 20) /* of reads waiting for a slot, per shard */
#define IO_FLIGHT_MAX 16u         /* write batches in flight per shard */

/*
 * A read completion: err 0 with res (transferred: free it with
 * stg_result_free), or a negative code with res NULL (-ENOENT for a GET that
 * found nothing, -RP_ESTORAGE, -ENOMEM).
 */
typedef void (*io_read_cb)(struct chat *c, void *ctx, uint64_t arg, int err,
                           struct stg_result *res);
/* A write completion: 0 (durable) or -RP_ESTORAGE (nothing of it was written). */
typedef void (*io_write_cb)(struct chat *c, void *ctx, int err);

struct io_read_slot;
struct io_wait;
struct io_commit;

/* A submitted batch's callbacks, until its completion. */
struct io_flight {
    struct io_commit *cbs;
    uint32_t n, cap;
    uint64_t tag;
    bool dep; /* it holds work that took seqs */
};

struct io {
    struct io_read_slot *slots;
    uint32_t nslots, cap, free_head, used;
    uint32_t retry_head, retry_tail;       /* FIFO of slots whose submit was refused */
    uint32_t reads_max;                    /* slots at most: IO_READS_MAX unless a test lowers it */
    struct io_wait *wait_head, *wait_tail; /* reads waiting for a slot, oldest first */
    struct map wait_by_ctx;                /* ctx -> its newest waiting read (io_cancel_waiting) */
    uint32_t nwait;
    uint64_t wait_bytes;     /* of the waiting reads, their allocations */
    uint64_t wait_bytes_max; /* IO_WAIT_BYTES unless a test lowers it */
    uint64_t waited;         /* reads that had to wait for a slot, since start */
    uint64_t cancelled;      /* waiting reads dropped by io_cancel_waiting, since start */
    struct stg_batch *staged;
    struct io_commit *staged_cbs;
    uint32_t nstaged, cap_staged;
    struct io_flight flight[IO_FLIGHT_MAX]; /* ring: oldest at flight_head */
    uint32_t flight_head, nflight;
    bool poisoned;   /* the staged batch fails once nothing is in flight */
    bool draining;   /* a write failed: submit nothing until nflight is 0 */
    bool staged_dep; /* the staged batch holds work that took seqs */
    bool closed;
    uint64_t write_tag;
};

int io_init(struct io *io);
/* Drops pending work without calling callbacks (shutdown). */
void io_deinit(struct io *io);

/* Lower the slot bound below IO_READS_MAX (tests; 1..IO_READS_MAX), the
 * bound of waiting reads below IO_WAIT_BYTES (tests). */
void io_set_reads_max(struct io *io, uint32_t n);
void io_set_wait_bytes(struct io *io, uint64_t n);

/*
 * Queue a read; cb runs later, from chat_on_storage or io_flush (never from
 * inside this call). q and its bytes are borrowed for the call. Returns 0,
 * -RP_EFULL (IO_READS_MAX reads hold slots), -ENOMEM or -RP_ECLOSED (after
 * io_abort); on error cb never runs.
 */
int io_read(struct chat *c, const struct stg_read *q, io_read_cb cb, void *ctx, uint64_t arg);
/* As io_read, but past the slots the _wait reads may use the read waits for
 * one; -RP_EFULL only when IO_WAIT_BYTES already wait. */
int io_read_wait(struct chat *c, const struct stg_read *q, io_read_cb cb, void *ctx, uint64_t arg);

/* A GET of key in cf. Same contract as io_read. */
int io_get(struct chat *c, enum stg_cf cf, const void *key, size_t klen, io_read_cb cb, void *ctx,
           uint64_t arg);
int io_get_wait(struct chat *c, enum stg_cf cf, const void *key, size_t klen, io_read_cb cb,
                void *ctx, uint64_t arg);

/* A forward SCAN of every key that starts with prefix, from lower (inclusive,
 * NULL: the prefix itself). Same contract as io_read. */
int io_scan_prefix(struct chat *c, enum stg_cf cf, const void *prefix, size_t plen,
                   const void *lower, size_t llen, uint32_t limit, io_read_cb cb, void *ctx,
                   uint64_t arg);
int io_scan_prefix_wait(struct chat *c, enum stg_cf cf, const void *prefix, size_t plen,
                        const void *lower, size_t llen, uint32_t limit, io_read_cb cb, void *ctx,
                        uint64_t arg);

/*
 * Drop the reads of ctx that still wait for a slot (a session that closed:
 * what they would read has no one to go to). Each one's cb runs now, with
 * -ECANCELED and no result, so that what it holds is let go. ctx must be
 * the live owner of those reads. Returns how many.
 */
uint32_t io_cancel_waiting(struct chat *c, const void *ctx);

/* True when reads are waiting, for a slot or for room in the storage queue:
 * reads that are only ahead of need should not be issued. */
bool io_reads_backlogged(const struct chat *c);

/* True when work that takes seqs may be staged now: the staged batch can be
 * submitted at this flush (below write_pipeline in flight, no failure being
 * drained, not poisoned). */
bool io_can_stage(const struct chat *c);

/* The staged batch now holds work that took seqs (see "Seqs" above). */
void io_mark_dep(struct chat *c);

/* Finish a failure once nothing is in flight: fail a poisoned staged batch
 * and resume submitting. Call before deciding whether to stage. */
void io_settle(struct chat *c);

/* True when no batch is in flight or staged. */
bool io_write_idle(const struct chat *c);
/* True when no read holds a slot, waits for one or waits to be submitted again. */
bool io_read_idle(const struct chat *c);

/* The batch being staged (created on demand); NULL on ENOMEM. */
struct stg_batch *io_batch(struct chat *c);

/* Register cb to run when the staged batch completes. 0 or -ENOMEM. */
int io_on_commit(struct chat *c, io_write_cb cb, void *ctx);

/* The staged batch is unusable (a put failed half-way): once nothing is in
 * flight it is dropped and every staged callback gets -RP_ESTORAGE. */
void io_poison(struct chat *c);

/* Submit the staged batch (unless write_pipeline batches are in flight, a
 * failure is being drained or it is poisoned), retry refused reads and give
 * free slots to waiting ones.
 * Callbacks run from here (a poisoned batch) but never submit. */
void io_flush(struct chat *c);

/*
 * Shutdown with work outstanding (the runtime stops without waiting for
 * storage): every pending read and every staged or in-flight commit callback
 * runs now with -RP_ECLOSED, so that what they hold is released; from then on
 * io_read and io_on_commit refuse with -RP_ECLOSED. The env must no longer
 * reach connections or rings (chat_free swaps it first).
 */
void io_abort(struct chat *c);

/* Route a storage completion to its callback. Returns false for a tag not ours. */
bool io_on_storage(struct chat *c, struct stg_done *d);

#endif
