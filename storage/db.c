/*
 * RocksDB set-up and the blocking primitives behind the storage threads.
 *
 * One database, one column family per record kind. All of them share one LRU
 * block cache. The log family has a prefix extractor that cuts the
 * conversation part off a log key (1 length byte + id), so memtable and table
 * bloom filters answer "does this file hold anything of conversation C" and
 * history/catch-up scans skip the files that don't. Its data is LZ4
 * compressed, with ZSTD at the bottom level where most of the bytes end up.
 * The dedup family has a compaction filter that drops records older than the
 * dedup window; since that only happens when compaction runs, every read of a
 * dedup record also checks its age.
 *
 * Iterate bounds: RocksDB's C API keeps a pointer to the bound bytes, so the
 * bounds given to a scan are owned by the caller and outlive the iterator,
 * which is destroyed before the scan returns.
 *
 * Failed writes. RocksDB turns a failed WAL append (disk full, I/O error)
 * into a background error: later writes fail with it until RocksDB's own
 * recovery (its SstFileManager watches free space) flushes the memtables to
 * a fresh WAL and clears it; storage just reports each failure and tries the
 * next group. RocksDB's info LOG is kept at fatal level: builds of RocksDB
 * that keep assertions abort on the second append to a LOG file after a
 * failed one, which a full disk would otherwise cause as soon as recovery
 * starts logging. Storage logs every failure itself.
 */
#include "storage/db.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <rocksdb/c.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BLOCK_CACHE     (64u << 20)
#define DEFAULT_DEDUP_WINDOW_MS (24ull * 3600 * 1000)

struct stg_db {
    char *path;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[STG_CF__COUNT];
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts; /* point reads: no bounds, shared read-only */
    rocksdb_cache_t *cache;
    rocksdb_compactionfilter_t *dedup_filter; /* not owned by the options: freed at close */
    rocksdb_compactionfilter_t *left_filter;  /* the same */
    enum stg_durability durability;
    uint64_t dedup_window_ms;
};

/* One op of a group, as sorted by group_fill(); points into its batch. */
struct gop {
    const void *key;
    const void *val;
    uint32_t klen, vlen;
    uint32_t ord; /* position in the group: the later op on a key wins */
    uint8_t cf;
    bool put;
};

struct stg_db_group {
    struct stg_db *db;
    rocksdb_writebatch_t *wb;
    const struct stg_batch **batches; /* borrowed until the commit */
    size_t n, cap;
    struct gop *ops; /* scratch for group_fill(), kept for reuse */
    size_t ops_cap;
    size_t dropped; /* of the last commit */
};

/*
 * Log a failed call and return -RP_ESTORAGE. A stalled or full database fails
 * every write until the cause is gone, so after the first line this logs at
 * most once a second (one budget for reads and writes alike), with the
 * number of failed calls of any kind it did not log since the last line.
 */
static int fail(const char *event, char *err)
{
    static _Atomic uint64_t next_ms, quiet;
    uint64_t now = clock_mono_ns() / 1000000,
             due = atomic_load_explicit(&next_ms, memory_order_relaxed);
    if (now >= due && atomic_compare_exchange_strong_explicit(
                          &next_ms, &due, now + 1000, memory_order_relaxed, memory_order_relaxed)) {
        log_error(event, "err=\"%s\" not_logged=%llu", err ? err : "unknown",
                  (unsigned long long)atomic_exchange_explicit(&quiet, 0, memory_order_relaxed));
    } else {
        atomic_fetch_add_explicit(&quiet, 1, memory_order_relaxed);
    }
    rocksdb_free(err);
    return -RP_ESTORAGE;
}

/* ---- log prefix extractor ---- */

static void noop_destroy(void *state)
{
    (void)state;
}

static char *log_prefix(void *state, const char *key, size_t len, size_t *dst_len)
{
    *dst_len = stg_key_log_prefix_len(key, len);
    return (char *)key;
}

static unsigned char log_in_domain(void *state, const char *key, size_t len)
{
    return stg_key_log_prefix_len(key, len) != 0;
}

