/*
 * Crash test. A child process appends through the storage layer the way the
 * chat layer does (one batch = the entry, the conversation's new last_seq and
 * the sender's dedup record) and reports every acknowledged (conversation,
 * seq, bytes) on a pipe. The parent kills it with SIGKILL at a random moment,
 * reopens the database and checks, over 20 rounds:
 *   - every acknowledged entry is present with the same bytes;
 *   - each conversation's seqs are exactly 1..last_seq, last_seq read lazily
 *     from its conversation record (no gap, nothing beyond it);
 *   - every entry has its dedup record and nothing has one without an entry:
 *     no batch was half written.
 */
#include "storage/storage.h"

#include "base/clock.h"
#include "base/err.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS   20
#define NCONV    6
#define WINDOW   48 /* submits in flight per shard */
#define MAX_BODY 400

/* Ids that are prefixes of each other share the log's key space closely. */
static const char *const convs[NCONV] = {"g:a", "g:ab", "g:abc", "d:u1:u2", "d:u1:u22", "g:z"};

static char dir[] = "/tmp/rp_test_storage_crash_XXXXXX";
static int failures;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static struct storage *open_db(unsigned nshards)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/db", dir);
    struct storage_config cfg = {.path = path,
                                 .durability = STG_SYNC,
                                 .nshards = nshards,
                                 .dedup_window_ms = 3600 * 1000,
                                 .queue_depth = 64};
    struct storage *st = NULL;
    int rc = storage_open(&cfg, &st);
    if (rc < 0) {
        fprintf(stderr, "storage_open: %s\n", err_str(rc));
        return NULL;
    }
    return st;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- the child ---- */

struct pending {
    unsigned conv;
    uint64_t seq;
    uint16_t len;
    uint8_t body[MAX_BODY];
};

static void dedup_key(struct buf *k, unsigned c, uint64_t seq)
{
    char cmid[32];
    int n = snprintf(cmid, sizeof(cmid), "m%llu", (unsigned long long)seq);
    stg_key_dedup(k, convs[c], strlen(convs[c]), "sender", 6, cmid, (size_t)n);
}

static struct stg_batch *append_batch(unsigned c, uint64_t seq, const struct pending *p)
{
    struct stg_batch *b = stg_batch_new();
    struct buf k;
    uint8_t meta[16];
    buf_init(&k);
    stg_key_log(&k, convs[c], strlen(convs[c]), seq);
    stg_batch_put(b, STG_CF_LOG, k.data, k.len, p->body, p->len);
    stg_key_conv(&k, convs[c], strlen(convs[c]));
    be64(meta, seq);
    be64(meta + 8, clock_wall_ms());
    stg_batch_put(b, STG_CF_CONV, k.data, k.len, meta, sizeof(meta));
    dedup_key(&k, c, seq);
    be64(meta, clock_wall_ms());
    be64(meta + 8, seq);
    stg_batch_put(b, STG_CF_DEDUP, k.data, k.len, meta, sizeof(meta));
    buf_deinit(&k);
    return b;
}

static void report(int fd, const struct pending *p)
{
    uint8_t rec[11 + MAX_BODY];
    rec[0] = (uint8_t)p->conv;
    be64(rec + 1, p->seq);
    rec[9] = (uint8_t)(p->len >> 8);
    rec[10] = (uint8_t)p->len;
    memcpy(rec + 11, p->body, p->len);
    /* One write under PIPE_BUF is atomic: a kill never leaves half a record. */
    if (write(fd, rec, 11 + (size_t)p->len) != (ssize_t)(11 + p->len))
        _exit(3);
}

