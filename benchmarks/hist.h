/*
 * hist: a log-linear latency histogram. Values (nanoseconds) are kept in
 * HIST_SUB linear sub-buckets per power of two, so every recorded value is
 * known to within 1/HIST_SUB (about 3%) of itself, at a fixed 16 KiB per
 * histogram, with no allocation. Histograms of several workers add up with
 * hist_merge, so a struct hist may live in memory shared between processes.
 *
 * Thread: no locking; one writer per histogram, merge after the writers stop.
 */
#ifndef RP_BENCH_HIST_H
#define RP_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_MAJOR    (64 - HIST_SUB_BITS)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t bucket[HIST_MAJOR][HIST_SUB];
};

/* Clears h (a zeroed struct is also a valid empty histogram). */
void hist_init(struct hist *h);

/* Records one value. */
void hist_add(struct hist *h, uint64_t v);

/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The value at quantile q (0 < q <= 1): the upper edge of the bucket that holds
 * the ceil(q * count)-th smallest value, never above the largest recorded value.
 * 0 for an empty histogram.
 */
uint64_t hist_quantile(const struct hist *h, double q);

/* The arithmetic mean, or 0 for an empty histogram. */
double hist_mean(const struct hist *h);

#endif
