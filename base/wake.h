/*
 * Sleep/wake handshake for a consumer fed by lock-free rings (an eventcount).
 *
 * Consumer, before blocking:
 *     wake_prepare(w);               // announce: about to sleep
 *     if (any ring non-empty) wake_cancel(w); else block until woken;
 * Producer, after publishing to the consumer's ring:
 *     if (wake_needed(w)) send the wake-up (MSG_RING, futex, ...);
 * The sequentially consistent fences make sure that either the consumer sees
 * the new element in its re-check, or the producer sees the sleeping flag and
 * sends exactly one wake-up. Wake-ups are only sent to a consumer that may be
 * asleep, so a busy consumer costs its producers one shared load per publish.
 */
#ifndef RP_BASE_WAKE_H
#define RP_BASE_WAKE_H

#include <stdatomic.h>
#include <stdbool.h>

struct wake {
    _Alignas(64) atomic_int sleeping;
};

static inline void wake_prepare(struct wake *w)
{
    atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

static inline void wake_cancel(struct wake *w)
{
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

/* True for exactly one producer after the consumer announced sleep. */
static inline bool wake_needed(struct wake *w)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&w->sleeping, memory_order_relaxed))
        return false;
    return atomic_exchange_explicit(&w->sleeping, 0, memory_order_acq_rel) != 0;
}

#endif
