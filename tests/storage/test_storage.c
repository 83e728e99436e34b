/*
 * storage: writes and reads through the shard queues. Completions carry their
 * tags in submit order; range reads are exact at every boundary, forward and
 * reverse, from the memtable and from table files (where the prefix bloom is
 * used); dedup records expire by age on read and are dropped by compaction;
 * full queues push back; data survives a reopen and a checkpoint; a batch
 * marked after_prev fails, unwritten, when the one before it failed.
 */
#include "storage/storage.h"

#include "base/clock.h"
#include "base/err.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char root[] = "/tmp/rp_test_storage_XXXXXX";
static atomic_uint notified;

static void on_notify(void *arg, unsigned shard)
{
    atomic_fetch_add(&notified, 1);
}

static struct storage *open_at(const char *name, unsigned nshards, uint64_t window, uint32_t depth)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, name);
    struct storage_config cfg = {.path = path,
                                 .durability = STG_SYNC,
                                 .nshards = nshards,
                                 .dedup_window_ms = window,
                                 .queue_depth = depth,
                                 .notify = on_notify};
    struct storage *st = NULL;
    int rc = storage_open(&cfg, &st);
    if (rc < 0) {
        fprintf(stderr, "storage_open(%s): %s\n", path, err_str(rc));
        exit(1);
    }
    return st;
}

/* Wait for one completion of shard (10 s at most). */
static struct stg_done wait_one(struct storage *st, unsigned shard)
{
    struct stg_done d = {.err = -ETIMEDOUT};
    for (int i = 0; i < 100000; i++) {
        if (storage_poll(st, shard, &d, 1) == 1)
            return d;
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
    fprintf(stderr, "timed out waiting for a completion\n");
    failures++;
    return d;
}

static int write_wait(struct storage *st, unsigned shard, struct stg_batch *b, uint64_t tag)
{
    CHECK(storage_write(st, shard, b, tag) == 0);
    struct stg_done d = wait_one(st, shard);
    CHECK(d.tag == tag && d.res == NULL);
    return d.err;
}

static void put_log(struct stg_batch *b, const char *conv, uint64_t seq)
{
    struct buf k;
    buf_init(&k);
    char val[64];
    int n = snprintf(val, sizeof(val), "%s#%llu", conv, (unsigned long long)seq);
    stg_key_log(&k, conv, strlen(conv), seq);
    CHECK(stg_batch_put(b, STG_CF_LOG, k.data, k.len, val, (size_t)n) == 0);
    buf_deinit(&k);
}

static bool has_log(struct storage *st, const char *conv, uint64_t seq)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    stg_key_log(&k, conv, strlen(conv), seq);
    int rc = storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v);
    CHECK(rc == 0 || rc == -ENOENT);
    buf_deinit(&k);
    buf_deinit(&v);
    return rc == 0;
}

/*
 * The fence behind pipelined writes, per shard: after a failed submit, every
 * following submit marked after_prev fails unwritten, up to the first
 * unmarked one; another shard is not affected. Run with the submits queued
 * together (they may share a group) and with each awaited (one group each):
 * the outcome is the same. how: the first failure is of the batch alone or of
 * its whole group's write (only awaited: a shared group would fail too).
 */
static void test_after_prev(struct storage *st, bool together, enum stg_fail how)
{
    const char *conv = together ? "fence-t" : how == STG_FAIL_GROUP ? "fence-g" : "fence-s";
    /* seq 1 written; 2 fails (injected); 3 marked: fenced; 4 independent:
     * written, and the fence stays; 5 marked: fenced; 6 unmarked: written, the
     * fence lifted; 7 marked after a success: written; 8 on shard 0: written */
    struct {
        unsigned shard;
        bool after_prev, indep, inject;
        int err;
    } w[] = {{1, false, false, false, 0},
             {1, true, false, true, -RP_ESTORAGE},
             {1, true, false, false, -RP_ESTORAGE},
             {1, false, true, false, 0}, /* outside the chain: written, fence kept */
             {1, true, false, false, -RP_ESTORAGE},
             {1, false, false, false, 0},
             {1, true, false, false, 0},
             {0, true, false, false, 0}};
    size_t n = sizeof(w) / sizeof(w[0]);
    for (size_t i = 0; i < n; i++) {
        struct stg_batch *b = stg_batch_new();
        put_log(b, conv, i + 1);
        stg_batch_set_after_prev(b, w[i].after_prev);
        stg_batch_set_indep(b, w[i].indep);
        if (w[i].inject)
            stg_batch_inject_failure(b, how);
        if (together) {
            CHECK(storage_write(st, w[i].shard, b, i + 1) == 0);
        } else {
            CHECK(write_wait(st, w[i].shard, b, i + 1) == w[i].err);
        }
    }
    for (size_t i = 0; together && i < n; i++) {
        if (w[i].shard != 1)
            continue;
        struct stg_done d = wait_one(st, 1);
        CHECK(d.tag == i + 1 && d.err == w[i].err);
    }
    if (together) {
        struct stg_done d = wait_one(st, 0);
        CHECK(d.tag == n && d.err == 0);
    }
    for (size_t i = 0; i < n; i++)
        CHECK(has_log(st, conv, i + 1) == (w[i].err == 0));
}

