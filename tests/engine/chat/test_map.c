/* The chat layer's hash maps: struct map (copied keys) and struct imap
 * (intrusive links), checked against a plain array as the reference through
 * growth, replacement, adding without a search, deletion, deletion while
 * iterating, keys coming and going, random mixes of all of them, and
 * colliding hashes; an empty map allocates nothing. */
#include "engine/chat/map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

#define N 5000u

static int key_of(char *out, unsigned i)
{
    return snprintf(out, 16, "k%u", i);
}

static void test_map(void)
{
    struct map m;
    map_init(&m);
    CHECK(m.t == NULL && map_count(&m) == 0);
    CHECK(map_get(&m, "x", 1) == NULL && map_del(&m, "x", 1) == NULL);
    struct map_iter it;
    map_iter_init(&it, &m);
    CHECK(map_next(&it) == NULL);

    char k[16];
    for (unsigned i = 0; i < N; i++) {
        int n = key_of(k, i);
        struct map_node *nd = map_put(&m, k, (uint32_t)n, map_u64(i + 1));
        CHECK(nd && nd->klen == (uint32_t)n && memcmp(nd->key, k, (size_t)n) == 0);
        CHECK(nd->key[n] == 0);
    }
    CHECK(map_count(&m) == N);
    CHECK(m.t->nslots >= N && (m.t->nslots & (m.t->nslots - 1)) == 0);
    /* replacing keeps the count */
    CHECK(map_put(&m, "k7", 2, map_u64(700)) != NULL);
    CHECK(map_count(&m) == N && map_as_u64(map_get(&m, "k7", 2)) == 700);
    for (unsigned i = 0; i < N; i++) {
        int n = key_of(k, i);
        uint64_t want = i == 7 ? 700 : i + 1;
        CHECK(map_as_u64(map_get(&m, k, (uint32_t)n)) == want);
    }
    /* adding an absent key without the search */
    struct map_node *added = map_add(&m, "fresh", 5, map_u64(42));
    CHECK(added && added->klen == 5 && memcmp(added->key, "fresh", 6) == 0);
    CHECK(map_count(&m) == N + 1 && map_as_u64(map_get(&m, "fresh", 5)) == 42);
    CHECK(map_as_u64(map_del(&m, "fresh", 5)) == 42 && map_count(&m) == N);
    /* the empty key is a key like any other */
    CHECK(map_put(&m, "", 0, map_u64(9)) && map_as_u64(map_get(&m, "", 0)) == 9);
    CHECK(map_as_u64(map_del(&m, "", 0)) == 9 && map_count(&m) == N);

    /* delete the odd keys while iterating; every key is seen exactly once */
    unsigned char *seen = calloc(N, 1);
    CHECK(seen);
    map_iter_init(&it, &m);
    struct map_node *nd;
    unsigned visited = 0;
    while ((nd = map_next(&it))) {
        unsigned i = (unsigned)strtoul(nd->key + 1, NULL, 10);
        CHECK(i < N && !seen[i]);
        seen[i] = 1;
        visited++;
        if (i % 2)
            CHECK(map_del(&m, nd->key, nd->klen) != NULL);
    }
    CHECK(visited == N && map_count(&m) == N / 2);
    for (unsigned i = 0; i < N; i++) {
        int n = key_of(k, i);
        CHECK((map_get(&m, k, (uint32_t)n) != NULL) == (i % 2 == 0));
    }
    free(seen);

    /* a moved map (home_stage hands its cursors to a batch this way) */
    struct map moved = m;
    map_init(&m);
    CHECK(map_count(&m) == 0 && map_count(&moved) == N / 2);
    map_deinit(&moved);
    CHECK(moved.t == NULL && map_count(&moved) == 0);
    map_deinit(&m);
}

/*
 * A map that keeps a steady number of entries while keys come and go (the
 * dedup records of a conversation): against a reference array through many
 * times its size of adds and deletes, with lookups of absent keys between;
 * deleted slots must not make the table grow past twice the live entries'
 * need, nor any probe loop.
 */
