/*
 * stg_db groups: a group writes its ops sorted by key and only the last op on
 * each key, and the result must be exactly that of applying every op in
 * queue order. Checked against a model over many random groups with a small
 * key space (so that keys repeat within and across batches), with puts and
 * deletes in two families, on top of what earlier groups left, and again
 * after a reopen replays the WAL; plus the count of ops left out, log
 * entries queued out of order, and the same through the storage queues
 * (ops_dropped in the stats).
 */
#include "storage/db.h"

#include "base/err.h"
#include "storage/storage.h"

#include <errno.h>
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

static char root[] = "/tmp/rp_test_group_XXXXXX";

#define NKEYS  12
#define NFAMS  2
#define ROUNDS 300

static const enum stg_cf fams[NFAMS] = {STG_CF_CONV, STG_CF_MEMBER};

/* The model: the value of every (family, key), or absent. */
struct model {
    bool present[NFAMS][NKEYS];
    char val[NFAMS][NKEYS][32];
};

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Keys of different lengths that share prefixes: "k", "k1", "k11", ... */
static size_t key_of(unsigned i, char *out)
{
    out[0] = 'k';
    size_t n = 1;
    for (unsigned j = 0; j < i % 4; j++)
        out[n++] = (char)('0' + i / 4);
    out[n++] = (char)('a' + i);
    return n;
}

static void check_model(struct stg_db *db, const struct model *m)
{
    struct buf v;
    buf_init(&v);
    for (unsigned f = 0; f < NFAMS; f++)
        for (unsigned i = 0; i < NKEYS; i++) {
            char k[8];
            size_t kl = key_of(i, k);
            int rc = stg_db_get(db, fams[f], k, kl, &v);
            if (m->present[f][i]) {
                CHECK(rc == 0 && v.len == strlen(m->val[f][i]) &&
                      memcmp(v.data, m->val[f][i], v.len) == 0);
            } else {
                CHECK(rc == -ENOENT);
            }
        }
    buf_deinit(&v);
}

static struct model m;

static void test_random_groups(struct stg_db *db)
{
    struct stg_db_group *g = stg_db_group_new(db);
    struct stg_batch *bs[6];
    size_t total_dropped = 0;
    CHECK(g != NULL);
    for (int r = 0; r < ROUNDS; r++) {
        unsigned nb = 1 + rnd(5);
        /* last op of each (family, key) in this group, to predict the drop count */
        bool touched[NFAMS][NKEYS] = {{false}};
        size_t ops = 0, distinct = 0;
        for (unsigned b = 0; b < nb; b++) {
            bs[b] = stg_batch_new();
            unsigned nops = 1 + rnd(20);
            for (unsigned o = 0; o < nops; o++) {
                unsigned f = rnd(NFAMS), i = rnd(NKEYS);
                char k[8];
                size_t kl = key_of(i, k);
                if (rnd(4) == 0) {
                    CHECK(stg_batch_del(bs[b], fams[f], k, kl) == 0);
                    m.present[f][i] = false;
                } else {
                    snprintf(m.val[f][i], sizeof(m.val[f][i]), "r%d.b%u.o%u", r, b, o);
                    CHECK(stg_batch_put(bs[b], fams[f], k, kl, m.val[f][i], strlen(m.val[f][i])) ==
                          0);
                    m.present[f][i] = true;
                }
                ops++;
                if (!touched[f][i])
                    distinct++;
                touched[f][i] = true;
            }
            CHECK(stg_db_group_add(g, bs[b]) == 0);
        }
        CHECK(stg_db_group_commit(g) == 0);
        CHECK(stg_db_group_dropped(g) == ops - distinct);
        total_dropped += stg_db_group_dropped(g);
        for (unsigned b = 0; b < nb; b++)
            stg_batch_free(bs[b]);
        check_model(db, &m);
    }
    /* With 12 keys and up to 100 ops a group, most groups repeat keys. */
    CHECK(total_dropped > ROUNDS);
    stg_db_group_free(g);
}

