/*
 * Storage threads and queues: the part of storage that shards talk to.
 *
 * Per shard there is a lane: a write queue and a read queue (shard -> storage)
 * and a write-completion and a read-completion queue (storage -> shard), all
 * single-producer single-consumer rings, and a reader thread. One writer
 * thread serves every lane: each group it commits holds what all shards
 * queued, which makes groups (and so fsyncs) fewer and larger than with a
 * writer per shard, and costs one thread instead of one per shard on small
 * machines. Every ring has
 * exactly one producer and one consumer, and the shard loop never takes a
 * lock or makes a RocksDB call.
 *
 * A worker only takes as many requests as its completion ring has room for,
 * so completions can always be posted without blocking; when the shard stops
 * polling, the submit ring fills and the shard sees -RP_EFULL (backpressure
 * all the way back). Idle workers sleep on a futex eventcount (base/wake.h):
 * a producer pays one shared load per publish while the worker is busy.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "storage/storage.h"

#include "base/err.h"
#include "base/log.h"
#include "base/spsc.h"
#include "base/wake.h"
#include "storage/db.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_QUEUE_DEPTH 4096
/* How long a worker waits for the shard to drain a full completion ring
 * before looking again (the poller does not signal freed room). */
#define ROOM_WAIT_NS 200000

struct wreq {
    struct stg_batch *b;
    uint64_t tag;
};

/* A read request with its key and bound copied behind it. */
struct rreq {
    enum stg_read_kind kind;
    enum stg_cf cf;
    uint32_t limit;
    bool reverse;
    size_t max_bytes;
    size_t klen, ulen;
    uint8_t bytes[]; /* key, then upper */
};

struct rslot {
    struct rreq *r;
    uint64_t tag;
};

struct worker {
    struct wake wake;
    _Atomic uint32_t futex;
    pthread_t thread;
    bool started;
    struct storage *st;
    struct lane *lane; /* a reader's lane; NULL for the writer */
    unsigned shard;
};

struct lane {
    struct spsc wq, wdone; /* writes in, write completions out */
    struct spsc rq, rdone; /* reads in, read completions out */
    struct worker reader;
    /* writer only: the last submit taken failed (or will, when last_in_group
     * and the group fails) */
    bool failed, last_in_group;
};

struct storage {
    struct storage_config cfg;
    struct stg_db *db;
    struct lane *lanes;
    struct worker writer;
    struct wreq *grp;           /* writer: the submits of the group being committed */
    unsigned *grp_shard;        /* writer: the shard of each */
    bool *grp_skip;             /* writer: each fails without being written */
    struct stg_db_group *group; /* writer: the group's batches */
    atomic_bool stopping;
    _Atomic uint64_t groups, submits, ops, ops_dropped, write_errors, fenced, reads, read_errors;
    _Atomic uint64_t group_submits_hist[STG_HIST_N], commit_us_hist[STG_HIST_N], commit_us_sum;
};

static const char *const durability_names[] = {
    [STG_SYNC] = "sync", [STG_WAL] = "wal", [STG_NONE] = "none"};

