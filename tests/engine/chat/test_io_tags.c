/*
 * The tags of engine/chat/io.c: a read's tag is (slot generation << 32 |
 * slot), a write's has bit 63 set. A slot's generation grows by one per read
 * through it, and free slots are reused last first, so on a quiet shard one
 * slot takes nearly every read: its generation must never reach bit 63, or a
 * completion would be taken for a write's and its read lost. White box: the
 * test includes io.c to set a slot's generation to where 2^31 - 1 reads
 * through it would have left it.
 */
#include "engine/chat/io.c"  // NOLINT(bugprone-suspicious-include): white box, see above
#include "engine/chat/map.c" // NOLINT(bugprone-suspicious-include): io.c uses it

#include "check.h"

#include <stdio.h>

static uint64_t last_tag;
static int ncb;

static int fake_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    (void)rt;
    (void)q;
    last_tag = tag;
    return 0;
}

static void on_read(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    (void)c;
    (void)ctx;
    (void)arg;
    (void)err;
    stg_result_free(res);
    ncb++;
}

/* One read through the io layer, completed at once: did its callback run? */
static bool one_read(struct chat *c)
{
    int before = ncb;
    CHECK(io_get(c, STG_CF_CONV, "\x01x", 2, on_read, NULL, 0) == 0);
    struct stg_done d = {.tag = last_tag, .err = -ENOENT};
    io_on_storage(c, &d);
    return ncb == before + 1;
}

int main(void)
{
    static struct chat c;
    CHECK(io_init(&c.io) == 0);
    c.env.read = fake_read;
    CHECK(one_read(&c) && one_read(&c));
    CHECK((uint32_t)last_tag == 0 && last_tag >> 32 == 1); /* slot 0 again, next generation */
    c.io.slots[0].gen = 0x7fffffffu;
    CHECK(one_read(&c));
    CHECK(!(last_tag & TAG_WRITE));
    CHECK(one_read(&c)); /* the generation after 0x7fffffff */
    CHECK(!(last_tag & TAG_WRITE) && c.io.used == 0);
    io_deinit(&c.io);
    printf("ok\n");
    return 0;
}
