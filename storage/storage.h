/*
 * The durable store: one RocksDB database with a column family per kind of
 * record (see storage/key.h), driven by storage threads so that no RocksDB
 * call ever runs on a shard loop.
 *
 * Threads. One writer thread serves every shard; each shard has a reader
 * thread of its own. A shard submits write batches and read requests through
 * lock-free SPSC queues of its own and collects completions from two SPSC
 * queues (one fed by the writer, one by its reader) with storage_poll(). A storage thread sleeps on
 * a futex eventcount when its queue is empty; it never spins.
 *
 * Group commit. The writer takes everything queued when it wakes (up to the
 * room left in the completion queue), appends all the ops into ONE RocksDB
 * write batch and issues ONE rocksdb_write, with the WAL fsync'd when the
 * durability is STG_SYNC. Only then does it post one completion per submit,
 * in submit order. Within a group, an op that a later op of the same group
 * overwrites (same family and key) is not written at all: the group is
 * atomic, so no reader could have seen it. RocksDB itself never delays a
 * write to grow a group, so the grouping happens here: while one group is
 * being synced, the next one accumulates in the queue.
 *
 * Errors. A failed write (disk full, I/O error, a stall refused with
 * no_slowdown) is logged and completes every submit of its group with
 * -RP_ESTORAGE; nothing of that group is visible afterwards. The next group
 * is tried afresh, so service resumes once the cause is gone. Nothing here
 * ever aborts the process because of a storage error.
 *
 * Pipelining. A shard may submit a batch while earlier ones are in flight.
 * If that batch was built on their outcome (it takes the sequence numbers
 * after theirs), it is marked with stg_batch_set_after_prev(): when the
 * shard's previous chained submit failed, it fails too, unwritten, and so
 * does every marked submit after it, until the shard submits an unmarked one
 * (which it does only once it has seen every completion, and given back what
 * failed). A batch marked stg_batch_set_indep() (no seqs: cursors, friend
 * rows) may sit anywhere in between without touching the chain.
 *
 * Recovery. Nothing is loaded at open: state is read lazily. Because an entry,
 * its conversation's last_seq and the sender's dedup record are written in one
 * batch (one rocksdb_write), they always agree after any crash.
 */
#ifndef RP_STORAGE_STORAGE_H
#define RP_STORAGE_STORAGE_H

#include "base/buf.h"
#include "storage/batch.h"
#include "storage/key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stg_durability {
    STG_SYNC, /* the WAL is fsync'd for a group before any of it completes */
    STG_WAL,  /* written to the WAL (page cache), not fsync'd: survives a process
                 crash, can lose the last groups on power loss or kernel crash */
    STG_NONE  /* no WAL at all: a crash loses everything not yet flushed. Benchmarks only */
};

/* "sync", "wal" or "none" -> *out. 0 or -EINVAL. */
int stg_durability_parse(const char *s, enum stg_durability *out);
const char *stg_durability_name(enum stg_durability d);

struct storage_config {
    const char *path;               /* database directory; created if missing */
    enum stg_durability durability; /* STG_SYNC is the default (0) */
    size_t block_cache_bytes;       /* shared LRU block cache; 0: 64 MiB */
    unsigned nshards;               /* completion queues, writers and readers: one per shard */
    uint64_t dedup_window_ms;       /* dedup records older than this are gone; 0: 24 h */
    uint32_t queue_depth;           /* bound of every submit and completion queue; 0: 4096 */
    /* Called on a storage thread after it published completions for `shard`.
     * It must be cheap and thread-safe (write an eventfd, wake a futex). May be NULL. */
    void (*notify)(void *arg, unsigned shard);
    void *notify_arg;
};

struct storage;

/*
 * Open (or create) the database and start the storage threads. cfg is copied;
 * cfg->path is borrowed for the call.
 * Returns 0 and *out, or -EINVAL (bad config), -ENOMEM, -errno from thread or
 * queue creation, or -RP_ESTORAGE (RocksDB refused to open: the reason is logged).
 * STG_NONE logs a loud warning.
 */
int storage_open(const struct storage_config *cfg, struct storage **out);

/*
 * Finish every queued write and read, stop the threads and close the
 * database. Completions not yet polled are freed. Call after every shard has
 * stopped submitting; NULL is accepted.
 */
void storage_close(struct storage *st);

/*
 * Shard thread `shard` only (one producer per queue). Queue batch b for the
 * shard's writer. On success b is transferred (storage frees it) and exactly
 * one completion with this tag follows, with err 0 (durable per the configured
 * durability) or -RP_ESTORAGE (nothing of b was written; for a batch marked
 * after_prev, also whenever the shard's previous submit failed).
 * Returns 0, -EINVAL (shard out of range, b NULL) or -RP_EFULL (the queue is
 * full; b stays with the caller: back off). Completions of one shard's writes
 * arrive in submit order, and are applied in that order.
 */
int storage_write(struct storage *st, unsigned shard, struct stg_batch *b, uint64_t tag);

enum stg_read_kind { STG_GET, STG_SCAN };

