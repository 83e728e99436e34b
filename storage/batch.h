/*
 * stg_batch: a list of puts and deletes that storage applies atomically.
 *
 * The batch is our own compact op list (one growable buffer), not a RocksDB
 * object, so a shard can build it without touching RocksDB; the writer thread
 * appends the ops of every batch in a group into one rocksdb_writebatch.
 * A batch is owned by one thread at a time; storage_write() transfers it.
 */
#ifndef RP_STORAGE_BATCH_H
#define RP_STORAGE_BATCH_H

#include "storage/key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stg_batch;

/* An empty batch, or NULL when out of memory. */
struct stg_batch *stg_batch_new(void);

/* Frees b and everything it holds; NULL is accepted. */
void stg_batch_free(struct stg_batch *b);

/* Empty b for reuse, keeping its memory. */
void stg_batch_clear(struct stg_batch *b);

/*
 * Append a put (key -> val) or a delete of key in column family cf. The bytes
 * are copied; key and val are borrowed for the call.
 * Returns 0, -EINVAL (cf out of range, empty key, or a key or value of 4 GiB
 * or more) or -ENOMEM (b is unchanged).
 */
int stg_batch_put(struct stg_batch *b, enum stg_cf cf, const void *key, size_t klen,
                  const void *val, size_t vlen);
int stg_batch_del(struct stg_batch *b, enum stg_cf cf, const void *key, size_t klen);

/* Number of ops in b. */
size_t stg_batch_count(const struct stg_batch *b);

/* Bytes of keys and values in b (a cost estimate for batching decisions). */
size_t stg_batch_bytes(const struct stg_batch *b);

/*
 * The chain of a shard's dependent batches (see "Pipelining" in storage.h).
 * after_prev: b depends on the chained batch its shard submitted before it
 * (which may still be in flight): storage writes b only if that one was
 * written, and otherwise fails b too, with nothing of it written. This lets a
 * shard submit a batch whose contents (sequence numbers) follow from the
 * outcome of one not yet completed.
 * indep: b stands outside the chain (it depends on nothing and nothing
 * depends on it): it is written or fails on its own and leaves the chain's
 * state as it was. A batch with neither mark starts the chain afresh.
 * Both are cleared by stg_batch_clear().
 */
void stg_batch_set_after_prev(struct stg_batch *b, bool on);
bool stg_batch_after_prev(const struct stg_batch *b);
void stg_batch_set_indep(struct stg_batch *b, bool on);
bool stg_batch_indep(const struct stg_batch *b);

/*
 * Fault injection for tests and the fuzz harness. STG_FAIL_BATCH: storage
 * fails b alone, as if it had been a group of its own whose write RocksDB
 * refused. STG_FAIL_GROUP: the write of the whole group b joins fails, every
 * submit in it (of any shard) with it. Either way nothing of the failed
 * batches is written, and their shards' later batches marked after_prev fail.
 */
enum stg_fail { STG_FAIL_NONE, STG_FAIL_BATCH, STG_FAIL_GROUP };
void stg_batch_inject_failure(struct stg_batch *b, enum stg_fail how);
enum stg_fail stg_batch_failure_injected(const struct stg_batch *b);

/* One op, as walked by stg_batch_next(). key and val point into the batch. */
struct stg_op {
    enum stg_cf cf;
    bool put; /* false: delete (val is NULL) */
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
};

/*
 * Iterate over the ops in insertion order: start with *pos = 0; each call
 * fills op and returns true, or returns false after the last op. The views
 * are valid until b is changed or freed.
 */
bool stg_batch_next(const struct stg_batch *b, size_t *pos, struct stg_op *op);

#endif