static void test_map_churn(void)
{
    enum { LIVE = 300, ROUNDS = 20000 };
    struct map m;
    map_init(&m);
    char k[16];
    unsigned lo = 0, hi = 0; /* keys lo..hi-1 are in the map */
    uint32_t most = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        int n = key_of(k, hi);
        CHECK(map_get(&m, k, (uint32_t)n) == NULL);
        CHECK(map_add(&m, k, (uint32_t)n, map_u64(hi + 1)) != NULL);
        hi++;
        if (hi - lo > LIVE) {
            n = key_of(k, lo);
            CHECK(map_as_u64(map_del(&m, k, (uint32_t)n)) == lo + 1);
            CHECK(map_del(&m, k, (uint32_t)n) == NULL);
            lo++;
        }
        if (m.t->nslots > most)
            most = m.t->nslots;
        if (r % 997 == 0)
            for (unsigned i = lo > 50 ? lo - 50 : 0; i < hi + 50; i++) {
                n = key_of(k, i);
                uint64_t want = i >= lo && i < hi ? i + 1 : 0;
                CHECK(map_as_u64(map_get(&m, k, (uint32_t)n)) == want);
            }
    }
    CHECK(map_count(&m) == LIVE);
    CHECK(most <= 1024); /* 301 entries need 1024 slots at most */
    struct map_iter it;
    map_iter_init(&it, &m);
    unsigned visited = 0;
    struct map_node *nd;
    while ((nd = map_next(&it))) {
        unsigned i = (unsigned)strtoul(nd->key + 1, NULL, 10);
        CHECK(i >= lo && i < hi && map_as_u64(nd->val) == i + 1);
        visited++;
    }
    CHECK(visited == LIVE);
    map_deinit(&m);

    /* a map whose one entry comes and goes keeps its table: a deleted slot
     * with an empty one after it is emptied, not marked */
    int n = key_of(k, 0);
    CHECK(map_add(&m, k, (uint32_t)n, map_u64(1)) != NULL);
    const struct map_tab *tab = m.t;
    for (unsigned r = 1; r < 1000; r++) {
        CHECK(map_as_u64(map_del(&m, k, (uint32_t)n)) == r);
        CHECK(map_count(&m) == 0 && m.t->used == 0);
        n = key_of(k, r);
        CHECK(map_add(&m, k, (uint32_t)n, map_u64(r + 1)) != NULL);
    }
    CHECK(m.t == tab);
    map_deinit(&m);
}

/*
 * Random puts, adds, deletes and iterations that delete as they go, against a
 * reference array, over key ranges from 1 to RKEYS (small maps that empty and
 * refill, large ones that rebuild): every key reads back its value, the count
 * holds, and the table's counts hold its invariants (used counts every slot
 * not empty; one slot at least stays empty, or a probe could run forever).
 */
#define RKEYS 600u

static void check_against(const struct map *m, const uint64_t *want)
{
    size_t live = 0;
    char k[16];
    for (unsigned i = 0; i < RKEYS; i++) {
        int n = key_of(k, i);
        CHECK(map_as_u64(map_get(m, k, (uint32_t)n)) == want[i]);
        live += want[i] != 0;
    }
    CHECK(map_count(m) == live);
    if (m->t) {
        uint32_t used = 0;
        for (uint32_t i = 0; i < m->t->nslots; i++)
            used += m->t->slots[i].node != NULL;
        CHECK(used == m->t->used && used < m->t->nslots);
    }
}