static int child_main(int fd)
{
    srand((unsigned)getpid() ^ (unsigned)clock_mono_ns());
    struct storage *st = open_db(2);
    if (!st)
        return 2;
    uint64_t next[NCONV];
    struct buf v;
    buf_init(&v);
    for (unsigned c = 0; c < NCONV; c++) {
        /* Lazy recovery: last_seq comes from the conversation record. */
        struct buf k;
        buf_init(&k);
        stg_key_conv(&k, convs[c], strlen(convs[c]));
        int rc = storage_get_sync(st, STG_CF_CONV, k.data, k.len, &v);
        buf_deinit(&k);
        if (rc < 0 && rc != -ENOENT)
            return 2;
        next[c] = rc == 0 ? rd64(v.data) + 1 : 1;
    }
    static struct pending inflight[2][WINDOW];
    unsigned head[2] = {0}, count[2] = {0};
    for (;;) {
        for (unsigned s = 0; s < 2; s++) {
            while (count[s] < WINDOW) {
                /* Conversation c belongs to shard c % 2: one owner orders its seqs. */
                unsigned c = (unsigned)(rand() % (NCONV / 2)) * 2 + s;
                struct pending *p = &inflight[s][(head[s] + count[s]) % WINDOW];
                p->conv = c;
                p->seq = next[c];
                p->len = (uint16_t)(1 + rand() % MAX_BODY);
                for (unsigned i = 0; i < p->len; i++)
                    p->body[i] = (uint8_t)rand();
                struct stg_batch *b = append_batch(c, p->seq, p);
                if (storage_write(st, s, b, p->seq) < 0) {
                    stg_batch_free(b);
                    break;
                }
                next[c]++;
                count[s]++;
            }
            struct stg_done d[WINDOW];
            unsigned n = storage_poll(st, s, d, WINDOW);
            for (unsigned i = 0; i < n; i++) {
                struct pending *p = &inflight[s][head[s]];
                if (d[i].err < 0 || d[i].tag != p->seq)
                    return 4; /* never acknowledged: the parent sees no gap from it */
                report(fd, p);
                head[s] = (head[s] + 1) % WINDOW;
                count[s]--;
            }
        }
        nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
    }
}

/* ---- the parent ---- */

static struct {
    uint8_t **body; /* by seq; NULL when not acknowledged */
    uint16_t *len;
    uint64_t cap;
    uint64_t max_acked;
} acks[NCONV];

static void record_ack(const uint8_t *rec)
{
    unsigned c = rec[0];
    uint64_t seq = rd64(rec + 1);
    uint16_t len = (uint16_t)(rec[9] << 8 | rec[10]);
    if (c >= NCONV || seq == 0) {
        failures++;
        return;
    }
    if (seq >= acks[c].cap) {
        uint64_t cap = acks[c].cap ? acks[c].cap : 1024;
        while (cap <= seq)
            cap *= 2;
        acks[c].body = realloc(acks[c].body, cap * sizeof(uint8_t *));
        acks[c].len = realloc(acks[c].len, cap * sizeof(uint16_t));
        memset(acks[c].body + acks[c].cap, 0, (cap - acks[c].cap) * sizeof(uint8_t *));
        acks[c].cap = cap;
    }
    free(acks[c].body[seq]); /* a seq acknowledged again after a crash replaced it */
    acks[c].body[seq] = malloc(len);
    memcpy(acks[c].body[seq], rec + 11, len);
    acks[c].len[seq] = len;
    if (seq > acks[c].max_acked)
        acks[c].max_acked = seq;
}

/* Read acknowledgements until the deadline (or EOF), parsing whole records. */
static uint64_t read_acks(int fd, uint64_t deadline_ns, uint8_t *buf, size_t *have)
{
    uint64_t n = 0;
    for (;;) {
        uint64_t now = clock_mono_ns();
        int timeout = deadline_ns > now ? (int)((deadline_ns - now) / 1000000) : 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (deadline_ns != UINT64_MAX && poll(&pfd, 1, timeout) <= 0)
            return n;
        ssize_t r = read(fd, buf + *have, 65536 - *have);
        if (r <= 0)
            return n;
        *have += (size_t)r;
        size_t off = 0;
        while (*have - off >= 11) {
            size_t len = (size_t)(buf[off + 9] << 8 | buf[off + 10]);
            if (*have - off < 11 + len)
                break;
            record_ack(buf + off);
            off += 11 + len;
            n++;
        }
        memmove(buf, buf + off, *have - off);
        *have -= off;
    }
}

