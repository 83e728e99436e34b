/*
 * storage_bench: durable appends per second and commit latency of the storage
 * layer, against the group size the writer can form.
 *
 * Each shard is a thread that behaves like a shard loop: it keeps `window`
 * submits in flight, each holding `batch` appends, sleeps on a futex until
 * storage notifies it, and measures each submit's commit latency (submit to
 * completion). An append writes what the chat layer writes for a send: the
 * log entry (200 bytes), the sender's dedup record (conv | user | cmid ->
 * ts, seq), and the conversation's metadata record (last_seq, last_ts), the
 * latter once per conversation per submit, as the chat layer stages it. The
 * appends of a shard go round robin over `convs` conversations. The writer
 * groups whatever is queued into one rocksdb_write, so the window bounds the
 * group size; the average measured group size is printed next to the
 * throughput, with the puts per append submitted and written (a group writes
 * only the last of several puts of one key) and the process CPU time per
 * append (user + system, all threads: a figure that the machine's other load
 * disturbs far less than the throughput).
 *
 *   storage_bench [--dir D] [--seconds S] [--durability sync|wal|none]
 *                 [--shards N] [--window W] [--batch B] [--convs C] [--rate R]
 * --rate R paces the shards to R appends/s in all (open loop: latency counts
 * from when a submit was due); without it each shard submits as fast as its
 * window allows (closed loop).
 * Without --durability/--shards/--window it runs the whole matrix
 * (sync, wal) x (1, 2 shards) x window (1, 4, 16, 64, 256) with batch 1.
 *
 *   storage_bench --raw [--dir D] [--seconds S] [--durability D] [--batch B]
 * measures the disk and RocksDB alone instead, as the reference for the
 * figures above: plain puts of 200-byte values, B per write, one thread,
 * RocksDB's default options (storage_raw_puts()).
 */
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "storage/storage.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ENTRY_BYTES 200
#define MAX_SHARDS  8
#define MAX_SAMPLES (1u << 22)
#define MAX_CONVS   4096

static unsigned nconvs = 64;
static double rate; /* appends/s over all shards; 0: unpaced */

struct shard_ctx {
    _Alignas(64) _Atomic uint32_t futex;
    struct storage *st;
    unsigned id;
    unsigned window, batch;
    uint64_t deadline_ns;
    uint64_t interval_ns; /* between submits when paced; 0: as fast as the window allows */
    uint64_t appends, submits, errors;
    uint64_t *lat_ns; /* one sample per completed submit, up to MAX_SAMPLES */
    size_t nlat;
    pthread_t thread;
};

static struct shard_ctx shards[MAX_SHARDS];