static void test_write_order(struct storage *st)
{
    /* Many submits queued before the writer can take them: one or a few groups,
     * completions in submit order. */
    for (uint64_t tag = 1; tag <= 100; tag++) {
        struct stg_batch *b = stg_batch_new();
        put_log(b, "order", tag);
        CHECK(storage_write(st, 1, b, tag) == 0);
    }
    for (uint64_t tag = 1; tag <= 100; tag++) {
        struct stg_done d = wait_one(st, 1);
        CHECK(d.tag == tag && d.err == 0);
    }
    struct storage_stats s;
    storage_stats_get(st, &s);
    CHECK(s.submits >= 100 && s.groups <= s.submits);
    /* the wake-up follows the publish: allow it a moment */
    for (int i = 0; i < 1000 && atomic_load(&notified) == 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    CHECK(atomic_load(&notified) > 0);

    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    stg_key_log(&k, "order", 5, 77);
    CHECK(storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v) == 0);
    CHECK(v.len == 8 && memcmp(v.data, "order#77", 8) == 0);
    stg_key_log(&k, "order", 5, 101);
    CHECK(storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v) == -ENOENT);

    /* Async GET: found and not found. */
    stg_key_log(&k, "order", 5, 3);
    struct stg_read q = {.kind = STG_GET, .cf = STG_CF_LOG, .key = k.data, .klen = k.len};
    CHECK(storage_read(st, 0, &q, 500) == 0);
    struct stg_done d = wait_one(st, 0);
    CHECK(d.tag == 500 && d.err == 0 && d.res && d.res->n == 1);
    if (d.res)
        CHECK(d.res->kv[0].vlen == 7 && memcmp(d.res->kv[0].val, "order#3", 7) == 0);
    stg_result_free(d.res);
    stg_key_log(&k, "order", 5, 0);
    q.key = k.data;
    CHECK(storage_read(st, 0, &q, 501) == 0);
    d = wait_one(st, 0);
    CHECK(d.tag == 501 && d.err == -ENOENT && d.res == NULL);
    buf_deinit(&k);
    buf_deinit(&v);
}

/* Conversations whose ids are prefixes of each other, or differ in a last 0xff byte. */
static const char *const convs[] = {"a", "ab", "abc", "ab\xff", "b"};
#define NCONV (sizeof(convs) / sizeof(convs[0]))
#define NSEQ  40

/* A scan of conv's log from seq from, to seq to or (whole) to its end,
 * through the reader thread; its completion. */
static struct stg_done scan_log(struct storage *st, const char *conv, uint64_t from, uint64_t to,
                                bool whole, uint32_t limit, bool reverse, size_t max_bytes)
{
    struct buf lo, hi;
    buf_init(&lo);
    buf_init(&hi);
    stg_key_log(&lo, conv, strlen(conv), from);
    if (whole) {
        stg_key_prefix(&hi, conv, strlen(conv));
        stg_key_successor(&hi);
    } else {
        stg_key_log(&hi, conv, strlen(conv), to + 1);
    }
    struct stg_read q = {.kind = STG_SCAN,
                         .cf = STG_CF_LOG,
                         .key = lo.data,
                         .klen = lo.len,
                         .upper = hi.data,
                         .ulen = hi.len,
                         .limit = limit,
                         .reverse = reverse,
                         .max_bytes = max_bytes};
    CHECK(storage_read(st, 0, &q, 7) == 0);
    buf_deinit(&lo); /* the request must not depend on the caller's buffers */
    buf_deinit(&hi);
    return wait_one(st, 0);
}