/* Log entries queued out of key order land in key order, every one of them. */
static void test_unsorted_log(struct stg_db *db)
{
    struct stg_db_group *g = stg_db_group_new(db);
    struct stg_batch *b1 = stg_batch_new(), *b2 = stg_batch_new();
    struct buf k;
    buf_init(&k);
    for (uint64_t s = 40; s >= 1; s--) {
        const char *conv = s % 2 ? "odd" : "even";
        CHECK(stg_key_log(&k, conv, strlen(conv), s) == 0);
        CHECK(stg_batch_put(s > 20 ? b1 : b2, STG_CF_LOG, k.data, k.len, &s, sizeof(s)) == 0);
    }
    CHECK(stg_db_group_add(g, b1) == 0 && stg_db_group_add(g, b2) == 0);
    CHECK(stg_db_group_commit(g) == 0);
    CHECK(stg_db_group_dropped(g) == 0);
    const char *convs[2] = {"even", "odd"};
    for (int c = 0; c < 2; c++) {
        struct buf lo, hi;
        buf_init(&lo);
        buf_init(&hi);
        stg_key_prefix(&lo, convs[c], strlen(convs[c]));
        stg_key_prefix(&hi, convs[c], strlen(convs[c]));
        CHECK(stg_key_successor(&hi) == 0);
        struct stg_result *res = NULL;
        CHECK(stg_db_scan(db, STG_CF_LOG, lo.data, lo.len, hi.data, hi.len, 100, 0, false, &res) ==
              0);
        CHECK(res && res->n == 20);
        for (uint32_t i = 0; res && i < res->n; i++) {
            uint64_t seq = 0, v = 0;
            struct stg_view cv;
            CHECK(stg_key_split_log(res->kv[i].key, res->kv[i].klen, &cv, &seq) == 0);
            CHECK(seq == 2 * i + 1 + (c == 0));
            CHECK(res->kv[i].vlen == 8);
            memcpy(&v, res->kv[i].val, 8);
            CHECK(v == seq);
        }
        stg_result_free(res);
        buf_deinit(&lo);
        buf_deinit(&hi);
    }
    buf_deinit(&k);
    stg_batch_free(b1);
    stg_batch_free(b2);
    stg_db_group_free(g);
}

/* Through the queues: one group of many submits rewriting one key, counted in the stats. */
static void test_through_storage(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/queued", root);
    struct storage_config cfg = {.path = path, .durability = STG_SYNC, .nshards = 1};
    struct storage *st = NULL;
    CHECK(storage_open(&cfg, &st) == 0);
    if (!st)
        return;
    /* Every submit sets "meta" and adds one member; the last value must win. */
    const unsigned n = 200;
    for (unsigned i = 0; i < n; i++) {
        struct stg_batch *b = stg_batch_new();
        char v[16], mk[16];
        int vl = snprintf(v, sizeof(v), "v%u", i);
        int ml = snprintf(mk, sizeof(mk), "m%u", i);
        CHECK(stg_batch_put(b, STG_CF_CONV, "meta", 4, v, (size_t)vl) == 0);
        CHECK(stg_batch_put(b, STG_CF_MEMBER, mk, (size_t)ml, v, (size_t)vl) == 0);
        CHECK(storage_write(st, 0, b, i) == 0);
    }
    unsigned got = 0;
    struct stg_done d[64];
    for (int spins = 0; got < n && spins < 100000; spins++) {
        unsigned k = storage_poll(st, 0, d, 64);
        for (unsigned i = 0; i < k; i++) {
            CHECK(d[i].tag == got && d[i].err == 0);
            got++;
        }
        if (!k)
            nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
    CHECK(got == n);
    struct buf v;
    buf_init(&v);
    CHECK(storage_get_sync(st, STG_CF_CONV, "meta", 4, &v) == 0 && v.len == 4 &&
          memcmp(v.data, "v199", 4) == 0);
    for (unsigned i = 0; i < n; i++) {
        char mk[16];
        int ml = snprintf(mk, sizeof(mk), "m%u", i);
        CHECK(storage_get_sync(st, STG_CF_MEMBER, mk, (size_t)ml, &v) == 0);
    }
    buf_deinit(&v);
    struct storage_stats ss;
    storage_stats_get(st, &ss);
    CHECK(ss.ops == 2 * n);
    /* Each group writes "meta" once and drops its other puts of it: n - groups in all. */
    CHECK(ss.ops_dropped == n - ss.groups);
    storage_close(st);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof(path), "%s/db", root);
    struct storage_config cfg = {.path = path, .durability = STG_WAL, .nshards = 1};
    struct stg_db *db = NULL;
    int rc = stg_db_open(&cfg, &db);
    if (rc < 0) {
        fprintf(stderr, "stg_db_open: %s\n", err_str(rc));
        return 1;
    }
    test_random_groups(db);
    test_unsorted_log(db);
    stg_db_close(db);
    /* What the groups left must survive a reopen (the WAL replays the written ops). */
    CHECK(stg_db_open(&cfg, &db) == 0);
    if (db)
        check_model(db, &m);
    stg_db_close(db);
    test_through_storage();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