static void test_map_random(void)
{
    static uint64_t want[RKEYS]; /* 0: absent */
    test_rng_state = 88172645463325252ull;
    for (unsigned range = 1; range <= RKEYS; range = range * 3 + 1) {
        struct map m;
        map_init(&m);
        memset(want, 0, sizeof(want));
        char k[16];
        for (unsigned r = 0; r < 40000; r++) {
            unsigned i = test_below(range), op = test_below(10);
            int n = key_of(k, i);
            uint64_t v = (uint64_t)r + 1;
            if (op < 4) {
                CHECK(map_put(&m, k, (uint32_t)n, map_u64(v)) != NULL);
                want[i] = v;
            } else if (op < 5 && !want[i]) {
                CHECK(map_add(&m, k, (uint32_t)n, map_u64(v)) != NULL);
                want[i] = v;
            } else if (op < 9) {
                CHECK(map_as_u64(map_del(&m, k, (uint32_t)n)) == want[i]);
                want[i] = 0;
            } else {
                /* every live key once, about half of them deleted on the way */
                unsigned char seen[RKEYS] = {0};
                struct map_iter it;
                struct map_node *nd;
                map_iter_init(&it, &m);
                while ((nd = map_next(&it))) {
                    unsigned j = (unsigned)strtoul(nd->key + 1, NULL, 10);
                    CHECK(j < range && want[j] && !seen[j]);
                    seen[j] = 1;
                    if (test_below(2)) {
                        CHECK(map_as_u64(map_del(&m, nd->key, nd->klen)) == want[j]);
                        want[j] = 0;
                    }
                }
                for (unsigned j = 0; j < range; j++)
                    CHECK(seen[j] || !want[j]);
            }
            if (r % 257 == 0)
                check_against(&m, want);
        }
        check_against(&m, want);
        map_deinit(&m);
    }
}

struct item {
    struct ilink link;
    unsigned key;
    bool in;
};

static uint64_t item_hash_key(unsigned key)
{
    return key % 97u; /* few distinct hashes: long chains of different keys */
}

static uint64_t item_hash(const struct ilink *l)
{
    return item_hash_key(((const struct item *)l)->key);
}

static struct item *item_find(const struct imap *m, unsigned key)
{
    for (struct ilink *l = imap_chain(m, item_hash_key(key)); l; l = l->next)
        if (((struct item *)l)->key == key)
            return (struct item *)l;
    return NULL;
}

static void test_imap(void)
{
    struct imap m;
    imap_init(&m);
    CHECK(imap_count(&m) == 0 && imap_chain(&m, 5) == NULL && item_find(&m, 5) == NULL);
    struct imap_iter it;
    imap_iter_init(&it, &m);
    CHECK(imap_next(&it) == NULL);

    struct item *items = calloc(N, sizeof(*items));
    CHECK(items);
    for (unsigned i = 0; i < N; i++) {
        items[i].key = i * 3;
        CHECK(imap_add(&m, &items[i].link, item_hash_key(items[i].key), item_hash) == 0);
        items[i].in = true;
    }
    CHECK(imap_count(&m) == N && m.nslots >= N);
    for (unsigned i = 0; i < N; i++)
        CHECK(item_find(&m, i * 3) == &items[i]);
    CHECK(item_find(&m, 1) == NULL);

    /* removal: present once, then absent */
    CHECK(imap_remove(&m, &items[10].link, item_hash_key(items[10].key)));
    items[10].in = false;
    CHECK(!imap_remove(&m, &items[10].link, item_hash_key(items[10].key)));
    CHECK(item_find(&m, 30) == NULL && imap_count(&m) == N - 1);

    /* remove every third entry while iterating */
    unsigned visited = 0;
    struct ilink *l;
    imap_iter_init(&it, &m);
    while ((l = imap_next(&it))) {
        struct item *x = (struct item *)l;
        CHECK(x->in);
        visited++;
        if (x->key % 9 == 0) {
            CHECK(imap_remove(&m, l, item_hash_key(x->key)));
            x->in = false;
        }
    }
    CHECK(visited == N - 1);
    unsigned left = 0;
    for (unsigned i = 0; i < N; i++) {
        CHECK((item_find(&m, i * 3) != NULL) == items[i].in);
        left += items[i].in;
    }
    CHECK(imap_count(&m) == left);
    imap_deinit(&m);
    CHECK(m.slots == NULL && imap_count(&m) == 0);
    free(items);
}

int main(void)
{
    test_map();
    test_map_churn();
    test_map_random();
    test_imap();
    printf("test_map: ok\n");
    return 0;
}