static unsigned char log_in_range(void *state, const char *key, size_t len)
{
    return 0;
}

/* The name is stored in table properties; changing it disables existing filters. */
static const char *log_prefix_name(void *state)
{
    return "rp.log.conv.v1";
}

/* ---- dedup expiry ---- */

static bool dedup_expired(uint64_t window_ms, const char *val, size_t vlen)
{
    if (vlen < 8)
        return true;
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | (unsigned char)val[i];
    uint64_t now = clock_wall_ms();
    return now > ts && now - ts > window_ms;
}

static unsigned char dedup_filter(void *state, int level, const char *key, size_t klen,
                                  const char *val, size_t vlen, char **new_val, size_t *new_vlen,
                                  unsigned char *changed)
{
    const struct stg_db *db = state;
    *changed = 0;
    return dedup_expired(db->dedup_window_ms, val, vlen);
}

static const char *dedup_filter_name(void *state)
{
    return "rp.dedup.expiry";
}

static unsigned char left_expiry(void *state, int level, const char *key, size_t klen,
                                 const char *val, size_t vlen, char **new_val, size_t *new_vlen,
                                 unsigned char *changed)
{
    *changed = 0;
    return dedup_expired(STG_LEFT_KEEP_MS, val, vlen);
}

static const char *left_filter_name(void *state)
{
    return "rp.left.expiry";
}

/* ---- open / close ---- */

/*
 * Memtable insert hints. A sender's dedup records sit together behind their
 * hash (key.h). With an insert hint keyed by a key's first prefix_len bytes
 * (the sender hash) the skiplist starts from where the last insert with that
 * prefix went instead of descending from the top. The C API has no setter, so
 * the option goes through the options-string parser, which copies o (table
 * factory, extractors and filters included). On failure o is kept.
 */
static rocksdb_options_t *with_insert_hints(rocksdb_options_t *o, unsigned prefix_len)
{
    char *err = NULL, spec[96];
    snprintf(spec, sizeof(spec),
             "memtable_insert_with_hint_prefix_extractor=rocksdb.CappedPrefix.%u", prefix_len);
    rocksdb_options_t *o2 = rocksdb_options_create();
    rocksdb_get_options_from_string(o, spec, o2, &err);
    if (err) {
        log_warn("storage_option_ignored", "option=insert_hints err=\"%s\"", err);
        rocksdb_free(err);
        rocksdb_options_destroy(o2);
        return o;
    }
    rocksdb_options_destroy(o);
    return o2;
}

static rocksdb_options_t *cf_options(struct stg_db *db, enum stg_cf cf)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();

    rocksdb_block_based_options_set_block_cache(t, db->cache);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(o, cf == STG_CF_LOG ? 64u << 20 : 16u << 20);

    if (cf == STG_CF_LOG) {
        rocksdb_options_set_prefix_extractor(
            o, rocksdb_slicetransform_create(NULL, noop_destroy, log_prefix, log_in_domain,
                                             log_in_range, log_prefix_name));
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.1);
        /* Log reads are ranges, never point reads of a whole key. */
        rocksdb_block_based_options_set_whole_key_filtering(t, 0);
        rocksdb_options_set_bottommost_compression(o, rocksdb_zstd_compression);
        rocksdb_options_set_max_write_buffer_number(o, 4);
    }
    if (cf == STG_CF_DEDUP)
        rocksdb_options_set_compaction_filter(o, db->dedup_filter);
    if (cf == STG_CF_LEFT)
        rocksdb_options_set_compaction_filter(o, db->left_filter);

    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    /* A conversation's metadata record is rewritten by every group that
     * appends to it. Updated in place, its memtable holds one entry per
     * conversation instead of one per version: a small skiplist that stays in
     * cache, and flushes with next to nothing to write. Safe here because the
     * family is only read by point lookups, which RocksDB locks against an
     * update in place (iterators and snapshots would not be), and the update
     * is still one op of the group's write batch in the write-ahead log. A
     * value longer than the one it replaces is added as a new version. */
    if (cf == STG_CF_CONV)
        rocksdb_options_set_inplace_update_support(o, 1);
    if (cf == STG_CF_DEDUP)
        o = with_insert_hints(o, STG_DEDUP_HASH_BYTES);
    return o;
}

