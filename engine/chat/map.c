/*
 * struct map: open addressing, linear probing, a table at most 3/4 used
 * (entries and deleted slots); it doubles when the entries fill more than
 * half of it and is rebuilt at its size when deleted slots crowd it, so it
 * never shrinks. Deleting leaves a MAP_GONE slot (or an empty one, when the
 * slot after it is empty: no probe can pass it then) and moves nothing,
 * which keeps deletion during iteration simple. struct imap: chaining, slots
 * double when the load passes 1, with the caller's hash.
 *
 * The keys of struct map are ids that clients choose (cmids, conversation and
 * user ids), so its hash is XXH3 with a seed drawn at random when the process
 * starts: without the seed, keys that all land on one run of slots could be
 * worked out offline and would make every lookup walk it.
 */
#include "engine/chat/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Most maps hold a few entries (a user's conversations, a session's acks):
 * a first table of two slots holds one. */
#define MAP_SLOTS_MIN  2u
#define IMAP_SLOTS_MIN 16u

/* The mark of a deleted slot: an address no node can have. */
static struct map_node gone_mark;
#define MAP_GONE (&gone_mark)

/* ---- struct map ---- */

/* The one piece of process-wide state here: written once, before main, by the
 * constructor below, and only read after, from every shard thread. */
static uint64_t map_seed;

__attribute__((constructor)) static void map_seed_init(void)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* a fuzzer's crash input must replay with the same table order */
    map_seed = 0;
#else
    if (getrandom(&map_seed, sizeof(map_seed), GRND_NONBLOCK) == (ssize_t)sizeof(map_seed))
        return;
    /* no entropy yet this early in boot: the clock still varies per start */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    map_seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
#endif
}

uint64_t map_hash(const void *key, uint32_t klen)
{
    return XXH3_64bits_withSeed(key, klen, map_seed);
}

static bool live(const struct map_slot *s)
{
    return s->node && s->node != MAP_GONE;
}

void map_init(struct map *m)
{
    m->t = NULL;
}

void map_deinit(struct map *m)
{
    struct map_tab *t = m->t;
    for (uint32_t i = 0; t && i < t->nslots; i++)
        if (live(&t->slots[i]))
            free(t->slots[i].node);
    free(t);
    map_init(m);
}

/* The slot holding key (hash h), or NULL. */
static struct map_slot *slot_of(const struct map_tab *t, uint64_t h, const void *key, uint32_t klen)
{
    uint32_t mask = t->nslots - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const struct map_slot *s = &t->slots[i];
        if (!s->node)
            return NULL;
        if (s->hash == h && s->node != MAP_GONE && s->node->klen == klen &&
            (klen == 0 || memcmp(s->node->key, key, klen) == 0))
            return (struct map_slot *)s;
    }
}

struct map_node *map_find(const struct map *m, const void *key, uint32_t klen)
{
    const struct map_tab *t = m->t;
    if (!t)
        return NULL;
    struct map_slot *s = slot_of(t, map_hash(key, klen), key, klen);
    return s ? s->node : NULL;
}

void *map_get(const struct map *m, const void *key, uint32_t klen)
{
    struct map_node *n = map_find(m, key, klen);
    return n ? n->val : NULL;
}

/* The first slot on h's probe path that takes a new entry. A table is never
 * full (at most 3/4 used), so there is one. */
static struct map_slot *free_slot(struct map_tab *t, uint64_t h)
{
    uint32_t mask = t->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    while (live(&t->slots[i]))
        i = (i + 1) & mask;
    return &t->slots[i];
}

/* Room for one more entry: the table rebuilt (doubled when its entries fill
 * half of it) once entries and deleted slots would pass 3/4. */
static int reserve(struct map *m)
{
    struct map_tab *old = m->t;
    if (old && (uint64_t)(old->used + 1) * 4 <= (uint64_t)old->nslots * 3)
        return 0;
    uint32_t ns = MAP_SLOTS_MIN;
    if (old) {
        ns = old->nslots;
        if ((uint64_t)(old->n + 1) * 2 > ns)
            ns *= 2;
        if (ns == 0)
            return -1;
    }
    struct map_tab *t = calloc(1, sizeof(*t) + (size_t)ns * sizeof(t->slots[0]));
    if (!t)
        return -1;
    t->nslots = ns;
    for (uint32_t i = 0; old && i < old->nslots; i++)
        if (live(&old->slots[i]))
            *free_slot(t, old->slots[i].hash) = old->slots[i];
    t->n = t->used = old ? old->n : 0;
    free(old);
    m->t = t;
    return 0;
}

struct map_node *map_put(struct map *m, const void *key, uint32_t klen, void *val)
{
    struct map_node *n = map_find(m, key, klen);
    if (n) {
        n->val = val;
        return n;
    }
    return map_add(m, key, klen, val);
}

