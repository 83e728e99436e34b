/*
 * hist: quantiles of known distributions stay within the histogram's
 * resolution (1/32), small values are exact, merging two halves equals
 * recording everything in one, and an empty histogram answers 0.
 */
#include "hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "check.h"

static int near(uint64_t got, uint64_t want)
{
    double err = fabs((double)got - (double)want) / (double)want;
    if (err > 1.0 / HIST_SUB)
        fprintf(stderr, "got %llu want %llu (%.2f%%)\n", (unsigned long long)got,
                (unsigned long long)want, err * 100);
    return err <= 1.0 / HIST_SUB;
}

static void test_uniform(void)
{
    struct hist *h = calloc(1, sizeof(*h));
    for (uint64_t v = 1; v <= 1000000; v++)
        hist_add(h, v * 1000);
    CHECK(h->count == 1000000);
    CHECK(near(hist_quantile(h, 0.5), 500000000));
    CHECK(near(hist_quantile(h, 0.99), 990000000));
    CHECK(near(hist_quantile(h, 0.999), 999000000));
    CHECK(hist_quantile(h, 1.0) == 1000000000);
    CHECK(fabs(hist_mean(h) - 500000500.0) < 1.0);
    free(h);
}

static void test_small_exact(void)
{
    struct hist *h = calloc(1, sizeof(*h));
    for (uint64_t v = 0; v < HIST_SUB; v++)
        hist_add(h, v);
    CHECK(hist_quantile(h, 1.0 / HIST_SUB) == 0);
    CHECK(hist_quantile(h, 0.5) == HIST_SUB / 2 - 1);
    CHECK(hist_quantile(h, 1.0) == HIST_SUB - 1);
    free(h);
}

static void test_merge(void)
{
    struct hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    struct hist *all = calloc(1, sizeof(*all));
    srand(7);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = (uint64_t)rand() * (uint64_t)(1 + rand() % 1000);
        hist_add(i % 2 ? a : b, v);
        hist_add(all, v);
    }
    hist_merge(a, b);
    CHECK(a->count == all->count && a->max == all->max && a->sum == all->sum);
    for (int k = 1; k < 100; k++)
        CHECK(hist_quantile(a, k / 100.0) == hist_quantile(all, k / 100.0));
    free(a);
    free(b);
    free(all);
}

static void test_empty_and_outlier(void)
{
    struct hist *h = calloc(1, sizeof(*h));
    CHECK(hist_quantile(h, 0.5) == 0 && hist_mean(h) == 0);
    for (int i = 0; i < 999; i++)
        hist_add(h, 100000);
    hist_add(h, 5000000000ull);
    CHECK(near(hist_quantile(h, 0.99), 100000));
    CHECK(hist_quantile(h, 1.0) == 5000000000ull);
    free(h);
}

int main(void)
{
    test_uniform();
    test_small_exact();
    test_merge();
    test_empty_and_outlier();
    printf("test_hist: ok\n");
    return 0;
}