static rocksdb_options_t *db_options(void)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    rocksdb_options_set_max_background_jobs(o, 2);
    rocksdb_options_set_bytes_per_sync(o, 1u << 20);
    /* The conv family, updated in place, never fills its memtable, so its
     * oldest unflushed update holds every WAL file written since: this cap
     * is what flushes it (a small flush), and bounds the log that a restart
     * after a crash replays. It stays above what the log family's memtable
     * (64 MiB) needs, so that family is not flushed early by it. */
    rocksdb_options_set_max_total_wal_size(o, 128u << 20);
    /* One writer thread commits every group, so no write group ever has two
     * writers to insert in parallel; updates in place (the conv family)
     * require this off. */
    rocksdb_options_set_allow_concurrent_memtable_write(o, 0);
    rocksdb_options_set_info_log_level(o, 4 /* fatal */);
    return o;
}

/* Open db->path with every column family into db->db and db->cf. */
static int db_connect(struct stg_db *db)
{
    char *err = NULL;
    rocksdb_options_t *cfo[STG_CF__COUNT + 1];
    const char *names[STG_CF__COUNT + 1];
    rocksdb_column_family_handle_t *handles[STG_CF__COUNT + 1];

    /* RocksDB insists that the default family is opened too; it stays empty. */
    rocksdb_options_t *dbo = db_options();
    /* Without the write-ahead log the families' memtables are the only copy
     * until flushed, each family on its own: flushed together, an entry,
     * its conversation's last_seq and its dedup record still agree after a
     * crash (each flush loses what came after it, all families alike). */
    rocksdb_options_set_atomic_flush(dbo, db->durability == STG_NONE);
    names[0] = "default";
    cfo[0] = rocksdb_options_create();
    for (unsigned i = 0; i < STG_CF__COUNT; i++) {
        names[i + 1] = stg_cf_name((enum stg_cf)i);
        cfo[i + 1] = cf_options(db, (enum stg_cf)i);
    }
    db->db = rocksdb_open_column_families(dbo, db->path, STG_CF__COUNT + 1, names,
                                          (const rocksdb_options_t *const *)cfo, handles, &err);
    for (unsigned i = 0; i <= STG_CF__COUNT; i++)
        rocksdb_options_destroy(cfo[i]);
    rocksdb_options_destroy(dbo);
    if (err) {
        log_error("storage_open_failed", "path=%s err=\"%s\"", db->path, err);
        rocksdb_free(err);
        db->db = NULL;
        return -RP_ESTORAGE;
    }
    rocksdb_column_family_handle_destroy(handles[0]);
    for (unsigned i = 0; i < STG_CF__COUNT; i++)
        db->cf[i] = handles[i + 1];
    return 0;
}

static void db_disconnect(struct stg_db *db)
{
    if (!db->db)
        return;
    for (unsigned i = 0; i < STG_CF__COUNT; i++)
        rocksdb_column_family_handle_destroy(db->cf[i]);
    rocksdb_close(db->db);
    db->db = NULL;
}

int stg_db_open(const struct storage_config *cfg, struct stg_db **out)
{
    int rc = -ENOMEM;
    struct stg_db *db = calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->path = strdup(cfg->path);
    db->durability = cfg->durability;
    db->dedup_window_ms = cfg->dedup_window_ms ? cfg->dedup_window_ms : DEFAULT_DEDUP_WINDOW_MS;
    db->cache = rocksdb_cache_create_lru(cfg->block_cache_bytes ? cfg->block_cache_bytes
                                                                : DEFAULT_BLOCK_CACHE);
    db->dedup_filter =
        rocksdb_compactionfilter_create(db, noop_destroy, dedup_filter, dedup_filter_name);
    db->left_filter =
        rocksdb_compactionfilter_create(db, noop_destroy, left_expiry, left_filter_name);
    db->wopts = rocksdb_writeoptions_create();
    db->ropts = rocksdb_readoptions_create();
    if (!db->path || !db->cache || !db->dedup_filter || !db->left_filter || !db->wopts ||
        !db->ropts)
        goto free_db;
    rocksdb_writeoptions_set_sync(db->wopts, cfg->durability == STG_SYNC);
    rocksdb_writeoptions_disable_WAL(db->wopts, cfg->durability == STG_NONE);
    /* A stalled write fails at once instead of blocking the writer thread:
     * the caller reports "unavailable" and the stall resolves in the background. */
    rocksdb_writeoptions_set_no_slowdown(db->wopts, 1);
    rc = db_connect(db);
    if (rc < 0)
        goto free_db;
    *out = db;
    return 0;
free_db:
    stg_db_close(db);
    return rc;
}

