/*
 * Key codec: byte order of encoded keys equals the intended tuple order
 * (property test over random ids, many of them prefixes of each other, and
 * random seqs around byte boundaries), prefix scans never leak into another
 * id, round trips through stg_key_split, and every malformed input is refused.
 */
#include "storage/key.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define N 3000

struct tuple {
    char conv[STG_ID_MAX];
    size_t convlen;
    uint64_t seq;
    unsigned char key[1 + STG_ID_MAX + 8];
    size_t klen;
};

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Ids drawn from a tiny alphabet and from prefixes of a few base ids, so that
 * equal lengths, shared prefixes and prefix pairs ("ab", "abc") are common. */
static size_t random_id(char *out)
{
    size_t len = 1 + rnd() % (rnd() % 4 == 0 ? STG_ID_MAX : 6);
    if (rnd() % 2) {
        for (size_t i = 0; i < len; i++)
            out[i] = "abc"[i % 3];
        return len;
    }
    for (size_t i = 0; i < len; i++)
        out[i] = (char)("ab\x00\xff"[rnd() % 4]);
    return len;
}

static uint64_t random_seq(void)
{
    static const uint64_t edges[] = {0,          1,
                                     2,          255,
                                     256,        257,
                                     65535,      65536,
                                     1ull << 32, (1ull << 32) - 1,
                                     UINT64_MAX, UINT64_MAX - 1};
    if (rnd() % 3 == 0)
        return edges[rnd() % (sizeof(edges) / sizeof(edges[0]))];
    return rnd() >> (rnd() % 64);
}

static int cmp_bytes(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

static int by_key(const void *a, const void *b)
{
    const struct tuple *x = a, *y = b;
    return cmp_bytes(x->key, x->klen, y->key, y->klen);
}

/* The intended order: (conversation as (length, bytes), seq). */
static int by_tuple(const struct tuple *x, const struct tuple *y)
{
    if (x->convlen != y->convlen)
        return x->convlen < y->convlen ? -1 : 1;
    int c = memcmp(x->conv, y->conv, x->convlen);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void test_log_order(void)
{
    static struct tuple t[N];
    struct buf k;
    buf_init(&k);
    for (int i = 0; i < N; i++) {
        t[i].convlen = random_id(t[i].conv);
        t[i].seq = random_seq();
        CHECK(stg_key_log(&k, t[i].conv, t[i].convlen, t[i].seq) == 0);
        CHECK(k.len == 1 + t[i].convlen + 8);
        memcpy(t[i].key, k.data, k.len);
        t[i].klen = k.len;

        struct stg_view v;
        uint64_t seq;
        CHECK(stg_key_split_log(k.data, k.len, &v, &seq) == 0);
        CHECK(v.len == t[i].convlen && memcmp(v.p, t[i].conv, v.len) == 0 && seq == t[i].seq);
        CHECK(stg_key_log_prefix_len(k.data, k.len) == 1 + t[i].convlen);
    }
    qsort(t, N, sizeof(t[0]), by_key);
    for (int i = 1; i < N; i++)
        CHECK(by_tuple(&t[i - 1], &t[i]) <= 0);

    /* A prefix scan [prefix, successor(prefix)) holds exactly one conversation's keys. */
    for (int probe = 0; probe < 200; probe++) {
        const struct tuple *p = &t[rnd() % N];
        struct buf lo, hi;
        buf_init(&lo);
        buf_init(&hi);
        CHECK(stg_key_prefix(&lo, p->conv, p->convlen) == 0);
        CHECK(stg_key_prefix(&hi, p->conv, p->convlen) == 0);
        CHECK(stg_key_successor(&hi) == 0);
        for (int i = 0; i < N; i++) {
            bool in = cmp_bytes(t[i].key, t[i].klen, lo.data, lo.len) >= 0 &&
                      cmp_bytes(t[i].key, t[i].klen, hi.data, hi.len) < 0;
            bool same = t[i].convlen == p->convlen && memcmp(t[i].conv, p->conv, p->convlen) == 0;
            CHECK(in == same);
        }
        buf_deinit(&lo);
        buf_deinit(&hi);
    }
    buf_deinit(&k);
}

/* Three-part keys: (user, device, conv) order and per-user contiguity. */
static void test_cursor_order(void)
{
    enum { M = 1500 };
    static struct {
        char p[3][STG_ID_MAX];
        size_t l[3];
        unsigned char key[3 * (1 + STG_ID_MAX)];
        size_t klen;
    } c[M];
    struct buf k;
    buf_init(&k);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < 3; j++)
            c[i].l[j] = random_id(c[i].p[j]);
        CHECK(stg_key_cursor(&k, c[i].p[0], c[i].l[0], c[i].p[1], c[i].l[1], c[i].p[2],
                             c[i].l[2]) == 0);
        memcpy(c[i].key, k.data, k.len);
        c[i].klen = k.len;
        struct stg_view v[3];
        CHECK(stg_key_split(k.data, k.len, v, 3, NULL) == 0);
        for (int j = 0; j < 3; j++)
            CHECK(v[j].len == c[i].l[j] && memcmp(v[j].p, c[i].p[j], v[j].len) == 0);
    }
    for (int i = 0; i < M; i++) {
        int a = (int)(rnd() % M), b = (int)(rnd() % M);
        int kc = cmp_bytes(c[a].key, c[a].klen, c[b].key, c[b].klen);
        int tc = 0;
        for (int j = 0; j < 3 && tc == 0; j++) {
            if (c[a].l[j] != c[b].l[j])
                tc = c[a].l[j] < c[b].l[j] ? -1 : 1;
            else
                tc = memcmp(c[a].p[j], c[b].p[j], c[a].l[j]);
        }
        CHECK((kc < 0) == (tc < 0) && (kc == 0) == (tc == 0));
    }
    buf_deinit(&k);
}