static void check_scan(struct storage *st, const char *conv, uint64_t from, uint64_t to, bool whole,
                       uint32_t limit, bool reverse)
{
    struct stg_done d = scan_log(st, conv, from, to, whole, limit, reverse, 0);
    CHECK(d.err == 0 && d.res);
    if (!d.res)
        return;

    /* The model: seqs 1..NSEQ exist; the range is [max(from,1), min(to,NSEQ)]. */
    uint64_t first = from < 1 ? 1 : from;
    uint64_t last = whole || to > NSEQ ? NSEQ : to;
    uint64_t avail = last >= first ? last - first + 1 : 0;
    uint64_t want = avail < limit ? avail : limit;
    bool ok = d.res->n == want && d.res->more == (avail > limit);
    for (uint32_t i = 0; ok && i < d.res->n; i++) {
        struct stg_view cv;
        uint64_t seq;
        ok = stg_key_split_log(d.res->kv[i].key, d.res->kv[i].klen, &cv, &seq) == 0 &&
             cv.len == strlen(conv) && memcmp(cv.p, conv, cv.len) == 0 &&
             seq == (reverse ? last - i : first + i);
        char val[64];
        int n = snprintf(val, sizeof(val), "%s#%llu", conv, (unsigned long long)seq);
        ok = ok && d.res->kv[i].vlen == (uint32_t)n && memcmp(d.res->kv[i].val, val, n) == 0;
    }
    if (!ok) {
        fprintf(stderr,
                "scan conv=%s from=%llu to=%llu whole=%d limit=%u reverse=%d: n=%u more=%d\n", conv,
                (unsigned long long)from, (unsigned long long)to, whole, limit, reverse, d.res->n,
                d.res->more);
        failures++;
    }
    stg_result_free(d.res);
}

static void scan_all(struct storage *st)
{
    static const uint32_t limits[] = {0, 1, 3, 100};
    for (unsigned c = 0; c < NCONV; c++)
        for (uint64_t from = 0; from <= NSEQ + 1; from++)
            for (uint64_t to = from; to <= NSEQ + 1; to += (to < from + 3 ? 1 : 7))
                for (unsigned l = 0; l < 4; l++)
                    for (int rev = 0; rev < 2; rev++) {
                        check_scan(st, convs[c], from, to, false, limits[l], rev);
                        if (to == from)
                            check_scan(st, convs[c], from, 0, true, limits[l], rev);
                    }
}

/* A scan of conv "b" (values "b#1" .. "b#40") bounded by max_bytes: n pairs
 * come, and more says whether it stopped with pairs left. */
static void check_max_bytes(struct storage *st, bool reverse, size_t max_bytes, uint32_t n,
                            bool more)
{
    struct stg_done d = scan_log(st, "b", 0, 0, true, 100, reverse, max_bytes);
    CHECK(d.err == 0 && d.res && d.res->n == n && d.res->more == more);
    stg_result_free(d.res);
}

static void test_ranges(struct storage *st)
{
    /* Interleave conversations in one batch per seq so their keys share files. */
    for (uint64_t seq = 1; seq <= NSEQ; seq++) {
        struct stg_batch *b = stg_batch_new();
        for (unsigned c = 0; c < NCONV; c++)
            put_log(b, convs[c], seq);
        CHECK(write_wait(st, 0, b, seq) == 0);
    }
    scan_all(st); /* memtable */
    /* the pair that passes max_bytes is the last one read */
    check_max_bytes(st, false, 7, 3, true);                      /* 3 + 3 + 3 bytes */
    check_max_bytes(st, true, 7, 2, true);                       /* "b#40", "b#39" */
    check_max_bytes(st, false, 0, NSEQ, false);                  /* no bound */
    check_max_bytes(st, false, 9 * 3 + 31 * 4 - 1, NSEQ, false); /* passed by the last */
    CHECK(storage_flush(st) == 0);
    scan_all(st); /* table files, prefix bloom */
    CHECK(storage_compact(st, STG_CF_LOG) == 0);
    scan_all(st); /* bottommost level (ZSTD) */

    /* Malformed reads are refused up front. */
    struct stg_read q = {.kind = STG_SCAN,
                         .cf = STG_CF_LOG,
                         .key = "b",
                         .klen = 1,
                         .upper = "a",
                         .ulen = 1,
                         .limit = 1};
    CHECK(storage_read(st, 0, &q, 1) == -EINVAL);
    q.cf = STG_CF__COUNT;
    CHECK(storage_read(st, 0, &q, 1) == -EINVAL);
    q = (struct stg_read){.kind = STG_GET, .cf = STG_CF_LOG, .key = "a", .klen = 1};
    CHECK(storage_read(st, 9, &q, 1) == -EINVAL);
}

