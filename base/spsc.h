/*
 * Bounded single-producer / single-consumer ring of fixed-size elements.
 *
 * One thread produces, one thread consumes; no locks. Each side keeps a cached
 * copy of the other side's index so that the shared cache line is read only
 * when the cached view says full (producer) or empty (consumer). The producer
 * writes any number of elements and makes them visible at once with
 * spsc_publish(); the consumer reads any number and frees their slots at once
 * with spsc_release(). A full ring is backpressure: spsc_push() fails with
 * -RP_EFULL and the caller keeps the element; nothing ever spins.
 *
 * Elements are copied in and read in place; an element holding a pointer
 * transfers ownership of what it points to from producer to consumer.
 */
#ifndef RP_BASE_SPSC_H
#define RP_BASE_SPSC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spsc {
    /* consumer side */
    _Alignas(64) _Atomic uint32_t head; /* published: slots before it are free */
    uint32_t chead;                     /* consumer's read position */
    uint32_t ctail;                     /* consumer's cached copy of tail */
    /* producer side */
    _Alignas(64) _Atomic uint32_t tail; /* published: slots before it are readable */
    uint32_t ptail;                     /* producer's write position */
    uint32_t phead;                     /* producer's cached copy of head */
    /* constant after init */
    _Alignas(64) uint32_t mask;
    uint32_t elem_size;
    unsigned char *slots;
};

/* The largest capacity: the ring's indices are 32-bit. */
#define SPSC_CAPACITY_MAX (1u << 31)

/*
 * capacity is rounded up to a power of two (at least 2, at most
 * SPSC_CAPACITY_MAX). elem_size is the size of one element in bytes (> 0).
 * Returns 0, -EINVAL (capacity or elem_size out of range) or -ENOMEM. Not
 * thread-safe; call before either side starts.
 */
int spsc_init(struct spsc *r, uint32_t capacity, uint32_t elem_size);
void spsc_deinit(struct spsc *r);

/* Producer: copy one element in, not yet visible. 0, or -RP_EFULL when full. */
int spsc_push(struct spsc *r, const void *elem);

/* Producer: whether a push would succeed now (reads the consumer's index
 * when the cached view says full). */
bool spsc_has_room(struct spsc *r);
/* Producer: make every pushed element visible to the consumer. Returns how many
 * elements this call published (0 if none were pending). */
uint32_t spsc_publish(struct spsc *r);

/* Producer: elements pushed but not yet published. */
static inline uint32_t spsc_unpublished(const struct spsc *r)
{
    return r->ptail - atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* Consumer: the oldest unread element, or NULL when the ring is empty. The
 * pointer stays valid until spsc_release(). */
void *spsc_front(struct spsc *r);

/* Consumer: elements published and not yet popped, as of this call. */
uint32_t spsc_readable(struct spsc *r);

/* Consumer: step past the element spsc_front() returned. */
static inline void spsc_pop(struct spsc *r)
{
    r->chead++;
}

/* Consumer: give the slots of every popped element back to the producer. */
void spsc_release(struct spsc *r);

/* Either side, approximate: elements published and not yet released. */
uint32_t spsc_depth(const struct spsc *r);

#endif
