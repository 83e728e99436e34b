/*
 * Shared by the C tests: a CHECK that reports the failing line and
 * exits 1, and a deterministic PRNG so that failures reproduce.
 */
#ifndef RP_TESTS_CHECK_H
#define RP_TESTS_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t test_rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t test_rand(void)
{
    uint64_t x = test_rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return test_rng_state = x;
}

/* A number below n (n > 0) from test_rand. */
static inline uint32_t test_below(uint32_t n)
{
    return (uint32_t)(test_rand() % n);
}

#endif
