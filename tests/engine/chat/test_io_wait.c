/*
 * The reads waiting for a slot in engine/chat/io.c, and io_cancel_waiting:
 * a closing session drops its own waiting reads, oldest first, without
 * walking everybody else's (a reconnect wave closes thousands of sessions
 * while hundreds of thousands of reads wait), and the others keep their
 * order. White box: the test includes io.c to look at the queue.
 */
#include "engine/chat/io.c"  // NOLINT(bugprone-suspicious-include): white box, see above
#include "engine/chat/map.c" // NOLINT(bugprone-suspicious-include): io.c uses it

#include "check.h"

#include <stdint.h>
#include <stdio.h>

enum { NCTX = 50000, PER = 4 };

static int fake_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    (void)rt;
    (void)q;
    (void)tag;
    return 0; /* never completes: the one slot stays taken */
}

static uint64_t last_arg[NCTX + 1];
static uint32_t ncancelled;

static void on_read(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    (void)c;
    stg_result_free(res);
    CHECK(err == -ECANCELED);
    uintptr_t k = (uintptr_t)ctx;
    CHECK(k >= 1 && k <= NCTX && arg % NCTX + 1 == k);
    CHECK(arg >= last_arg[k] + (last_arg[k] ? 1 : 0)); /* a ctx's reads: oldest first */
    last_arg[k] = arg;
    ncancelled++;
}

int main(void)
{
    static struct chat c;
    CHECK(io_init(&c.io) == 0);
    c.env.read = fake_read;
    io_set_reads_max(&c.io, 1);
    /* read i belongs to ctx i % NCTX + 1: the reads of one ctx are spread out */
    for (uint64_t i = 0; i < (uint64_t)NCTX * PER + 1; i++) {
        uintptr_t k = (uintptr_t)(i % NCTX + 1);
        CHECK(io_get_wait(&c, STG_CF_CONV, "\x01x", 2, on_read, (void *)k, i) == 0);
    }
    CHECK(c.io.used == 1 && c.io.nwait == (uint32_t)NCTX * PER);
    /* the even ctxs leave, newest first */
    for (uintptr_t k = NCTX; k >= 1; k--)
        if (k % 2 == 0)
            CHECK(io_cancel_waiting(&c, (void *)k) == PER);
    CHECK(ncancelled == (uint32_t)NCTX / 2 * PER);
    CHECK(io_cancel_waiting(&c, (void *)(uintptr_t)2) == 0); /* nothing left of it */
    /* the others wait as they did, in order */
    uint64_t prev = 0;
    uint32_t n = 0;
    for (struct io_wait *w = c.io.wait_head; w; w = w->next, n++) {
        CHECK((uintptr_t)w->ctx % 2 == 1 && w->arg > prev);
        CHECK(w->next ? w->next->prev == w : c.io.wait_tail == w);
        prev = w->arg;
    }
    CHECK(n == c.io.nwait && n == (uint32_t)NCTX / 2 * PER); /* read 0 has the slot */
    for (uintptr_t k = 1; k <= NCTX; k += 2)
        io_cancel_waiting(&c, (void *)k);
    CHECK(c.io.nwait == 0 && c.io.wait_head == NULL && c.io.wait_tail == NULL);
    CHECK(c.io.wait_bytes == 0 && map_count(&c.io.wait_by_ctx) == 0);
    io_deinit(&c.io);
    printf("ok\n");
    return 0;
}