static void on_notify(void *arg, unsigned shard)
{
    struct shard_ctx *s = &shards[shard];
    atomic_fetch_add_explicit(&s->futex, 1, memory_order_release);
    syscall(SYS_futex, &s->futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int conv_name(char *out, size_t size, unsigned shard, uint64_t conv)
{
    return snprintf(out, size, "g:bench-%u-%llu", shard, (unsigned long long)conv);
}

/* Appends seq .. seq + batch - 1 of the shard, and the metadata of every conversation touched. */
static struct stg_batch *make_batch(unsigned shard, unsigned batch, uint64_t *seq)
{
    static _Thread_local uint8_t body[ENTRY_BYTES];
    static _Thread_local uint64_t touched[MAX_CONVS]; /* conv -> last seq + 1 in this batch */
    struct stg_batch *b = stg_batch_new();
    struct buf k, v;
    char conv[32], user[16], cmid[24];
    buf_init(&k);
    buf_init(&v);
    uint64_t now = clock_wall_ms();
    uint64_t first = *seq;
    for (unsigned i = 0; i < batch; i++) {
        uint64_t s = (*seq)++;
        uint64_t cv = s % nconvs, cseq = s / nconvs + 1;
        int n = conv_name(conv, sizeof(conv), shard, cv);
        int un = snprintf(user, sizeof(user), "u%llu", (unsigned long long)(s * 7 % 1000));
        int cn = snprintf(cmid, sizeof(cmid), "m%u-%016llx", shard, (unsigned long long)s);
        for (unsigned j = 0; j < ENTRY_BYTES; j += 8)
            memcpy(body + j, &(uint64_t){s * 0x9e3779b97f4a7c15ull + j}, 8);
        stg_key_log(&k, conv, (size_t)n, cseq);
        stg_batch_put(b, STG_CF_LOG, k.data, k.len, body, ENTRY_BYTES);
        stg_key_dedup(&k, conv, (size_t)n, user, (size_t)un, cmid, (size_t)cn);
        buf_reset(&v);
        buf_put_be64(&v, now);
        buf_put_be64(&v, cseq);
        stg_batch_put(b, STG_CF_DEDUP, k.data, k.len, v.data, v.len);
        touched[cv] = cseq;
    }
    /* The chat layer writes a conversation's metadata once per flush, after its entries. */
    uint64_t ntouched = batch < nconvs ? batch : nconvs;
    for (uint64_t i = 0; i < ntouched; i++) {
        uint64_t cv = (first + i) % nconvs;
        int n = conv_name(conv, sizeof(conv), shard, cv);
        stg_key_conv(&k, conv, (size_t)n);
        buf_reset(&v);
        buf_put_be64(&v, touched[cv]);
        buf_put_be64(&v, now);
        stg_batch_put(b, STG_CF_CONV, k.data, k.len, v.data, v.len);
    }
    buf_deinit(&k);
    buf_deinit(&v);
    return b;
}

/*
 * With a rate, submit k is due at start + k * interval and its latency counts
 * from when it was due, so time spent waiting for room in the window (the
 * storage falling behind) is part of the latency, not hidden by it.
 */
static void *shard_main(void *arg)
{
    struct shard_ctx *s = arg;
    uint64_t *sent_at = calloc(s->window, sizeof(uint64_t));
    uint64_t seq = 0, next_tag = 0, inflight = 0;
    uint64_t start = clock_mono_ns();
    struct stg_done done[256];
    while (clock_mono_ns() < s->deadline_ns || inflight > 0) {
        uint64_t now = clock_mono_ns(), due = now;
        while (inflight < s->window && now < s->deadline_ns) {
            if (s->interval_ns) {
                due = start + next_tag * s->interval_ns;
                if (due > now)
                    break;
            }
            struct stg_batch *b = make_batch(s->id, s->batch, &seq);
            uint64_t tag = next_tag;
            sent_at[tag % s->window] = s->interval_ns ? due : now;
            if (storage_write(s->st, s->id, b, tag) < 0) {
                stg_batch_free(b);
                break;
            }
            next_tag++;
            inflight++;
        }
        uint32_t seen = atomic_load_explicit(&s->futex, memory_order_acquire);
        unsigned n = storage_poll(s->st, s->id, done, 256);
        if (n == 0) {
            long wait = 2000000;
            if (s->interval_ns && inflight < s->window && due > now && (long)(due - now) < wait)
                wait = (long)(due - now);
            struct timespec ts = {.tv_nsec = wait};
            syscall(SYS_futex, &s->futex, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
            continue;
        }
        now = clock_mono_ns();
        for (unsigned i = 0; i < n; i++) {
            inflight--;
            if (done[i].err < 0) {
                s->errors++;
                continue;
            }
            s->submits++;
            s->appends += s->batch;
            if (s->nlat < MAX_SAMPLES)
                s->lat_ns[s->nlat++] = now - sent_at[done[i].tag % s->window];
        }
    }
    free(sent_at);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run(const char *dir, enum stg_durability dur, unsigned nshards, unsigned window,
               unsigned batch, double seconds)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-s%u-w%u-b%u", dir, stg_durability_name(dur), nshards,
             window, batch);
    struct storage_config cfg = {.path = path,
                                 .durability = dur,
                                 .nshards = nshards,
                                 .queue_depth = window < 64 ? 64 : window,
                                 .notify = on_notify};
    struct storage *st;
    int rc = storage_open(&cfg, &st);
    if (rc < 0) {
        fprintf(stderr, "storage_open %s: %s\n", path, err_str(rc));
        return 1;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = clock_mono_ns();
    for (unsigned i = 0; i < nshards; i++) {
        shards[i] = (struct shard_ctx){.st = st,
                                       .id = i,
                                       .window = window,
                                       .batch = batch,
                                       .deadline_ns = start + (uint64_t)(seconds * 1e9),
                                       .interval_ns =
                                           rate > 0 ? (uint64_t)(1e9 * batch * nshards / rate) : 0,
                                       .lat_ns = malloc(MAX_SAMPLES * sizeof(uint64_t))};
        pthread_create(&shards[i].thread, NULL, shard_main, &shards[i]);
    }
    uint64_t appends = 0, errors = 0, submits = 0;
    size_t nlat = 0;
    for (unsigned i = 0; i < nshards; i++) {
        pthread_join(shards[i].thread, NULL);
        appends += shards[i].appends;
        submits += shards[i].submits;
        errors += shards[i].errors;
        nlat += shards[i].nlat;
    }
    double elapsed = (double)(clock_mono_ns() - start) / 1e9;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_us = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                             ru0.ru_stime.tv_sec) *
                        1e6 +
                    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                             ru0.ru_stime.tv_usec);
    uint64_t *all = malloc((nlat + 1) * sizeof(uint64_t));
    size_t off = 0;
    for (unsigned i = 0; i < nshards; i++) {
        memcpy(all + off, shards[i].lat_ns, shards[i].nlat * sizeof(uint64_t));
        off += shards[i].nlat;
        free(shards[i].lat_ns);
    }
    qsort(all, nlat, sizeof(uint64_t), cmp_u64);
    struct storage_stats ss;
    storage_stats_get(st, &ss);
    storage_close(st);
    double p50 = nlat ? (double)all[nlat / 2] / 1e6 : 0;
    double p99 = nlat ? (double)all[nlat * 99 / 100] / 1e6 : 0;
    double per = ss.submits ? (double)ss.submits * batch : 1;
    printf("%-4s shards=%u window=%-3u batch=%-3u convs=%u rate=%.0f appends/s=%9.0f "
           "group_submits=%6.1f "
           "group_appends=%7.1f puts/append=%.2f written/append=%.2f cpu_us/append=%.2f "
           "p50_ms=%6.3f p99_ms=%6.3f errors=%llu\n",
           stg_durability_name(dur), nshards, window, batch, nconvs, rate,
           (double)appends / elapsed, ss.groups ? (double)ss.submits / (double)ss.groups : 0,
           ss.groups ? (double)ss.submits * batch / (double)ss.groups : 0, (double)ss.ops / per,
           (double)(ss.ops - ss.ops_dropped) / per, appends ? cpu_us / (double)appends : 0, p50,
           p99, (unsigned long long)errors);
    fflush(stdout);
    free(all);
    (void)submits;
    return 0;
}

/* The reference: RocksDB alone, in a database of its own under dir (kept
 * between runs of the same shape, as run() keeps its own). */
static int run_raw(const char *dir, enum stg_durability dur, unsigned batch, double seconds)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/raw-%s-b%u", dir, stg_durability_name(dur), batch);
    double puts_per_s;
    int rc = storage_raw_puts(path, dur, batch, seconds, &puts_per_s);
    if (rc < 0) {
        fprintf(stderr, "storage_raw_puts %s: %s\n", path, err_str(rc));
        return 1;
    }
    printf("raw %-4s batch=%-3u puts/s=%9.0f\n", stg_durability_name(dur), batch, puts_per_s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = "/tmp/rp_storage_bench";
    double seconds = 3;
    int dur = -1;
    unsigned nshards = 0, window = 0, batch = 1;
    bool raw = false;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--raw") == 0) { /* the only flag: the rest are option-value pairs */
            raw = true;
            memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv)); /* and NULL */
            argc--;
            i--;
        }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "--durability") == 0) {
            enum stg_durability d;
            if (stg_durability_parse(argv[i + 1], &d) < 0)
                goto usage;
            dur = (int)d;
        } else if (strcmp(argv[i], "--shards") == 0) {
            nshards = (unsigned)atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--window") == 0) {
            window = (unsigned)atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = (unsigned)atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--rate") == 0) {
            rate = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "--convs") == 0) {
            nconvs = (unsigned)atoi(argv[i + 1]);
        } else {
            goto usage;
        }
    }
    if (nshards > MAX_SHARDS || batch == 0 || nconvs == 0 || nconvs > MAX_CONVS || (argc - 1) % 2)
        goto usage;
    log_set_level(LOG_WARN);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    if (raw)
        return run_raw(dir, dur < 0 ? STG_SYNC : (enum stg_durability)dur, batch, seconds);
    if (dur >= 0 && nshards && window)
        return run(dir, (enum stg_durability)dur, nshards, window, batch, seconds);

    static const enum stg_durability durs[] = {STG_SYNC, STG_WAL};
    static const unsigned windows[] = {1, 4, 16, 64, 256};
    for (unsigned d = 0; d < 2; d++) {
        if (dur >= 0 && (enum stg_durability)dur != durs[d])
            continue;
        for (unsigned s = 1; s <= 2; s++) {
            if (nshards && s != nshards)
                continue;
            for (unsigned w = 0; w < 5; w++)
                if (!window || windows[w] == window)
                    if (run(dir, durs[d], s, windows[w], batch, seconds))
                        return 1;
        }
    }
    return 0;
usage:
    fprintf(stderr,
            "usage: %s [--dir D] [--seconds S] [--durability sync|wal|none] "
            "[--shards N] [--window W] [--batch B] [--convs C] [--rate R]\n"
            "       %s --raw [--dir D] [--seconds S] [--durability sync|wal|none] [--batch B]\n",
            argv[0], argv[0]);
    return 2;
}
