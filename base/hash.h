/*
 * A stable 64-bit hash (FNV-1a) for placing users and conversations on shards.
 * It must never change between releases: shard placement is recomputed from it
 * after every restart.
 */
#ifndef RP_BASE_HASH_H
#define RP_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    /* FNV's low bits mix poorly; fold the high half in before a modulo. */
    return h ^ (h >> 32);
}

#endif