static void test_invalid(void)
{
    char big[STG_ID_MAX + 1];
    memset(big, 'x', sizeof(big));
    struct buf k;
    buf_init(&k);
    CHECK(stg_key_log(&k, "", 0, 1) == -EINVAL);
    CHECK(stg_key_log(&k, big, STG_ID_MAX + 1, 1) == -EINVAL);
    CHECK(stg_key_log(&k, big, STG_ID_MAX, 1) == 0);
    CHECK(stg_key_member(&k, "c", 1, "", 0) == -EINVAL);
    CHECK(stg_key_dedup(&k, "c", 1, "u", 1, big, STG_ID_MAX + 1) == -EINVAL);
    CHECK(stg_key_friend(&k, "u", 1, "p", 1) == 0 && k.len == 4);

    /* Every truncation of a valid key is refused, and so is a trailing byte. */
    CHECK(stg_key_cursor(&k, "user", 4, "dev", 3, "conv", 4) == 0);
    struct stg_view v[3];
    for (size_t n = 0; n < k.len; n++)
        CHECK(stg_key_split(k.data, n, v, 3, NULL) == -EINVAL);
    CHECK(stg_key_split(k.data, k.len, v, 3, NULL) == 0);
    CHECK(stg_key_split(k.data, k.len, v, 2, NULL) == -EINVAL);

    /* A dedup key is the sender hash, then conv | user | cmid; one sender's keys share the hash. */
    struct buf k2;
    buf_init(&k2);
    CHECK(stg_key_dedup(&k, "conv", 4, "user", 4, "cmid", 4) == 0);
    CHECK(k.len == STG_DEDUP_HASH_BYTES + 15);
    CHECK(stg_key_split(k.data + STG_DEDUP_HASH_BYTES, k.len - STG_DEDUP_HASH_BYTES, v, 3, NULL) ==
          0);
    CHECK(v[0].len == 4 && memcmp(v[0].p, "conv", 4) == 0 && v[2].len == 4 &&
          memcmp(v[2].p, "cmid", 4) == 0);
    CHECK(stg_key_dedup(&k2, "conv", 4, "user", 4, "another-cmid", 12) == 0);
    CHECK(memcmp(k.data, k2.data, STG_DEDUP_HASH_BYTES) == 0);
    CHECK(stg_key_dedup(&k2, "conv", 4, "usex", 4, "cmid", 4) == 0);
    CHECK(memcmp(k.data, k2.data, STG_DEDUP_HASH_BYTES) != 0);
    /* ("ab", "c") and ("a", "bc") are different senders, with different hashes */
    CHECK(stg_key_dedup(&k, "ab", 2, "c", 1, "m", 1) == 0);
    CHECK(stg_key_dedup(&k2, "a", 1, "bc", 2, "m", 1) == 0);
    CHECK(k.len == k2.len && memcmp(k.data, k2.data, k.len) != 0);
    buf_deinit(&k2);
    CHECK(stg_key_log(&k, "conv", 4, 7) == 0);
    uint64_t seq;
    for (size_t n = 0; n < k.len; n++)
        CHECK(stg_key_split_log(k.data, n, v, &seq) == -EINVAL);
    buf_put_u8(&k, 0);
    CHECK(stg_key_split_log(k.data, k.len, v, &seq) == -EINVAL);
    CHECK(stg_key_log_prefix_len("\x05"
                                 "ab",
                                 3) == 0);
    CHECK(stg_key_log_prefix_len("\x00", 1) == 0);

    buf_reset(&k);
    buf_append(&k, "\x01\xff\xff", 3);
    CHECK(stg_key_successor(&k) == 0 && k.len == 1 && k.data[0] == 2);
    buf_reset(&k);
    buf_append(&k, "\xff\xff", 2);
    CHECK(stg_key_successor(&k) == -ERANGE);
    CHECK(stg_cf_name(STG_CF_LOG) && strcmp(stg_cf_name(STG_CF_DEDUP), "dedup") == 0);
    CHECK(stg_cf_name(STG_CF__COUNT) == NULL);
    buf_deinit(&k);
}