static void verify(void)
{
    struct storage *st = open_db(1);
    if (!st) {
        failures++;
        return;
    }
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    for (unsigned c = 0; c < NCONV; c++) {
        const char *id = convs[c];
        uint64_t last = 0;
        stg_key_conv(&k, id, strlen(id));
        int rc = storage_get_sync(st, STG_CF_CONV, k.data, k.len, &v);
        CHECK(rc == 0 || rc == -ENOENT);
        if (rc == 0 && v.len == 16)
            last = rd64(v.data);
        CHECK(last >= acks[c].max_acked);

        /* The whole log of the conversation, through the reader thread. */
        struct buf lo, hi;
        buf_init(&lo);
        buf_init(&hi);
        stg_key_log(&lo, id, strlen(id), 0);
        stg_key_prefix(&hi, id, strlen(id));
        stg_key_successor(&hi);
        struct stg_read q = {.kind = STG_SCAN,
                             .cf = STG_CF_LOG,
                             .key = lo.data,
                             .klen = lo.len,
                             .upper = hi.data,
                             .ulen = hi.len,
                             .limit = UINT32_MAX};
        CHECK(storage_read(st, 0, &q, c) == 0);
        struct stg_done d = {.err = -ETIMEDOUT};
        for (int i = 0; i < 100000 && storage_poll(st, 0, &d, 1) == 0; i++)
            nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
        CHECK(d.err == 0 && d.res);
        if (d.res) {
            CHECK(d.res->n == last && !d.res->more);
            for (uint32_t i = 0; i < d.res->n; i++) {
                struct stg_view cv;
                uint64_t seq;
                CHECK(stg_key_split_log(d.res->kv[i].key, d.res->kv[i].klen, &cv, &seq) == 0);
                if (seq != i + 1) {
                    fprintf(stderr, "conv %s: seq %llu at position %u\n", id,
                            (unsigned long long)seq, i);
                    failures++;
                    break;
                }
                if (seq < acks[c].cap && acks[c].body[seq]) {
                    bool same = d.res->kv[i].vlen == acks[c].len[seq] &&
                                memcmp(d.res->kv[i].val, acks[c].body[seq], acks[c].len[seq]) == 0;
                    if (!same) {
                        fprintf(stderr, "conv %s seq %llu: bytes differ\n", id,
                                (unsigned long long)seq);
                        failures++;
                    }
                }
            }
        }
        stg_result_free(d.res);
        buf_deinit(&lo);
        buf_deinit(&hi);

        /* Dedup records exist exactly for 1..last. */
        for (uint64_t seq = 1; seq <= last + 1; seq++) {
            dedup_key(&k, c, seq);
            rc = storage_get_sync(st, STG_CF_DEDUP, k.data, k.len, &v);
            bool ok =
                seq <= last ? rc == 0 && v.len == 16 && rd64(v.data + 8) == seq : rc == -ENOENT;
            if (!ok) {
                fprintf(stderr, "conv %s seq %llu: dedup record rc=%d\n", id,
                        (unsigned long long)seq, rc);
                failures++;
                break;
            }
        }
    }
    buf_deinit(&k);
    buf_deinit(&v);
    storage_close(st);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    srand((unsigned)time(NULL));
    static uint8_t pipebuf[65536];
    uint64_t total = 0;
    for (int round = 0; round < ROUNDS && failures == 0; round++) {
        int fds[2];
        if (pipe(fds) < 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            _exit(child_main(fds[1]));
        }
        close(fds[1]);
        size_t have = 0;
        uint64_t delay_ms = 100 + (uint64_t)(rand() % 500);
        uint64_t n = read_acks(fds[0], clock_mono_ns() + delay_ms * 1000000, pipebuf, &have);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        /* What the child wrote before it died was acknowledged too. */
        n += read_acks(fds[0], UINT64_MAX, pipebuf, &have);
        close(fds[0]);
        CHECK(have == 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "round %d: child exited on its own (status %d)\n", round, status);
            failures++;
        }
        total += n;
        fprintf(stderr, "round %d: killed after %llu ms, %llu acknowledged\n", round,
                (unsigned long long)delay_ms, (unsigned long long)n);
        verify();
    }
    CHECK(total > 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "test_storage_crash: %d failures\n", failures);
        return 1;
    }
    printf("test_storage_crash: ok, %llu acknowledged appends checked\n",
           (unsigned long long)total);
    return 0;
}
