/*
 * SPSC ring: single-thread edge cases, then a two-thread stress test in which a
 * producer pushes a numbered sequence in random-sized published batches and the
 * consumer checks that every item arrives exactly once and in order.
 */
#include "base/err.h"
#include "base/spsc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "check.h"

#define ITEMS 5000000ull

static struct spsc ring;

static void test_single_thread(void)
{
    struct spsc r;
    CHECK(spsc_init(&r, SPSC_CAPACITY_MAX + 1u, 8) == -EINVAL); /* no power of two fits */
    CHECK(spsc_init(&r, 8, 0) == -EINVAL);
    CHECK(spsc_init(&r, 5, sizeof(uint64_t)) == 0); /* rounds up to 8 */
    CHECK(spsc_front(&r) == NULL);
    for (uint64_t i = 0; i < 8; i++) {
        CHECK(spsc_has_room(&r));
        CHECK(spsc_push(&r, &i) == 0);
    }
    uint64_t x = 99;
    CHECK(!spsc_has_room(&r));
    CHECK(spsc_push(&r, &x) == -RP_EFULL);
    CHECK(spsc_front(&r) == NULL); /* nothing published yet */
    CHECK(spsc_readable(&r) == 0);
    CHECK(spsc_publish(&r) == 8);
    CHECK(spsc_publish(&r) == 0);
    CHECK(spsc_readable(&r) == 8);
    for (uint64_t i = 0; i < 8; i++) {
        uint64_t *p = spsc_front(&r);
        CHECK(p && *p == i);
        spsc_pop(&r);
        CHECK(spsc_readable(&r) == 7 - i); /* popped, released or not */
    }
    CHECK(spsc_front(&r) == NULL);
    CHECK(spsc_push(&r, &x) == -RP_EFULL); /* slots not released yet */
    CHECK(!spsc_has_room(&r));
    spsc_release(&r);
    CHECK(spsc_has_room(&r));
    CHECK(spsc_push(&r, &x) == 0);
    spsc_deinit(&r);
}

static void *producer(void *arg)
{
    unsigned seed = 12345;
    uint64_t next = 0;
    (void)arg;
    while (next < ITEMS) {
        unsigned batch = 1 + (unsigned)(rand_r(&seed) % 64);
        for (unsigned i = 0; i < batch && next < ITEMS; i++) {
            while (spsc_push(&ring, &next) == -RP_EFULL) {
                spsc_publish(&ring);
                sched_yield();
            }
            next++;
        }
        spsc_publish(&ring);
    }
    return NULL;
}

int main(void)
{
    test_single_thread();
    CHECK(spsc_init(&ring, 1024, sizeof(uint64_t)) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, producer, NULL) == 0);
    uint64_t expect = 0;
    while (expect < ITEMS) {
        uint64_t *p = spsc_front(&ring);
        if (!p) {
            spsc_release(&ring);
            sched_yield();
            continue;
        }
        CHECK(*p == expect);
        expect++;
        spsc_pop(&ring);
        if ((expect & 31) == 0)
            spsc_release(&ring);
    }
    spsc_release(&ring);
    pthread_join(t, NULL);
    CHECK(spsc_front(&ring) == NULL);
    spsc_deinit(&ring);
    printf("spsc: %llu items in order\n", ITEMS);
    return 0;
}
