#include "base/spsc.h"

#include "base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int spsc_init(struct spsc *r, uint32_t capacity, uint32_t elem_size)
{
    if (capacity > SPSC_CAPACITY_MAX || elem_size == 0)
        return -EINVAL;
    uint32_t cap = 2;
    while (cap < capacity)
        cap <<= 1;
    memset(r, 0, sizeof(*r));
    r->slots = calloc(cap, elem_size);
    if (!r->slots)
        return -ENOMEM;
    r->mask = cap - 1;
    r->elem_size = elem_size;
    return 0;
}

void spsc_deinit(struct spsc *r)
{
    free(r->slots);
    r->slots = NULL;
}

int spsc_push(struct spsc *r, const void *elem)
{
    if (r->ptail - r->phead > r->mask) {
        r->phead = atomic_load_explicit(&r->head, memory_order_acquire);
        if (r->ptail - r->phead > r->mask)
            return -RP_EFULL;
    }
    memcpy(r->slots + (size_t)(r->ptail & r->mask) * r->elem_size, elem, r->elem_size);
    r->ptail++;
    return 0;
}

bool spsc_has_room(struct spsc *r)
{
    if (r->ptail - r->phead > r->mask)
        r->phead = atomic_load_explicit(&r->head, memory_order_acquire);
    return r->ptail - r->phead <= r->mask;
}

uint32_t spsc_publish(struct spsc *r)
{
    uint32_t old = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (old == r->ptail)
        return 0;
    atomic_store_explicit(&r->tail, r->ptail, memory_order_release);
    return r->ptail - old;
}

void *spsc_front(struct spsc *r)
{
    if (r->chead == r->ctail) {
        r->ctail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (r->chead == r->ctail)
            return NULL;
    }
    return r->slots + (size_t)(r->chead & r->mask) * r->elem_size;
}

uint32_t spsc_readable(struct spsc *r)
{
    r->ctail = atomic_load_explicit(&r->tail, memory_order_acquire);
    return r->ctail - r->chead;
}

void spsc_release(struct spsc *r)
{
    atomic_store_explicit(&r->head, r->chead, memory_order_release);
}

uint32_t spsc_depth(const struct spsc *r)
{
    return atomic_load_explicit(&r->tail, memory_order_relaxed) -
           atomic_load_explicit(&r->head, memory_order_relaxed);
}
