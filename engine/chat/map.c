/*
 * Chained hash map. Slots double when the load passes 1; they never shrink,
 * which keeps deletion during iteration simple. FNV-1a (base/hash.h) is the
 * hash, since keys are short ids.
 */
#include "engine/chat/map.h"

#include "base/hash.h"

#include <stdlib.h>
#include <string.h>

void map_init(struct map *m)
{
    m->slots = NULL;
    m->nslots = 0;
    m->n = 0;
}

void map_deinit(struct map *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct map_node *n = m->slots[i];
        while (n) {
            struct map_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(m->slots);
    map_init(m);
}

struct map_node *map_find(const struct map *m, const void *key, uint32_t klen)
{
    if (!m->nslots)
        return NULL;
    uint64_t h = hash_bytes(key, klen);
    for (struct map_node *n = m->slots[h & (m->nslots - 1)]; n; n = n->next)
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
    size_t ns = m->nslots ? m->nslots * 2 : 16;
    struct map_node **s = calloc(ns, sizeof(*s));
    if (!s)
        return -1;
    for (size_t i = 0; i < m->nslots; i++) {
        struct map_node *n = m->slots[i];
        while (n) {
            struct map_node *next = n->next;
            size_t j = n->hash & (ns - 1);
            n->next = s[j];
            s[j] = n;
            n = next;
        }
    }
    free(m->slots);
    m->slots = s;
    m->nslots = ns;
    return 0;
}

struct map_node *map_put(struct map *m, const void *key, uint32_t klen, void *val)
{
    struct map_node *n = map_find(m, key, klen);
    if (n) {
        n->val = val;
        return n;
    }
    if (m->n >= m->nslots && grow(m) < 0 && !m->nslots)
        return NULL;
    n = malloc(sizeof(*n) + klen + 1);
    if (!n)
        return NULL;
    n->hash = hash_bytes(key, klen);
    n->val = val;
    n->klen = klen;
    if (klen)
        memcpy(n->key, key, klen);
    n->key[klen] = 0;
    size_t j = n->hash & (m->nslots - 1);
    n->next = m->slots[j];
    m->slots[j] = n;
    m->n++;
    return n;
}

void *map_del(struct map *m, const void *key, uint32_t klen)
{
    if (!m->nslots)
        return NULL;
    uint64_t h = hash_bytes(key, klen);
    struct map_node **pp = &m->slots[h & (m->nslots - 1)];
    for (; *pp; pp = &(*pp)->next) {
        struct map_node *n = *pp;
        if (n->hash == h && n->klen == klen && (klen == 0 || memcmp(n->key, key, klen) == 0)) {
            void *v = n->val;
            *pp = n->next;
            free(n);
            m->n--;
            return v;
        }
    }
    return NULL;
}

static struct map_node *advance(struct map_iter *it, struct map_node *from)
{
    if (from && from->next)
        return from->next;
    const struct map *m = it->m;
    while (++it->slot < m->nslots)
        if (m->slots[it->slot])
            return m->slots[it->slot];
    return NULL;
}

void map_iter_init(struct map_iter *it, const struct map *m)
{
    it->m = m;
    it->slot = (size_t)-1;
    it->next = m->nslots ? advance(it, NULL) : NULL;
}

struct map_node *map_next(struct map_iter *it)
{
    struct map_node *cur = it->next;
    if (cur)
        it->next = advance(it, cur);
    return cur;
}