struct map_node *map_add(struct map *m, const void *key, uint32_t klen, void *val)
{
    /* a table that cannot be rebuilt still takes entries while one slot
     * stays empty (probes end at an empty slot) */
    if (reserve(m) < 0 && (!m->t || (uint64_t)m->t->used + 2 > m->t->nslots))
        return NULL;
    struct map_node *n = malloc(sizeof(*n) + klen + 1);
    if (!n)
        return NULL;
    n->val = val;
    n->klen = klen;
    if (klen)
        memcpy(n->key, key, klen);
    n->key[klen] = 0;
    struct map_tab *t = m->t;
    uint64_t h = map_hash(key, klen);
    struct map_slot *s = free_slot(t, h);
    if (!s->node)
        t->used++;
    s->hash = h;
    s->node = n;
    t->n++;
    return n;
}

void *map_del(struct map *m, const void *key, uint32_t klen)
{
    struct map_tab *t = m->t;
    if (!t)
        return NULL;
    struct map_slot *s = slot_of(t, map_hash(key, klen), key, klen);
    if (!s)
        return NULL;
    void *v = s->node->val;
    free(s->node);
    s->node = MAP_GONE;
    t->n--;
    /* A run of deleted slots that ends at an empty one ends no probe that
     * could find anything past it: empty them, so that a map whose entries
     * come and go (down to none) does not fill with marks and rebuild. */
    uint32_t mask = t->nslots - 1;
    uint32_t i = (uint32_t)(s - t->slots);
    while (!t->slots[(i + 1) & mask].node && t->slots[i].node == MAP_GONE) {
        t->slots[i].node = NULL;
        t->used--;
        i = (i - 1) & mask;
    }
    return v;
}

/* The table is read through it->m at every step. A put while iterating may
 * rebuild the table, after which entries can be visited twice or missed: no
 * caller puts into a map it iterates (deleting the current entry is fine). */
static struct map_node *advance(struct map_iter *it)
{
    const struct map_tab *t = it->m->t;
    while (t && ++it->slot < t->nslots)
        if (live(&t->slots[it->slot]))
            return t->slots[it->slot].node;
    return NULL;
}

void map_iter_init(struct map_iter *it, const struct map *m)
{
    it->m = m;
    it->slot = (size_t)-1;
    it->next = advance(it);
}

struct map_node *map_next(struct map_iter *it)
{
    struct map_node *cur = it->next;
    if (cur)
        it->next = advance(it);
    return cur;
}

/* ---- struct imap ---- */

void imap_init(struct imap *m)
{
    m->slots = NULL;
    m->nslots = 0;
    m->n = 0;
}

void imap_deinit(struct imap *m)
{
    free(m->slots);
    imap_init(m);
}

static int imap_grow(struct imap *m, imap_hash_fn hash)
{
    uint32_t ns = m->nslots ? m->nslots * 2 : IMAP_SLOTS_MIN;
    struct ilink **s = calloc(ns, sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->nslots; i++) {
        struct ilink *l = m->slots[i];
        while (l) {
            struct ilink *next = l->next;
            size_t j = hash(l) & (ns - 1);
            l->next = s[j];
            s[j] = l;
            l = next;
        }
    }
    free(m->slots);
    m->slots = s;
    m->nslots = ns;
    return 0;
}

int imap_add(struct imap *m, struct ilink *l, uint64_t h, imap_hash_fn hash)
{
    if (m->n >= m->nslots && imap_grow(m, hash) < 0 && !m->nslots)
        return -ENOMEM;
    size_t j = h & (m->nslots - 1);
    l->next = m->slots[j];
    m->slots[j] = l;
    m->n++;
    return 0;
}

bool imap_remove(struct imap *m, struct ilink *l, uint64_t h)
{
    if (!m->nslots)
        return false;
    for (struct ilink **pp = &m->slots[h & (m->nslots - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            l->next = NULL;
            m->n--;
            return true;
        }
    }
    return false;
}

static struct ilink *imap_advance(struct imap_iter *it, struct ilink *from)
{
    if (from && from->next)
        return from->next;
    const struct imap *m = it->m;
    while (++it->slot < m->nslots)
        if (m->slots[it->slot])
            return m->slots[it->slot];
    return NULL;
}

void imap_iter_init(struct imap_iter *it, const struct imap *m)
{
    it->m = m;
    it->slot = (size_t)-1;
    it->next = imap_advance(it, NULL);
}

struct ilink *imap_next(struct imap_iter *it)
{
    struct ilink *cur = it->next;
    if (cur)
        it->next = imap_advance(it, cur);
    return cur;
}