void stg_db_close(struct stg_db *db)
{
    if (!db)
        return;
    db_disconnect(db);
    /* The filter must outlive the database: compactions hold a raw pointer. */
    if (db->dedup_filter)
        rocksdb_compactionfilter_destroy(db->dedup_filter);
    if (db->left_filter)
        rocksdb_compactionfilter_destroy(db->left_filter);
    if (db->cache)
        rocksdb_cache_destroy(db->cache);
    if (db->wopts)
        rocksdb_writeoptions_destroy(db->wopts);
    if (db->ropts)
        rocksdb_readoptions_destroy(db->ropts);
    free(db->path);
    free(db);
}

void stg_db_thread_init(void)
{
    rocksdb_set_perf_level(1 /* kDisable */);
}

/* ---- writes ---- */

struct stg_db_group *stg_db_group_new(struct stg_db *db)
{
    struct stg_db_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->db = db;
    g->wb = rocksdb_writebatch_create();
    return g;
}

void stg_db_group_free(struct stg_db_group *g)
{
    if (!g)
        return;
    rocksdb_writebatch_destroy(g->wb);
    free(g->batches);
    free(g->ops);
    free(g);
}

int stg_db_group_add(struct stg_db_group *g, const struct stg_batch *b)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        const struct stg_batch **p = realloc(g->batches, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        g->batches = p;
        g->cap = cap;
    }
    g->batches[g->n++] = b;
    return 0;
}

static int gop_cmp(const void *pa, const void *pb)
{
    const struct gop *a = pa, *b = pb;
    if (a->cf != b->cf)
        return a->cf < b->cf ? -1 : 1;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    if (c)
        return c;
    if (a->klen != b->klen)
        return a->klen < b->klen ? -1 : 1;
    return a->ord < b->ord ? -1 : a->ord > b->ord;
}

/*
 * The ops of every queued batch into g->wb, sorted by (family, key), and
 * only the last op on each key. Both are invisible to readers: the group is
 * one write batch, applied atomically, so no read can see a value that a
 * later op of the same group replaces, and ops on different keys commute.
 * Dropping them saves a memtable insert and WAL bytes each (a conversation's
 * last_seq record is rewritten by every append of the group). Sorting helps
 * the memtable: the skiplist reuses the previous insert's position when the
 * next key falls right after it, so a conversation's run of log entries costs
 * one full descent instead of one per entry.
 * Returns 0 or -ENOMEM (g->wb untouched).
 */