static void put_dedup(struct stg_batch *b, const char *cmid, uint64_t ts)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    stg_key_dedup(&k, "conv", 4, "user", 4, cmid, strlen(cmid));
    buf_put_be64(&v, ts);
    buf_put_be64(&v, 42); /* the seq it was given */
    CHECK(stg_batch_put(b, STG_CF_DEDUP, k.data, k.len, v.data, v.len) == 0);
    buf_deinit(&k);
    buf_deinit(&v);
}

static int get_dedup(struct storage *st, const char *cmid, bool async)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    stg_key_dedup(&k, "conv", 4, "user", 4, cmid, strlen(cmid));
    int rc;
    if (async) {
        struct stg_read q = {.kind = STG_GET, .cf = STG_CF_DEDUP, .key = k.data, .klen = k.len};
        CHECK(storage_read(st, 0, &q, 9) == 0);
        struct stg_done d = wait_one(st, 0);
        rc = d.err;
        CHECK((rc == 0) == (d.res != NULL));
        stg_result_free(d.res);
    } else {
        rc = storage_get_sync(st, STG_CF_DEDUP, k.data, k.len, &v);
        CHECK(rc != 0 || v.len == 16);
    }
    buf_deinit(&k);
    buf_deinit(&v);
    return rc;
}

static void test_dedup(void)
{
    const uint64_t hour = 3600 * 1000;
    uint64_t now = clock_wall_ms();

    struct storage *st = open_at("dedup", 1, hour, 0);
    struct stg_batch *b = stg_batch_new();
    put_dedup(b, "fresh", now);
    put_dedup(b, "old", now - 10000);
    put_dedup(b, "ancient", now - 2 * hour);
    CHECK(write_wait(st, 0, b, 1) == 0);
    for (int async = 0; async < 2; async++) {
        CHECK(get_dedup(st, "fresh", async) == 0);
        CHECK(get_dedup(st, "old", async) == 0);
        CHECK(get_dedup(st, "ancient", async) == -ENOENT); /* age check on read */
        CHECK(get_dedup(st, "never", async) == -ENOENT);
    }
    storage_close(st);

    /* A 5 s window: "old" reads as gone, and compaction removes it for good. */
    st = open_at("dedup", 1, 5000, 0);
    CHECK(get_dedup(st, "old", false) == -ENOENT);
    CHECK(get_dedup(st, "fresh", false) == 0);
    CHECK(storage_flush(st) == 0);
    CHECK(storage_compact(st, STG_CF_DEDUP) == 0);
    storage_close(st);

    st = open_at("dedup", 1, hour, 0);
    CHECK(get_dedup(st, "old", false) == -ENOENT); /* dropped by the compaction filter */
    CHECK(get_dedup(st, "fresh", false) == 0);
    storage_close(st);
}

static void test_backpressure(void)
{
    struct storage *st = open_at("bp", 1, 0, 4);
    int accepted = 0, full = 0;
    for (int i = 0; i < 200 && !full; i++) {
        struct stg_batch *b = stg_batch_new();
        put_log(b, "bp", (uint64_t)i + 1);
        int rc = storage_write(st, 0, b, (uint64_t)i);
        if (rc == -RP_EFULL) {
            full = 1;
            stg_batch_free(b); /* still ours */
        } else {
            CHECK(rc == 0);
            accepted++;
        }
    }
    CHECK(full); /* nobody polls: completions (4) and submits (4) fill up */
    CHECK(accepted >= 4 && accepted <= 16);
    for (int i = 0; i < accepted; i++) {
        struct stg_done d = wait_one(st, 0);
        CHECK(d.tag == (uint64_t)i && d.err == 0);
    }
    /* Once drained, writes are accepted again. */
    struct stg_batch *b = stg_batch_new();
    put_log(b, "bp", 1000);
    CHECK(write_wait(st, 0, b, 1000) == 0);

    /* Unpolled completions and queued work are cleaned up by close. */
    for (int i = 0; i < 3; i++) {
        b = stg_batch_new();
        put_log(b, "bp", 2000 + (uint64_t)i);
        CHECK(storage_write(st, 0, b, 1) == 0);
    }
    storage_close(st);
}

