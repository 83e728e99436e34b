/*
 * Chained hash maps. Slots double when the load passes 1; they never shrink,
 * which keeps deletion during iteration simple. FNV-1a (base/hash.h) is the
 * hash of struct map, since keys are short ids; struct imap takes the
 * caller's.
 */
#include "engine/chat/map.h"

#include "base/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Most maps hold a few entries (a user's conversations, a session's acks):
 * a first table of two slots is 32 bytes where sixteen took 160. */
#define MAP_SLOTS_MIN  2u
#define IMAP_SLOTS_MIN 16u

/* ---- struct map ---- */

void map_init(struct map *m)
{
    m->t = NULL;
}

void map_deinit(struct map *m)
{
    struct map_tab *t = m->t;
    for (uint32_t i = 0; t && i < t->nslots; i++) {
        struct map_node *n = t->slots[i];
        while (n) {
            struct map_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t);
    map_init(m);
}

struct map_node *map_find(const struct map *m, const void *key, uint32_t klen)
{
    const struct map_tab *t = m->t;
    if (!t)
        return NULL;
    uint64_t h = hash_bytes(key, klen);
    for (struct map_node *n = t->slots[h & (t->nslots - 1)]; n; n = n->next)
        if (n->hash == h && n->klen == klen && (klen == 0 || memcmp(n->key, key, klen) == 0))
            return n;
    return NULL;
}

void *map_get(const struct map *m, const void *key, uint32_t klen)
{
    struct map_node *n = map_find(m, key, klen);
    return n ? n->val : NULL;
}

static int grow(struct map *m)
{
    struct map_tab *old = m->t;
    uint32_t ns = old ? old->nslots * 2 : MAP_SLOTS_MIN;
    struct map_tab *t = calloc(1, sizeof(*t) + ns * sizeof(t->slots[0]));
    if (!t)
        return -1;
    t->nslots = ns;
    for (uint32_t i = 0; old && i < old->nslots; i++) {
        struct map_node *n = old->slots[i];
        while (n) {
            struct map_node *next = n->next;
            size_t j = n->hash & (ns - 1);
            n->next = t->slots[j];
            t->slots[j] = n;
            n = next;
        }
    }
    t->n = old ? old->n : 0;
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
    if ((!m->t || m->t->n >= m->t->nslots) && grow(m) < 0 && !m->t)
        return NULL;
    struct map_node *n = malloc(sizeof(*n) + klen + 1);
    if (!n)
        return NULL;
    n->hash = hash_bytes(key, klen);
    n->val = val;
    n->klen = klen;
    if (klen)
        memcpy(n->key, key, klen);
    n->key[klen] = 0;
    struct map_tab *t = m->t;
    size_t j = n->hash & (t->nslots - 1);
    n->next = t->slots[j];
    t->slots[j] = n;
    t->n++;
    return n;
}

void *map_del(struct map *m, const void *key, uint32_t klen)
{
    struct map_tab *t = m->t;
    if (!t)
        return NULL;
    uint64_t h = hash_bytes(key, klen);
    struct map_node **pp = &t->slots[h & (t->nslots - 1)];
    for (; *pp; pp = &(*pp)->next) {
        struct map_node *n = *pp;
        if (n->hash == h && n->klen == klen && (klen == 0 || memcmp(n->key, key, klen) == 0)) {
            void *v = n->val;
            *pp = n->next;
            free(n);
            t->n--;
            return v;
        }
    }
    return NULL;
}

/* The table is read through it->m at every step: a put while iterating may
 * have replaced it. */
static struct map_node *advance(struct map_iter *it, struct map_node *from)
{
    if (from && from->next)
        return from->next;
    const struct map_tab *t = it->m->t;
    while (t && ++it->slot < t->nslots)
        if (t->slots[it->slot])
            return t->slots[it->slot];
    return NULL;
}

void map_iter_init(struct map_iter *it, const struct map *m)
{
    it->m = m;
    it->slot = (size_t)-1;
    it->next = m->t ? advance(it, NULL) : NULL;
}

struct map_node *map_next(struct map_iter *it)
{
    struct map_node *cur = it->next;
    if (cur)
        it->next = advance(it, cur);
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
