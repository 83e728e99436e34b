/*
 * Bucketing: a value below HIST_SUB goes to major 0, sub-bucket v (exact).
 * Otherwise, with b the index of its top bit, major = b - HIST_SUB_BITS + 1
 * and the sub-bucket is the HIST_SUB_BITS bits below the top bit, so each
 * major bucket covers [2^b, 2^(b+1)) in HIST_SUB equal steps.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

static void bucket_of(uint64_t v, unsigned *major, unsigned *sub)
{
    if (v < HIST_SUB) {
        *major = 0;
        *sub = (unsigned)v;
        return;
    }
    unsigned b = 63u - (unsigned)__builtin_clzll(v);
    *major = b - HIST_SUB_BITS + 1;
    *sub = (unsigned)((v >> (b - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* The largest value that falls in bucket (major, sub). */
static uint64_t bucket_top(unsigned major, unsigned sub)
{
    if (major == 0)
        return sub;
    unsigned b = major + HIST_SUB_BITS - 1;
    uint64_t step = 1ull << (b - HIST_SUB_BITS);
    uint64_t base = (1ull << b) + (uint64_t)sub * step;
    return base + step - 1;
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void hist_add(struct hist *h, uint64_t v)
{
    unsigned major, sub;
    bucket_of(v, &major, &sub);
    h->bucket[major][sub]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned m = 0; m < HIST_MAJOR; m++)
        for (unsigned s = 0; s < HIST_SUB; s++)
            dst->bucket[m][s] += src->bucket[m][s];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned m = 0; m < HIST_MAJOR; m++) {
        for (unsigned s = 0; s < HIST_SUB; s++) {
            seen += h->bucket[m][s];
            if (seen >= rank) {
                uint64_t top = bucket_top(m, s);
                return top < h->max ? top : h->max;
            }
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