static void test_reopen_checkpoint(void)
{
    struct storage *st = open_at("persist", 2, 0, 0);
    struct stg_batch *b = stg_batch_new();
    put_log(b, "p", 1);
    CHECK(stg_batch_put(b, STG_CF_CONV, "\x01p", 2, "meta", 4) == 0);
    CHECK(stg_batch_count(b) == 2);
    CHECK(storage_write_sync(st, b) == 0);
    stg_batch_clear(b);
    CHECK(stg_batch_del(b, STG_CF_CONV, "\x01p", 2) == 0);
    put_log(b, "p", 2);
    CHECK(write_wait(st, 1, b, 3) == 0);
    char cp[300];
    snprintf(cp, sizeof(cp), "%s/checkpoint", root);
    CHECK(storage_checkpoint(st, cp) == 0);
    storage_close(st);

    const char *names[] = {"persist", "checkpoint"};
    for (int i = 0; i < 2; i++) {
        st = open_at(names[i], 1, 0, 0);
        struct buf k, v;
        buf_init(&k);
        buf_init(&v);
        stg_key_log(&k, "p", 1, 2);
        CHECK(storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v) == 0);
        CHECK(v.len == 3 && memcmp(v.data, "p#2", 3) == 0);
        CHECK(storage_get_sync(st, STG_CF_CONV, "\x01p", 2, &v) == -ENOENT);
        buf_deinit(&k);
        buf_deinit(&v);
        storage_close(st);
    }
}

static void test_config(void)
{
    enum stg_durability d;
    CHECK(stg_durability_parse("sync", &d) == 0 && d == STG_SYNC);
    CHECK(stg_durability_parse("wal", &d) == 0 && d == STG_WAL);
    CHECK(stg_durability_parse("none", &d) == 0 && d == STG_NONE);
    CHECK(stg_durability_parse("fsync", &d) == -EINVAL);
    struct storage *st = NULL;
    struct storage_config cfg = {.path = root, .nshards = 0};
    CHECK(storage_open(&cfg, &st) == -EINVAL);
}

/* The reference probe writes, reports a rate, and its data is readable
 * RocksDB (it opens again); bad arguments are refused. */
static void test_raw_puts(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/raw", root);
    double rate = 0;
    CHECK(storage_raw_puts(dir, STG_WAL, 0, 0.05, &rate) == -EINVAL);
    CHECK(storage_raw_puts(dir, STG_WAL, 8, 0, &rate) == -EINVAL);
    CHECK(storage_raw_puts(dir, STG_SYNC, 8, 0.05, &rate) == 0 && rate > 0);
    rate = 0;
    CHECK(storage_raw_puts(dir, STG_WAL, 8, 0.05, &rate) == 0 && rate > 0);
    snprintf(dir, sizeof(dir), "%s/raw/not-a-dir", root); /* a file in the way: open fails */
    FILE *f = fopen(dir, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    snprintf(dir, sizeof(dir), "%s/raw/not-a-dir/db", root);
    CHECK(storage_raw_puts(dir, STG_WAL, 8, 0.05, &rate) == -RP_ESTORAGE);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_config();
    struct storage *st = open_at("main", 2, 0, 0);
    test_write_order(st);
    test_ranges(st);
    struct storage_stats s0, s1;
    storage_stats_get(st, &s0);
    test_after_prev(st, true, STG_FAIL_BATCH);
    test_after_prev(st, false, STG_FAIL_BATCH);
    /* the whole group's write fails (as when RocksDB refuses it), each submit
     * in a group of its own so that no other one shares its fate */
    test_after_prev(st, false, STG_FAIL_GROUP);
    storage_stats_get(st, &s1);
    CHECK(s1.fenced - s0.fenced == 6);
    storage_close(st);
    test_dedup();
    test_backpressure();
    test_reopen_checkpoint();
    test_raw_puts();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "test_storage: %d failures\n", failures);
        return 1;
    }
    printf("test_storage: ok\n");
    return 0;
}
