/*
 * A hash map from byte-string keys to pointers, with chaining. The key bytes
 * are copied into the map; the values are the caller's (never freed here).
 * Used for every lookup table of the chat layer: sessions by connection,
 * users, conversations, cursors, the online index.
 *
 * Thread: a map belongs to one shard thread.
 */
#ifndef RP_CHAT_MAP_H
#define RP_CHAT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_node {
    struct map_node *next;
    uint64_t hash;
    void *val;
    uint32_t klen;
    char key[];
};

struct map {
    struct map_node **slots;
    size_t nslots; /* a power of two, or 0 before the first put */
    size_t n;
};

/* An iteration cursor: the node after the current one is fetched ahead, so the
 * current entry may be deleted while iterating. */
struct map_iter {
    const struct map *m;
    size_t slot;
    struct map_node *next;
};

void map_init(struct map *m);
/* Frees the nodes (not the values). */
void map_deinit(struct map *m);

/* The value stored under key, or NULL. */
void *map_get(const struct map *m, const void *key, uint32_t klen);

/* The node stored under key, or NULL; its key bytes stay put until it is deleted. */
struct map_node *map_find(const struct map *m, const void *key, uint32_t klen);

/*
 * Stores val under key, replacing any value there. Returns the node (whose key
 * bytes live as long as the entry), or NULL on ENOMEM (the map is unchanged).
 */
struct map_node *map_put(struct map *m, const void *key, uint32_t klen, void *val);

/* Removes key; returns its value or NULL when absent. */
void *map_del(struct map *m, const void *key, uint32_t klen);

static inline size_t map_count(const struct map *m)
{
    return m->n;
}

void map_iter_init(struct map_iter *it, const struct map *m);
/* The next node, or NULL at the end. */
struct map_node *map_next(struct map_iter *it);

/* Pointer-sized integers kept as values (cursors, seqs). */
static inline void *map_u64(uint64_t v)
{
    return (void *)(uintptr_t)v;
}
static inline uint64_t map_as_u64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

#endif