struct stg_read {
    enum stg_read_kind kind;
    enum stg_cf cf;
    const void *key; /* GET: the key; SCAN: lower bound (inclusive) */
    size_t klen;
    const void *upper; /* SCAN: upper bound (exclusive) */
    size_t ulen;
    uint32_t limit; /* SCAN: at most limit pairs (0: none, an empty result) */
    bool reverse;   /* SCAN: newest first, from just below upper */
    /* SCAN: no pair after the values read add up to more than this (0: no
     * bound); the scan stops there with more set. */
    size_t max_bytes;
};

/*
 * Shard thread `shard` only. Queue a read for the shard's reader. The bytes q
 * points to are copied; q is borrowed for the call. Exactly one completion
 * with this tag follows:
 *   GET:  err 0 and res with n == 1; or err -ENOENT and res NULL. A GET on
 *         STG_CF_DEDUP reports -ENOENT for a record older than dedup_window
 *         (or shorter than its 8-byte timestamp).
 *   SCAN: err 0 and res with the pairs k, lower <= k < upper, in key order (or
 *         reverse key order), at most limit of them; res->more is true when
 *         further pairs exist in the range.
 *   any:  err -RP_ESTORAGE (logged) or -ENOMEM, res NULL.
 * Returns 0, -EINVAL (shard or cf out of range, empty key or bound, bounds
 * not ordered), -ENOMEM or -RP_EFULL (back off).
 */
int storage_read(struct storage *st, unsigned shard, const struct stg_read *q, uint64_t tag);

struct stg_kv {
    const uint8_t *key;
    uint32_t klen;
    const uint8_t *val;
    uint32_t vlen;
};

struct stg_result {
    uint32_t n;
    bool more;
    struct stg_kv kv[]; /* views into the same allocation */
};

struct stg_done {
    uint64_t tag;
    int err;
    struct stg_result *res; /* reads only; NULL for writes; transferred to the poller */
};

/*
 * Shard thread `shard` only. Take up to max completions (writes first, then
 * reads; each kind in submit order). Returns how many were stored in out.
 */
unsigned storage_poll(struct storage *st, unsigned shard, struct stg_done *out, unsigned max);

/* Frees a result from storage_poll(); NULL is accepted. */
void stg_result_free(struct stg_result *r);

/* ---- Blocking helpers for tools, tests and start-up; never on a shard loop. ---- */

/*
 * Read one value into val (replacing its contents). Same dedup age rule as GET.
 * Returns 0, -ENOENT, -EINVAL, -ENOMEM or -RP_ESTORAGE. Any thread.
 */
int storage_get_sync(struct storage *st, enum stg_cf cf, const void *key, size_t klen,
                     struct buf *val);

/*
 * Apply b atomically now with the configured durability, bypassing the
 * queues (b stays with the caller). For tools and tests. Any thread.
 * Returns 0 or -RP_ESTORAGE.
 */
int storage_write_sync(struct storage *st, const struct stg_batch *b);

/* A consistent RocksDB checkpoint (hard-linked backup) in dir, which must not exist.
 * Returns 0 or -RP_ESTORAGE. Any thread. */
int storage_checkpoint(struct storage *st, const char *dir);

/* Flush every memtable to SST files (tests, tools). 0 or -RP_ESTORAGE. */
int storage_flush(struct storage *st);

/* Compact all of column family cf now, running its compaction filter (tests,
 * tools). 0 or -RP_ESTORAGE. */
int storage_compact(struct storage *st, enum stg_cf cf);

/*
 * A reference figure for the disk and RocksDB alone: plain puts of 200-byte
 * values under 64 round-robin keys' prefixes, `batch` per rocksdb_write, one
 * thread, RocksDB's default options, for `seconds`, with the WAL synced
 * (STG_SYNC), written (STG_WAL) or off (STG_NONE). dir is a database of its
 * own, created if missing. For storage_bench --raw; never on a shard loop.
 * Returns 0 and *puts_per_s, -EINVAL or -RP_ESTORAGE.
 */
int storage_raw_puts(const char *dir, enum stg_durability dur, unsigned batch, double seconds,
                     double *puts_per_s);

/* Counters since open, read racily from any thread. */
#define STG_HIST_N         16
#define STG_HIST_COMMIT_US 16u
struct storage_stats {
    uint64_t groups;       /* rocksdb_write calls issued by writers */
    uint64_t submits;      /* batches completed (ok or failed) */
    uint64_t ops;          /* puts and deletes submitted */
    uint64_t ops_dropped;  /* of those, left out of a successful group because a
                              later op of the same group on the same key replaced them */
    uint64_t write_errors; /* failed groups */
    uint64_t fenced;       /* submits failed unwritten because the one before failed */
    uint64_t reads;        /* reads completed */
    uint64_t read_errors;
    /* Per-group histograms; bucket i < STG_HIST_N - 1 holds groups of at most
     * 1 << i submits / whose commit took at most STG_HIST_COMMIT_US << i
     * microseconds; the last bucket holds the rest. */
    uint64_t group_submits_hist[STG_HIST_N];
    uint64_t commit_us_hist[STG_HIST_N];
    uint64_t commit_us_sum;
};
void storage_stats_get(struct storage *st, struct storage_stats *out);

#endif