int stg_durability_parse(const char *s, enum stg_durability *out)
{
    for (unsigned i = 0; i < sizeof(durability_names) / sizeof(durability_names[0]); i++) {
        if (strcmp(s, durability_names[i]) == 0) {
            *out = (enum stg_durability)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *stg_durability_name(enum stg_durability d)
{
    return (unsigned)d <= STG_NONE ? durability_names[d] : "?";
}

/* ---- sleeping and waking ---- */

static void futex_wait(_Atomic uint32_t *word, uint32_t seen, long timeout_ns)
{
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, timeout_ns > 0 ? &ts : NULL, NULL, 0);
}

static void worker_kick(struct worker *w)
{
    atomic_fetch_add_explicit(&w->futex, 1, memory_order_release);
    syscall(SYS_futex, &w->futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Producer side, after publishing into the worker's ring. */
static void worker_wake(struct worker *w)
{
    if (wake_needed(&w->wake))
        worker_kick(w);
}

/* Sleep until a producer publishes (has_work turns true) or for timeout_ns when > 0. */
static void worker_sleep(struct worker *w, bool (*has_work)(struct worker *), long timeout_ns)
{
    uint32_t seen = atomic_load_explicit(&w->futex, memory_order_acquire);
    wake_prepare(&w->wake);
    if ((timeout_ns == 0 && has_work(w)) || atomic_load(&w->st->stopping)) {
        wake_cancel(&w->wake);
        return;
    }
    futex_wait(&w->futex, seen, timeout_ns);
    wake_cancel(&w->wake);
}

static uint32_t ring_room(const struct spsc *r)
{
    uint32_t used = spsc_depth(r);
    return used > r->mask ? 0 : r->mask + 1 - used;
}

static void notify(struct storage *st, unsigned shard)
{
    if (st->cfg.notify)
        st->cfg.notify(st->cfg.notify_arg, shard);
}

/* ---- the writer ---- */

/* Post one completion. While stopping with nobody polling, a full ring drops it. */
static void post(struct spsc *done, const struct stg_done *d)
{
    if (spsc_push(done, d) < 0 && d->res)
        stg_result_free(d->res);
}

static bool writer_has_work(struct worker *w)
{
    struct storage *st = w->st;
    for (unsigned i = 0; i < st->cfg.nshards; i++)
        if (spsc_front(&st->lanes[i].wq))
            return true;
    return false;
}

/* Bucket of v in a histogram whose bucket i holds values <= base << i. */
static unsigned hist_bucket(uint64_t v, uint64_t base)
{
    unsigned i = 0;
    while (i < STG_HIST_N - 1 && v > base << i)
        i++;
    return i;
}

static void hist_record(struct storage *st, uint32_t submits, uint64_t us)
{
    atomic_fetch_add_explicit(&st->group_submits_hist[hist_bucket(submits, 1)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&st->commit_us_hist[hist_bucket(us, STG_HIST_COMMIT_US)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&st->commit_us_sum, us, memory_order_relaxed);
}

/*
 * Commit the n submits in st->grp as one write, then complete each in its
 * lane. A submit with grp_skip set is not written and fails on its own (see
 * writer_take).
 */
static void writer_commit(struct storage *st, uint32_t n)
{
    uint64_t ops = 0;
    uint32_t added = 0;
    int err = 0;
    bool fail = false; /* an injected failure of the whole group */
    for (uint32_t i = 0; i < n && err == 0; i++) {
        if (st->grp_skip[i])
            continue;
        fail |= stg_batch_failure_injected(st->grp[i].b) == STG_FAIL_GROUP;
        err = stg_db_group_add(st->group, st->grp[i].b) < 0 ? -RP_ESTORAGE : 0;
        ops += stg_batch_count(st->grp[i].b);
        added++;
    }
    if (err == 0 && fail)
        err = -RP_ESTORAGE;
    if (err < 0)
        stg_db_group_drop(st->group); /* none is written */
    if (added && err == 0) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        err = stg_db_group_commit(st->group);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (err == 0)
            atomic_fetch_add_explicit(&st->ops_dropped, stg_db_group_dropped(st->group),
                                      memory_order_relaxed);
        hist_record(
            st, added,
            (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000));
        atomic_fetch_add_explicit(&st->groups, 1, memory_order_relaxed);
    }
    if (err < 0) {
        atomic_fetch_add_explicit(&st->write_errors, 1, memory_order_relaxed);
        log_debug("storage_group_failed", "submits=%u ops=%llu", added, (unsigned long long)ops);
        /* the lanes whose last submit was in the group: their next dependent
         * submit must fail */
        for (unsigned s = 0; s < st->cfg.nshards; s++)
            if (st->lanes[s].last_in_group)
                st->lanes[s].failed = true;
    }
    /* counted before any completion is published, so a shard that has its
     * completion also sees it in the stats */
    atomic_fetch_add_explicit(&st->submits, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->ops, ops, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        stg_batch_free(st->grp[i].b);
        post(
            &st->lanes[st->grp_shard[i]].wdone,
            &(struct stg_done){.tag = st->grp[i].tag, .err = st->grp_skip[i] ? -RP_ESTORAGE : err});
    }
    for (unsigned s = 0; s < st->cfg.nshards; s++) {
        st->lanes[s].last_in_group = false;
        if (spsc_publish(&st->lanes[s].wdone))
            notify(st, s);
    }
}

/*
 * Put a submit taken from lane s into the group, deciding now whether it is
 * written: one marked after_prev whose lane's previous submit failed fails
 * too (the fence that lets a shard pipeline dependent batches), and an
 * injected failure fails. lane->failed then describes the lane's last submit
 * taken; for one that joins the group it is settled by the group's outcome.
 */
static void writer_take(struct storage *st, uint32_t n, unsigned s, const struct wreq *e)
{
    struct lane *l = &st->lanes[s];
    st->grp[n] = *e;
    st->grp_shard[n] = s;
    bool injected = stg_batch_failure_injected(e->b) == STG_FAIL_BATCH;
    bool fenced = stg_batch_after_prev(e->b) && l->failed;
    bool skip = fenced || injected;
    st->grp_skip[n] = skip;
    if (fenced)
        atomic_fetch_add_explicit(&st->fenced, 1, memory_order_relaxed);
    else if (injected)
        atomic_fetch_add_explicit(&st->write_errors, 1, memory_order_relaxed);
    if (stg_batch_indep(e->b) && !stg_batch_after_prev(e->b))
        return; /* outside the lane's chain: leaves failed/last_in_group alone */
    l->failed = skip;
    l->last_in_group = !skip;
}

static void *writer_main(void *arg)
{
    struct worker *w = arg;
    struct storage *st = w->st;
    stg_db_thread_init();

    for (;;) {
        bool stopping = atomic_load(&st->stopping);
        bool blocked = false; /* some shard has work but no room for completions */
        uint32_t n = 0;
        for (unsigned s = 0; s < st->cfg.nshards; s++) {
            struct lane *l = &st->lanes[s];
            uint32_t room = stopping ? UINT32_MAX : ring_room(&l->wdone);
            uint32_t taken = 0;
            struct wreq *e;
            while (taken < room && (e = spsc_front(&l->wq))) {
                writer_take(st, n++, s, e);
                taken++;
                spsc_pop(&l->wq);
            }
            if (taken)
                spsc_release(&l->wq);
            else if (room == 0 && spsc_front(&l->wq))
                blocked = true;
        }
        if (n) {
            writer_commit(st, n);
            continue;
        }
        if (stopping && !writer_has_work(w))
            break;
        worker_sleep(w, writer_has_work, blocked ? ROOM_WAIT_NS : 0);
    }
    return NULL;
}

/* ---- the reader ---- */

static void reader_one(struct worker *w, struct rreq *r, uint64_t tag)
{
    struct storage *st = w->st;
    struct stg_done d = {.tag = tag};
    if (r->kind == STG_GET)
        d.err = stg_db_get_result(st->db, r->cf, r->bytes, r->klen, &d.res);
    else
        d.err = stg_db_scan(st->db, r->cf, r->bytes, r->klen, r->bytes + r->klen, r->ulen, r->limit,
                            r->max_bytes, r->reverse, &d.res);
    if (d.err < 0) {
        d.res = NULL;
        if (d.err != -ENOENT)
            atomic_fetch_add_explicit(&st->read_errors, 1, memory_order_relaxed);
    }
    free(r);
    atomic_fetch_add_explicit(&st->reads, 1, memory_order_relaxed);
    post(&w->lane->rdone, &d);
    spsc_publish(&w->lane->rdone);
    notify(st, w->shard);
}

static bool reader_has_work(struct worker *w)
{
    return spsc_front(&w->lane->rq) != NULL;
}

static void *reader_main(void *arg)
{
    struct worker *w = arg;
    struct storage *st = w->st;
    struct lane *lane = w->lane;
    log_set_shard((int)w->shard);
    stg_db_thread_init();

    /* Once stopping, the shards are gone: nobody will take a result, so the
     * reads still queued are not run (storage_close frees them). Running
     * them filled the completion ring with results nobody frees, up to the
     * ring's depth times a scan's size (gigabytes, under a backlog of
     * history reads), and delayed the exit by the whole backlog. */
    while (!atomic_load(&st->stopping)) {
        uint32_t room = ring_room(&lane->rdone);
        uint32_t n = 0;
        struct rslot *e;
        /* Release each slot before the (slow) read, so the shard can refill. */
        while (n < room && !atomic_load_explicit(&st->stopping, memory_order_relaxed) &&
               (e = spsc_front(&lane->rq))) {
            struct rslot s = *e;
            spsc_pop(&lane->rq);
            spsc_release(&lane->rq);
            reader_one(w, s.r, s.tag);
            n++;
        }
        if (n)
            continue;
        worker_sleep(w, reader_has_work, room == 0 ? ROOM_WAIT_NS : 0);
    }
    return NULL;
}

/* ---- open / close ---- */

static int lane_init(struct lane *l, uint32_t depth)
{
    int rc;
    if ((rc = spsc_init(&l->wq, depth, sizeof(struct wreq))) < 0 ||
        (rc = spsc_init(&l->wdone, depth, sizeof(struct stg_done))) < 0 ||
        (rc = spsc_init(&l->rq, depth, sizeof(struct rslot))) < 0 ||
        (rc = spsc_init(&l->rdone, depth, sizeof(struct stg_done))) < 0)
        return rc;
    return 0;
}

static void lane_drain(struct lane *l)
{
    struct wreq *w;
    struct rslot *r;
    struct stg_done *d;
    if (l->wq.slots)
        while ((w = spsc_front(&l->wq))) {
            stg_batch_free(w->b);
            spsc_pop(&l->wq);
        }
    if (l->rq.slots)
        while ((r = spsc_front(&l->rq))) {
            free(r->r);
            spsc_pop(&l->rq);
        }
    if (l->wdone.slots)
        while ((d = spsc_front(&l->wdone)))
            spsc_pop(&l->wdone);
    if (l->rdone.slots)
        while ((d = spsc_front(&l->rdone))) {
            stg_result_free(d->res);
            spsc_pop(&l->rdone);
        }
    spsc_deinit(&l->wq);
    spsc_deinit(&l->wdone);
    spsc_deinit(&l->rq);
    spsc_deinit(&l->rdone);
}

static int worker_start(struct storage *st, struct worker *w, struct lane *lane, unsigned shard,
                        void *(*fn)(void *))
{
    w->st = st;
    w->lane = lane;
    w->shard = shard;
    int rc = pthread_create(&w->thread, NULL, fn, w);
    if (rc)
        return -rc;
    char name[16];
    if (lane)
        snprintf(name, sizeof(name), "rp-read%u", shard % 10000u);
    else
        snprintf(name, sizeof(name), "rp-writer");
    pthread_setname_np(w->thread, name); /* for top -H and perf; failure is harmless */
    w->started = true;
    return 0;
}

static void worker_stop(struct worker *w)
{
    if (!w->started)
        return;
    worker_kick(w);
    pthread_join(w->thread, NULL);
    w->started = false;
}

int storage_open(const struct storage_config *cfg, struct storage **out)
{
    int rc;
    if (!cfg->path || cfg->nshards == 0 || (unsigned)cfg->durability > STG_NONE)
        return -EINVAL;
    struct storage *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->cfg = *cfg;
    st->cfg.path = NULL; /* borrowed for the call only */
    if (!st->cfg.queue_depth)
        st->cfg.queue_depth = DEFAULT_QUEUE_DEPTH;

    rc = stg_db_open(cfg, &st->db);
    if (rc < 0)
        goto free_st;
    st->lanes = calloc(cfg->nshards, sizeof(*st->lanes));
    if (!st->lanes) {
        rc = -ENOMEM;
        goto close;
    }
    for (unsigned i = 0; i < cfg->nshards; i++)
        if ((rc = lane_init(&st->lanes[i], st->cfg.queue_depth)) < 0)
            goto close;
    size_t max_group = (size_t)cfg->nshards * (st->lanes[0].wq.mask + 1);
    st->grp = malloc(max_group * sizeof(*st->grp));
    st->grp_shard = malloc(max_group * sizeof(*st->grp_shard));
    st->grp_skip = malloc(max_group * sizeof(*st->grp_skip));
    st->group = stg_db_group_new(st->db);
    if (!st->grp || !st->grp_shard || !st->grp_skip || !st->group) {
        rc = -ENOMEM;
        goto close;
    }
    if ((rc = worker_start(st, &st->writer, NULL, 0, writer_main)) < 0)
        goto close;
    for (unsigned i = 0; i < cfg->nshards; i++)
        if ((rc = worker_start(st, &st->lanes[i].reader, &st->lanes[i], i, reader_main)) < 0)
            goto close;
    if (cfg->durability == STG_NONE)
        log_warn("storage_durability_none",
                 "msg=\"DURABILITY IS OFF: no write-ahead log; a crash loses every write not "
                 "yet flushed. For benchmarks only, never in production\"");
    log_info("storage_open", "path=%s durability=%s shards=%u queue_depth=%u", cfg->path,
             stg_durability_name(cfg->durability), cfg->nshards, st->cfg.queue_depth);
    *out = st;
    return 0;

close:
    storage_close(st);
    return rc;
free_st:
    free(st);
    return rc;
}

void storage_close(struct storage *st)
{
    if (!st)
        return;
    atomic_store(&st->stopping, true);
    worker_stop(&st->writer);
    for (unsigned i = 0; st->lanes && i < st->cfg.nshards; i++)
        worker_stop(&st->lanes[i].reader);
    for (unsigned i = 0; st->lanes && i < st->cfg.nshards; i++)
        lane_drain(&st->lanes[i]);
    free(st->lanes);
    free(st->grp);
    free(st->grp_shard);
    free(st->grp_skip);
    stg_db_group_free(st->group);
    stg_db_close(st->db);
    free(st);
}

/* ---- the shard side ---- */

int storage_write(struct storage *st, unsigned shard, struct stg_batch *b, uint64_t tag)
{
    if (shard >= st->cfg.nshards || !b)
        return -EINVAL;
    struct lane *l = &st->lanes[shard];
    int rc = spsc_push(&l->wq, &(struct wreq){.b = b, .tag = tag});
    if (rc < 0)
        return rc;
    spsc_publish(&l->wq);
    worker_wake(&st->writer);
    return 0;
}

int storage_read(struct storage *st, unsigned shard, const struct stg_read *q, uint64_t tag)
{
    if (shard >= st->cfg.nshards || (unsigned)q->cf >= STG_CF__COUNT || q->klen == 0 ||
        (q->kind != STG_GET && q->kind != STG_SCAN))
        return -EINVAL;
    size_t ulen = q->kind == STG_SCAN ? q->ulen : 0;
    if (q->kind == STG_SCAN) {
        if (ulen == 0)
            return -EINVAL;
        size_t m = q->klen < ulen ? q->klen : ulen;
        int c = memcmp(q->key, q->upper, m);
        if (c > 0 || (c == 0 && q->klen > ulen))
            return -EINVAL;
    }
    struct lane *l = &st->lanes[shard];
    struct rreq *r = malloc(sizeof(*r) + q->klen + ulen);
    if (!r)
        return -ENOMEM;
    *r = (struct rreq){.kind = q->kind,
                       .cf = q->cf,
                       .limit = q->limit,
                       .reverse = q->reverse,
                       .max_bytes = q->max_bytes,
                       .klen = q->klen,
                       .ulen = ulen};
    memcpy(r->bytes, q->key, q->klen);
    if (ulen)
        memcpy(r->bytes + q->klen, q->upper, ulen);
    int rc = spsc_push(&l->rq, &(struct rslot){.r = r, .tag = tag});
    if (rc < 0) {
        free(r);
        return rc;
    }
    spsc_publish(&l->rq);
    worker_wake(&l->reader);
    /* r now belongs to the reader thread, through the ring */
    // cppcheck-suppress memleak
    return 0;
}

static unsigned drain(struct spsc *r, struct stg_done *out, unsigned max)
{
    unsigned n = 0;
    struct stg_done *d;
    while (n < max && (d = spsc_front(r))) {
        out[n++] = *d;
        spsc_pop(r);
    }
    if (n)
        spsc_release(r);
    return n;
}

unsigned storage_poll(struct storage *st, unsigned shard, struct stg_done *out, unsigned max)
{
    if (shard >= st->cfg.nshards)
        return 0;
    struct lane *l = &st->lanes[shard];
    unsigned n = drain(&l->wdone, out, max);
    return n + drain(&l->rdone, out + n, max - n);
}

void stg_result_free(struct stg_result *r)
{
    free(r);
}

/* ---- blocking helpers ---- */

int storage_get_sync(struct storage *st, enum stg_cf cf, const void *key, size_t klen,
                     struct buf *val)
{
    if ((unsigned)cf >= STG_CF__COUNT || klen == 0)
        return -EINVAL;
    return stg_db_get(st->db, cf, key, klen, val);
}

int storage_write_sync(struct storage *st, const struct stg_batch *b)
{
    return stg_db_write_now(st->db, b);
}

int storage_checkpoint(struct storage *st, const char *dir)
{
    return stg_db_checkpoint(st->db, dir);
}

int storage_flush(struct storage *st)
{
    return stg_db_flush(st->db);
}

int storage_compact(struct storage *st, enum stg_cf cf)
{
    if ((unsigned)cf >= STG_CF__COUNT)
        return -EINVAL;
    return stg_db_compact(st->db, cf);
}

void storage_stats_get(struct storage *st, struct storage_stats *out)
{
    out->groups = atomic_load_explicit(&st->groups, memory_order_relaxed);
    out->submits = atomic_load_explicit(&st->submits, memory_order_relaxed);
    out->ops = atomic_load_explicit(&st->ops, memory_order_relaxed);
    out->ops_dropped = atomic_load_explicit(&st->ops_dropped, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&st->write_errors, memory_order_relaxed);
    out->fenced = atomic_load_explicit(&st->fenced, memory_order_relaxed);
    out->reads = atomic_load_explicit(&st->reads, memory_order_relaxed);
    out->read_errors = atomic_load_explicit(&st->read_errors, memory_order_relaxed);
    for (unsigned i = 0; i < STG_HIST_N; i++) {
        out->group_submits_hist[i] =
            atomic_load_explicit(&st->group_submits_hist[i], memory_order_relaxed);
        out->commit_us_hist[i] = atomic_load_explicit(&st->commit_us_hist[i], memory_order_relaxed);
    }
    out->commit_us_sum = atomic_load_explicit(&st->commit_us_sum, memory_order_relaxed);
}
