/*
 * The RocksDB database behind storage: options, column families, the log's
 * prefix extractor, the dedup compaction filter, and the blocking primitives
 * (group write, get, bounded scan) that the storage threads call.
 *
 * This module and storage.c's threads are the only callers of RocksDB. Every
 * function here blocks on disk; none may run on a shard loop.
 */
#ifndef RP_STORAGE_DB_H
#define RP_STORAGE_DB_H

#include "base/buf.h"
#include "storage/batch.h"
#include "storage/storage.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stg_db;

/*
 * Open or create the database at cfg->path with every column family, using
 * cfg's durability, block cache size and dedup window (0 fields get their
 * defaults). Returns 0 and *out, -ENOMEM, or -RP_ESTORAGE (reason logged).
 */
int stg_db_open(const struct storage_config *cfg, struct stg_db **out);

/* Close the database and free everything; NULL is accepted. No other call may be running. */
void stg_db_close(struct stg_db *db);

/*
 * Called once at the start of every storage thread: turns off RocksDB's
 * per-thread perf counters there (on by default, they cost a thread-local
 * lookup in every key comparison of every memtable insert and read).
 */
void stg_db_thread_init(void);

/*
 * A group under construction, owned by one thread. stg_db_group_add() queues
 * b (borrowed until the commit returns; 0 or -ENOMEM); stg_db_group_commit()
 * copies the ops of every queued batch into one RocksDB write batch and
 * writes it with one rocksdb_write, with sync per durability and no_slowdown,
 * then empties the group either way. The write batch holds the ops sorted by
 * (family, key), and of several ops on one key only the last one queued: the
 * state after the commit is exactly that of applying every op in order.
 * new returns NULL when out of memory; commit returns 0 or -RP_ESTORAGE
 * (logged). stg_db_group_dropped() tells how many ops the last commit left
 * out because a later op of the group replaced them.
 */
struct stg_db_group;
struct stg_db_group *stg_db_group_new(struct stg_db *db);
void stg_db_group_free(struct stg_db_group *g);
int stg_db_group_add(struct stg_db_group *g, const struct stg_batch *b);
int stg_db_group_commit(struct stg_db_group *g);
/* Empty the group without writing (after a failed stg_db_group_add). */
void stg_db_group_drop(struct stg_db_group *g);
size_t stg_db_group_dropped(const struct stg_db_group *g);

/*
 * Read one value into val (replacing its contents). On STG_CF_DEDUP a record
 * older than the dedup window, or shorter than its timestamp, reads as absent.
 * Returns 0, -ENOENT, -ENOMEM or -RP_ESTORAGE (logged). Any thread.
 */
int stg_db_get(struct stg_db *db, enum stg_cf cf, const void *key, size_t klen, struct buf *val);

/* The same, returning a one-pair result (transferred to the caller). */
int stg_db_get_result(struct stg_db *db, enum stg_cf cf, const void *key, size_t klen,
                      struct stg_result **out);

/*
 * Pairs with lower <= key < upper, in key order or (reverse) from the top,
 * at most limit of them, and none after the values read add up to more than
 * max_bytes (0: no such bound), into one allocation (*out, transferred). The bounds
 * are set as the iterator's iterate bounds and stay alive until it is gone.
 * Returns 0, -ENOMEM or -RP_ESTORAGE (logged). Any thread.
 */
int stg_db_scan(struct stg_db *db, enum stg_cf cf, const void *lower, size_t llen,
                const void *upper, size_t ulen, uint32_t limit, size_t max_bytes, bool reverse,
                struct stg_result **out);

/* See storage_write_sync(), storage_checkpoint(), storage_flush(), storage_compact(). */
int stg_db_write_now(struct stg_db *db, const struct stg_batch *b);
int stg_db_checkpoint(struct stg_db *db, const char *dir);
int stg_db_flush(struct stg_db *db);
int stg_db_compact(struct stg_db *db, enum stg_cf cf);

#endif