/* Pending friend sides: round trip, their own prefix per user, and never
 * inside the range of a user's friendship keys (a scan of one never returns
 * the other). */
static void test_friend_pending(void)
{
    struct buf k, pre, lo, hi;
    buf_init(&k);
    buf_init(&pre);
    buf_init(&lo);
    buf_init(&hi);
    CHECK(stg_key_friend_pending(&k, "alice", 5, "bob", 3, 0x0102030405060708ull) == 0);
    struct stg_view u, p;
    uint64_t ts = 0;
    CHECK(stg_key_split_friend_pending(k.data, k.len, &u, &p, &ts) == 0);
    CHECK(u.len == 5 && memcmp(u.p, "alice", 5) == 0 && p.len == 3 && memcmp(p.p, "bob", 3) == 0);
    CHECK(ts == 0x0102030405060708ull);
    CHECK(stg_key_split_friend_pending(k.data, k.len - 1, &u, &p, &ts) == -EINVAL);
    CHECK(stg_key_split_friend_pending(k.data + 1, k.len - 1, &u, &p, &ts) == -EINVAL);
    CHECK(stg_key_friend_pending_prefix(&pre, "alice", 5) == 0);
    CHECK(pre.len < k.len && memcmp(pre.data, k.data, pre.len) == 0);
    /* not under another user's pending prefix, even one that is a prefix of it */
    CHECK(stg_key_friend_pending_prefix(&pre, "alic", 4) == 0);
    CHECK(memcmp(pre.data, k.data, pre.len) != 0);
    /* a user's friendship range [prefix, successor) holds no pending key */
    const char *users[] = {"a", "alice", "bob", "\x01", "\xff\xff"};
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        size_t n = strlen(users[i]);
        CHECK(stg_key_prefix(&lo, users[i], n) == 0);
        CHECK(stg_key_prefix(&hi, users[i], n) == 0 && stg_key_successor(&hi) == 0);
        CHECK(stg_key_friend_pending(&k, users[i], n, "peer", 4, 7) == 0);
        size_t m = k.len < lo.len ? k.len : lo.len;
        CHECK(memcmp(k.data, lo.data, m) < 0);
    }
    CHECK(stg_key_friend_pending(&k, "", 0, "p", 1, 1) == -EINVAL);
    buf_deinit(&k);
    buf_deinit(&pre);
    buf_deinit(&lo);
    buf_deinit(&hi);
}

int main(void)
{
    test_log_order();
    test_cursor_order();
    test_invalid();
    test_friend_pending();
    if (failures) {
        fprintf(stderr, "test_key: %d failures\n", failures);
        return 1;
    }
    printf("test_key: ok\n");
    return 0;
}