static int group_fill(struct stg_db_group *g)
{
    size_t total = 0;
    for (size_t i = 0; i < g->n; i++)
        total += stg_batch_count(g->batches[i]);
    if (total > g->ops_cap) {
        size_t cap = g->ops_cap ? g->ops_cap : 256;
        while (cap < total)
            cap *= 2;
        struct gop *p = realloc(g->ops, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        g->ops = p;
        g->ops_cap = cap;
    }
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++) {
        struct stg_op op;
        size_t pos = 0;
        while (stg_batch_next(g->batches[i], &pos, &op)) {
            /* g->ops has room for total ops, counted above */
            // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
            g->ops[n] = (struct gop){.key = op.key,
                                     .val = op.val,
                                     .klen = (uint32_t)op.klen,
                                     .vlen = (uint32_t)op.vlen,
                                     .ord = (uint32_t)n,
                                     .cf = (uint8_t)op.cf,
                                     .put = op.put};
            n++;
        }
    }
    if (n > 1)
        qsort(g->ops, n, sizeof(*g->ops), gop_cmp);
    g->dropped = 0;
    for (size_t i = 0; i < n; i++) {
        const struct gop *o = &g->ops[i];
        const struct gop *next = i + 1 < n ? &g->ops[i + 1] : NULL;
        if (next && next->cf == o->cf && next->klen == o->klen &&
            memcmp(next->key, o->key, o->klen) == 0) {
            g->dropped++;
            continue;
        }
        rocksdb_column_family_handle_t *cf = g->db->cf[o->cf];
        if (o->put)
            rocksdb_writebatch_put_cf(g->wb, cf, o->key, o->klen, o->val, o->vlen);
        else
            rocksdb_writebatch_delete_cf(g->wb, cf, o->key, o->klen);
    }
    return 0;
}

int stg_db_group_commit(struct stg_db_group *g)
{
    char *err = NULL;
    int rc = group_fill(g);
    if (rc == 0 && rocksdb_writebatch_count(g->wb) > 0)
        rocksdb_write(g->db->db, g->db->wopts, g->wb, &err);
    rocksdb_writebatch_clear(g->wb);
    g->n = 0;
    if (rc < 0) {
        log_error("storage_write_failed", "err=\"out of memory sorting the group\"");
        return -RP_ESTORAGE;
    }
    return err ? fail("storage_write_failed", err) : 0;
}

void stg_db_group_drop(struct stg_db_group *g)
{
    g->n = 0;
}

size_t stg_db_group_dropped(const struct stg_db_group *g)
{
    return g->dropped;
}

int stg_db_write_now(struct stg_db *db, const struct stg_batch *b)
{
    struct stg_db_group *g = stg_db_group_new(db);
    if (!g)
        return -ENOMEM;
    int rc = stg_db_group_add(g, b);
    if (rc == 0)
        rc = stg_db_group_commit(g);
    stg_db_group_free(g);
    return rc;
}

/* ---- reads ---- */

/* Build a result from pairs packed in `packed` as u32 klen | u32 vlen | key | val. */
static struct stg_result *result_build(const struct buf *packed, uint32_t n, bool more)
{
    size_t data = packed->len - (size_t)n * 8;
    struct stg_result *r = malloc(sizeof(*r) + n * sizeof(struct stg_kv) + data);
    if (!r)
        return NULL;
    r->n = n;
    r->more = more;
    uint8_t *dst = (uint8_t *)&r->kv[n];
    const uint8_t *src = packed->data;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kl, vl;
        memcpy(&kl, src, 4);
        memcpy(&vl, src + 4, 4);
        src += 8;
        memcpy(dst, src, (size_t)kl + vl);
        r->kv[i] = (struct stg_kv){.key = dst, .klen = kl, .val = dst + kl, .vlen = vl};
        src += (size_t)kl + vl;
        dst += (size_t)kl + vl;
    }
    return r;
}

static void pack_pair(struct buf *p, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    buf_append(p, &kl, 4);
    buf_append(p, &vl, 4);
    buf_append(p, k, kl);
    buf_append(p, v, vl);
}

int stg_db_get(struct stg_db *db, enum stg_cf cf, const void *key, size_t klen, struct buf *val)
{
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get_cf(db->db, db->ropts, db->cf[cf], key, klen, &vlen, &err);
    if (err)
        return fail("storage_get_failed", err);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (cf == STG_CF_DEDUP && dedup_expired(db->dedup_window_ms, v, vlen)) {
        rc = -ENOENT;
        goto free_v;
    }
    buf_reset(val);
    if (buf_append(val, v, vlen) < 0)
        rc = -ENOMEM;
free_v:
    rocksdb_free(v);
    return rc;
}

