/*
 * Hash maps of the chat layer.
 *
 * struct map: byte-string keys to pointers. The key bytes are copied into the
 * map; the values are the caller's (never freed here). Open addressing with
 * linear probing over slots that hold each key's hash next to its node, so a
 * lookup of an absent key (a new dedup cmid, the common case on the send
 * path) reads one run of slots and no node. Used for the lookup
 * tables of the chat layer: conversations, cursors, the online index, a
 * user's conversations and friends, a session's acks. An empty map is one
 * pointer and allocates nothing, since most users and sessions leave most of
 * their maps empty.
 *
 * struct imap: an intrusive table for the ones with an entry per user or per
 * connection (users by id, sessions by connection). The link lives in the
 * value and the caller hashes and compares keys, so an entry costs its link
 * and a slot, not a node with a copy of the key.
 *
 * Thread: a map belongs to one shard thread.
 */
#ifndef RP_CHAT_MAP_H
#define RP_CHAT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_node {
    void *val;
    uint32_t klen;
    char key[];
};

/* A slot of the open-addressed table: the node and its key's hash, so that a
 * probe compares hashes without touching the nodes. node == NULL: empty (a
 * probe ends there); otherwise a node, or map.c's mark of a deleted entry
 * (probes go past it). */
struct map_slot {
    uint64_t hash;
    struct map_node *node;
};

/* The slots of a non-empty map, in one allocation with their counts. */
struct map_tab {
    uint32_t nslots; /* a power of two */
    uint32_t n;      /* entries */
    uint32_t used;   /* entries and deleted slots */
    struct map_slot slots[];
};

struct map {
    struct map_tab *t; /* NULL before the first put */
};

/* An iteration cursor: the node after the current one is fetched ahead, so the
 * current entry may be deleted while iterating. */
struct map_iter {
    const struct map *m;
    size_t slot;
    struct map_node *next;
};

/* The hash struct map uses (seeded at random per process), for the other
 * tables of ids that clients can choose. */
uint64_t map_hash(const void *key, uint32_t klen);

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

/* As map_put for a key the caller knows is absent (it just looked): no second
 * search. Adding a key that is present leaves two entries: don't. */
struct map_node *map_add(struct map *m, const void *key, uint32_t klen, void *val);

/* Removes key; returns its value or NULL when absent. */
void *map_del(struct map *m, const void *key, uint32_t klen);

static inline size_t map_count(const struct map *m)
{
    return m->t ? m->t->n : 0;
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

/* ---- intrusive table ---- */

struct ilink {
    struct ilink *next;
};

struct imap {
    struct ilink **slots;
    uint32_t nslots; /* a power of two, or 0 before the first add */
    uint32_t n;
};

/* The hash of an entry already in the table (used when the slots double). */
typedef uint64_t (*imap_hash_fn)(const struct ilink *l);

struct imap_iter {
    const struct imap *m;
    size_t slot;
    struct ilink *next;
};

void imap_init(struct imap *m);
/* Frees the slots; the entries are the caller's. */
void imap_deinit(struct imap *m);

/* The chain that holds every entry whose hash is h (and others: compare the
 * keys while walking ->next). NULL when empty. */
static inline struct ilink *imap_chain(const struct imap *m, uint64_t h)
{
    return m->nslots ? m->slots[h & (m->nslots - 1)] : NULL;
}

/* Adds l, which must not be in the table, under hash h. 0, or -ENOMEM before
 * the first slot exists (a table that cannot double keeps its slots). */
int imap_add(struct imap *m, struct ilink *l, uint64_t h, imap_hash_fn hash);

/* Removes l, which was added under hash h; false when it is not there. */
bool imap_remove(struct imap *m, struct ilink *l, uint64_t h);

static inline size_t imap_count(const struct imap *m)
{
    return m->n;
}

/* Iteration in the manner of map_iter: the current entry may be removed. */
void imap_iter_init(struct imap_iter *it, const struct imap *m);
struct ilink *imap_next(struct imap_iter *it);

#endif