int stg_db_get_result(struct stg_db *db, enum stg_cf cf, const void *key, size_t klen,
                      struct stg_result **out)
{
    struct buf val, packed;
    buf_init(&val);
    buf_init(&packed);
    int rc = stg_db_get(db, cf, key, klen, &val);
    if (rc < 0)
        goto free_bufs;
    pack_pair(&packed, key, (uint32_t)klen, val.data, (uint32_t)val.len);
    *out = buf_failed(&packed) ? NULL : result_build(&packed, 1, false);
    if (!*out)
        rc = -ENOMEM;
free_bufs:
    buf_deinit(&val);
    buf_deinit(&packed);
    return rc;
}

/*
 * The log family is read in prefix mode (the C API has no total_order_seek),
 * which is only exact for keys sharing the seek target's prefix. A log scan
 * stays within one conversation, so the reverse scan seeks from the last
 * possible key of the lower bound's conversation when the upper bound lies
 * beyond it, instead of from a target in another prefix.
 */
static void seek_last(struct stg_db *db, enum stg_cf cf, rocksdb_iterator_t *it, const void *lower,
                      size_t llen, const void *upper, size_t ulen)
{
    size_t plen = stg_key_log_prefix_len(lower, llen);
    if (cf != STG_CF_LOG || plen == 0 ||
        (stg_key_log_prefix_len(upper, ulen) == plen && memcmp(lower, upper, plen) == 0)) {
        rocksdb_iter_seek_for_prev(it, upper, ulen);
        return;
    }
    unsigned char last[1 + STG_ID_MAX + 9];
    if (plen + 9 > sizeof(last)) {
        rocksdb_iter_seek_to_last(it);
        return;
    }
    memcpy(last, lower, plen);
    memset(last + plen, 0xff, 9);
    rocksdb_iter_seek_for_prev(it, (const char *)last, plen + 9);
}

int stg_db_scan(struct stg_db *db, enum stg_cf cf, const void *lower, size_t llen,
                const void *upper, size_t ulen, uint32_t limit, size_t max_bytes, bool reverse,
                struct stg_result **out)
{
    int rc = 0;
    char *err = NULL;
    uint32_t n = 0;
    size_t vbytes = 0;
    bool more = false;
    struct buf packed;
    buf_init(&packed);

    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lower, llen);
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, ulen);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, ro, db->cf[cf]);

    if (reverse)
        seek_last(db, cf, it, lower, llen, upper, ulen);
    else
        rocksdb_iter_seek(it, lower, llen);
    for (; rocksdb_iter_valid(it); reverse ? rocksdb_iter_prev(it) : rocksdb_iter_next(it)) {
        if (n == limit || (max_bytes && vbytes > max_bytes)) {
            more = true;
            break;
        }
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        pack_pair(&packed, k, (uint32_t)kl, v, (uint32_t)vl);
        vbytes += vl;
        n++;
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        rc = fail("storage_scan_failed", err);
        goto free_iter;
    }
    *out = buf_failed(&packed) ? NULL : result_build(&packed, n, more);
    if (!*out)
        rc = -ENOMEM;
free_iter:
    /* The iterator goes before the options and the bounds they point to. */
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    buf_deinit(&packed);
    return rc;
}

/* ---- maintenance ---- */

int stg_db_checkpoint(struct stg_db *db, const char *dir)
{
    char *err = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(db->db, &err);
    if (!err) {
        rocksdb_checkpoint_create(cp, dir, 0, &err);
        rocksdb_checkpoint_object_destroy(cp);
    }
    return err ? fail("storage_checkpoint_failed", err) : 0;
}

int stg_db_flush(struct stg_db *db)
{
    int rc = 0;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (unsigned i = 0; i < STG_CF__COUNT && rc == 0; i++) {
        char *err = NULL;
        rocksdb_flush_cf(db->db, fo, db->cf[i], &err);
        if (err)
            rc = fail("storage_flush_failed", err);
    }
    rocksdb_flushoptions_destroy(fo);
    return rc;
}

int stg_db_compact(struct stg_db *db, enum stg_cf cf)
{
    rocksdb_compact_range_cf(db->db, db->cf[cf], NULL, 0, NULL, 0);
    return 0;
}
