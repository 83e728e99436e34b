/*
 * Read slots are a slab with a generation per slot: the tag of a read is
 * (generation << 32 | slot), so a completion that arrives after io_deinit
 * reused nothing. Write tags have bit 63 set.
 */
#include "engine/chat/io.h"

#include "engine/chat/core.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAG_WRITE   (1ull << 63)
#define IO_GEN_MASK 0x7fffffffu /* a read tag is gen << 32 | slot: gen stays off bit 63 */
#define NIL         UINT32_MAX

struct io_read_slot {
    io_read_cb cb;
    void *ctx;
    uint64_t arg;
    uint32_t gen;
    uint32_t next; /* free list or retry FIFO */
    bool used;
    struct stg_read q; /* kept only while waiting for a retry */
    struct buf bytes;
};

struct io_commit {
    io_write_cb cb;
    void *ctx;
};

/* A read past the slots: it waits for one, in call order. */
struct io_wait {
    struct io_wait *next, *prev; /* the queue, oldest first */
    struct io_wait *older;       /* the waiting reads of the same ctx, newest first */
    struct io_wait *newer;
    io_read_cb cb;
    void *ctx;
    uint64_t arg;
    size_t size;       /* of this allocation */
    struct stg_read q; /* key and upper point into bytes */
    uint8_t bytes[];
};

int io_init(struct io *io)
{
    memset(io, 0, sizeof(*io));
    io->free_head = NIL;
    io->retry_head = io->retry_tail = NIL;
    io->reads_max = IO_READS_MAX;
    io->wait_bytes_max = IO_WAIT_BYTES;
    map_init(&io->wait_by_ctx);
    return 0;
}

void io_set_reads_max(struct io *io, uint32_t n)
{
    io->reads_max = n < 1 ? 1 : n > IO_READS_MAX ? IO_READS_MAX : n;
}

void io_set_wait_bytes(struct io *io, uint64_t n)
{
    io->wait_bytes_max = n < IO_WAIT_BYTES ? n : IO_WAIT_BYTES;
}

/* Take w out of the queue and out of its ctx's list. */
static void wait_unlink(struct io *io, struct io_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        io->wait_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        io->wait_tail = w->prev;
    if (w->newer) {
        w->newer->older = w->older;
    } else {
        struct map_node *n = map_find(&io->wait_by_ctx, &w->ctx, sizeof(w->ctx));
        if (w->older)
            n->val = w->older; /* w was the newest: a node exists */
        else
            map_del(&io->wait_by_ctx, &w->ctx, sizeof(w->ctx));
    }
    if (w->older)
        w->older->newer = w->newer;
    io->nwait--;
    io->wait_bytes -= w->size;
}

static struct io_wait *wait_pop(struct io *io)
{
    struct io_wait *w = io->wait_head;
    wait_unlink(io, w);
    return w;
}

void io_deinit(struct io *io)
{
    for (uint32_t i = 0; i < io->nslots; i++)
        buf_deinit(&io->slots[i].bytes);
    free(io->slots);
    while (io->wait_head)
        free(wait_pop(io));
    map_deinit(&io->wait_by_ctx);
    stg_batch_free(io->staged);
    free(io->staged_cbs);
    for (uint32_t i = 0; i < IO_FLIGHT_MAX; i++)
        free(io->flight[i].cbs);
    memset(io, 0, sizeof(*io));
}

/* The slots a read may hold: the _wait ones leave a quarter free. */
static uint32_t slots_for(const struct io *io, bool wait)
{
    return wait ? io->reads_max - io->reads_max / 4 : io->reads_max;
}

static int slot_alloc(struct io *io, bool wait, uint32_t *out)
{
    if (io->used >= slots_for(io, wait))
        return -RP_EFULL;
    if (io->free_head != NIL) {
        *out = io->free_head;
        io->free_head = io->slots[*out].next;
        return 0;
    }
    if (io->nslots == io->cap) {
        uint32_t nc = io->cap ? io->cap * 2 : 64;
        struct io_read_slot *s = realloc(io->slots, nc * sizeof(*s));
        if (!s)
            return -ENOMEM;
        io->slots = s;
        io->cap = nc;
    }
    memset(&io->slots[io->nslots], 0, sizeof(io->slots[0]));
    buf_init(&io->slots[io->nslots].bytes);
    *out = io->nslots++;
    return 0;
}

static void slot_free(struct io *io, uint32_t i)
{
    struct io_read_slot *s = &io->slots[i];
    s->used = false;
    s->gen = (s->gen + 1) & IO_GEN_MASK; /* bit 63 of a tag marks a write */
    buf_reset(&s->bytes);
    s->next = io->free_head;
    io->free_head = i;
    io->used--;
}

/* Copy the read's bytes into the slot so it can be retried after the call. */
static int slot_keep(struct io_read_slot *s, const struct stg_read *q)
{
    buf_reset(&s->bytes);
    buf_append(&s->bytes, q->key, q->klen);
    if (q->upper)
        buf_append(&s->bytes, q->upper, q->ulen);
    if (buf_failed(&s->bytes))
        return -ENOMEM;
    s->q = *q;
    return 0;
}

static void retry_push(struct io *io, uint32_t i)
{
    io->slots[i].next = NIL;
    if (io->retry_tail == NIL)
        io->retry_head = i;
    else
        io->slots[io->retry_tail].next = i;
    io->retry_tail = i;
}

/* Queue a read behind the ones waiting for a slot. 0, -RP_EFULL (wait_bytes_max
 * reached) or -ENOMEM. */
static int wait_push(struct io *io, const struct stg_read *q, io_read_cb cb, void *ctx,
                     uint64_t arg)
{
    size_t ulen = q->upper ? q->ulen : 0;
    size_t size = sizeof(struct io_wait) + q->klen + ulen;
    if (io->wait_bytes + size > io->wait_bytes_max)
        return -RP_EFULL;
    struct io_wait *w = malloc(size);
    if (!w)
        return -ENOMEM;
    *w = (struct io_wait){.cb = cb, .ctx = ctx, .arg = arg, .q = *q, .size = size};
    struct map_node *n = map_find(&io->wait_by_ctx, &ctx, sizeof(ctx));
    if (n) {
        w->older = n->val;
        w->older->newer = w;
        n->val = w;
    } else if (!map_put(&io->wait_by_ctx, &ctx, sizeof(ctx), w)) {
        free(w);
        return -ENOMEM;
    }
    memcpy(w->bytes, q->key, q->klen);
    w->q.key = w->bytes;
    if (ulen) {
        memcpy(w->bytes + q->klen, q->upper, ulen);
        w->q.upper = w->bytes + q->klen;
    }
    w->prev = io->wait_tail;
    if (io->wait_tail)
        io->wait_tail->next = w;
    else
        io->wait_head = w;
    io->wait_tail = w;
    io->nwait++;
    io->wait_bytes += size;
    io->waited++;
    return 0;
}

/* Start the read q in slot i, which was just allocated. 0 or a negative code
 * (the slot is freed and cb never runs). */
static int slot_start(struct chat *c, uint32_t i, const struct stg_read *q, io_read_cb cb,
                      void *ctx, uint64_t arg)
{
    struct io *io = &c->io;
    struct io_read_slot *s = &io->slots[i];
    s->cb = cb;
    s->ctx = ctx;
    s->arg = arg;
    s->used = true;
    io->used++;
    uint64_t tag = (uint64_t)s->gen << 32 | i;
    /* Reads refused earlier go first, so that reads are submitted in call order. */
    int rc = io->retry_head == NIL ? c->env.read(c->env.rt, q, tag) : -RP_EFULL;
    if (rc == 0)
        return 0;
    if (rc == -RP_EFULL && slot_keep(s, q) == 0) {
        retry_push(io, i);
        return 0;
    }
    slot_free(io, i);
    return rc == -RP_EFULL ? -ENOMEM : rc;
}

static int read_opt(struct chat *c, const struct stg_read *q, bool wait, io_read_cb cb, void *ctx,
                    uint64_t arg)
{
    struct io *io = &c->io;
    uint32_t i;
    if (io->closed)
        return -RP_ECLOSED;
    if (wait && io->wait_head)
        return wait_push(io, q, cb, ctx, arg); /* behind the ones waiting */
    int rc = slot_alloc(io, wait, &i);
    if (rc == -RP_EFULL && wait)
        return wait_push(io, q, cb, ctx, arg);
    return rc < 0 ? rc : slot_start(c, i, q, cb, ctx, arg);
}

int io_read(struct chat *c, const struct stg_read *q, io_read_cb cb, void *ctx, uint64_t arg)
{
    return read_opt(c, q, false, cb, ctx, arg);
}

int io_read_wait(struct chat *c, const struct stg_read *q, io_read_cb cb, void *ctx, uint64_t arg)
{
    return read_opt(c, q, true, cb, ctx, arg);
}

/* Give the slots that came free to the reads waiting for one, in order. */
static void admit_waiting(struct chat *c)
{
    struct io *io = &c->io;
    uint32_t i;
    while (io->wait_head && slot_alloc(io, true, &i) == 0) {
        struct io_wait *w = wait_pop(io);
        int rc = slot_start(c, i, &w->q, w->cb, w->ctx, w->arg);
        io_read_cb cb = w->cb;
        void *ctx = w->ctx;
        uint64_t arg = w->arg;
        free(w);
        if (rc < 0)
            cb(c, ctx, arg, rc, NULL);
    }
}

uint32_t io_cancel_waiting(struct chat *c, const void *ctx)
{
    struct io *io = &c->io;
    struct io_wait *w = map_get(&io->wait_by_ctx, &ctx, sizeof(ctx));
    if (!w)
        return 0;
    while (w->older) /* the oldest: callbacks run in queue order */
        w = w->older;
    /* unlinked first, the callbacks after: the queue is whole while they run */
    struct io_wait *gone = NULL, **tail = &gone;
    uint32_t n = 0;
    for (struct io_wait *newer; w; w = newer) {
        newer = w->newer;
        wait_unlink(io, w);
        w->next = NULL;
        *tail = w;
        tail = &w->next;
        n++;
    }
    io->cancelled += n;
    while (gone) {
        w = gone;
        gone = w->next;
        io_read_cb cb = w->cb;
        void *cctx = w->ctx;
        uint64_t arg = w->arg;
        free(w);
        cb(c, cctx, arg, -ECANCELED, NULL);
    }
    return n;
}

bool io_reads_backlogged(const struct chat *c)
{
    return c->io.wait_head || c->io.retry_head != NIL;
}

static int get_opt(struct chat *c, enum stg_cf cf, const void *key, size_t klen, bool wait,
                   io_read_cb cb, void *ctx, uint64_t arg)
{
    struct stg_read q = {.kind = STG_GET, .cf = cf, .key = key, .klen = klen};
    return read_opt(c, &q, wait, cb, ctx, arg);
}

int io_get(struct chat *c, enum stg_cf cf, const void *key, size_t klen, io_read_cb cb, void *ctx,
           uint64_t arg)
{
    return get_opt(c, cf, key, klen, false, cb, ctx, arg);
}

int io_get_wait(struct chat *c, enum stg_cf cf, const void *key, size_t klen, io_read_cb cb,
                void *ctx, uint64_t arg)
{
    return get_opt(c, cf, key, klen, true, cb, ctx, arg);
}

static int scan_opt(struct chat *c, enum stg_cf cf, const void *prefix, size_t plen,
                    const void *lower, size_t llen, uint32_t limit, bool wait, io_read_cb cb,
                    void *ctx, uint64_t arg)
{
    struct buf up;
    buf_init(&up);
    buf_append(&up, prefix, plen);
    int rc = buf_failed(&up) ? -ENOMEM : stg_key_successor(&up);
    if (rc == 0) {
        struct stg_read q = {.kind = STG_SCAN,
                             .cf = cf,
                             .key = lower ? lower : prefix,
                             .klen = lower ? llen : plen,
                             .upper = up.data,
                             .ulen = up.len,
                             .limit = limit};
        rc = read_opt(c, &q, wait, cb, ctx, arg);
    }
    buf_deinit(&up);
    return rc;
}

int io_scan_prefix(struct chat *c, enum stg_cf cf, const void *prefix, size_t plen,
                   const void *lower, size_t llen, uint32_t limit, io_read_cb cb, void *ctx,
                   uint64_t arg)
{
    return scan_opt(c, cf, prefix, plen, lower, llen, limit, false, cb, ctx, arg);
}

int io_scan_prefix_wait(struct chat *c, enum stg_cf cf, const void *prefix, size_t plen,
                        const void *lower, size_t llen, uint32_t limit, io_read_cb cb, void *ctx,
                        uint64_t arg)
{
    return scan_opt(c, cf, prefix, plen, lower, llen, limit, true, cb, ctx, arg);
}

static void retry_reads(struct chat *c)
{
    struct io *io = &c->io;
    while (io->retry_head != NIL) {
        uint32_t i = io->retry_head;
        struct io_read_slot *s = &io->slots[i];
        struct stg_read q = s->q;
        q.key = s->bytes.data;
        q.upper = s->q.upper ? s->bytes.data + s->q.klen : NULL;
        int rc = c->env.read(c->env.rt, &q, (uint64_t)s->gen << 32 | i);
        if (rc == -RP_EFULL)
            return;
        io->retry_head = s->next;
        if (io->retry_head == NIL)
            io->retry_tail = NIL;
        if (rc < 0) {
            io_read_cb cb = s->cb;
            void *ctx = s->ctx;
            uint64_t arg = s->arg;
            slot_free(io, i);
            cb(c, ctx, arg, rc, NULL);
        }
    }
}

static uint32_t pipeline_of(const struct chat *c)
{
    uint32_t p = c->env.cfg->write_pipeline;
    if (p < 1 || p > IO_FLIGHT_MAX)
        p = p ? IO_FLIGHT_MAX : 1;
    return p;
}

bool io_can_stage(const struct chat *c)
{
    const struct io *io = &c->io;
    return !io->poisoned && !io->draining && io->nflight < pipeline_of(c);
}

void io_mark_dep(struct chat *c)
{
    c->io.staged_dep = true;
}

bool io_write_idle(const struct chat *c)
{
    return c->io.nflight == 0 && c->io.nstaged == 0;
}

bool io_read_idle(const struct chat *c)
{
    return c->io.used == 0 && c->io.wait_head == NULL && c->io.retry_head == NIL;
}

struct stg_batch *io_batch(struct chat *c)
{
    if (!c->io.staged)
        c->io.staged = stg_batch_new();
    return c->io.staged;
}

int io_on_commit(struct chat *c, io_write_cb cb, void *ctx)
{
    struct io *io = &c->io;
    if (io->closed)
        return -RP_ECLOSED;
    if (io->nstaged == io->cap_staged) {
        uint32_t nc = io->cap_staged ? io->cap_staged * 2 : 64;
        struct io_commit *n = realloc(io->staged_cbs, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        io->staged_cbs = n;
        io->cap_staged = nc;
    }
    io->staged_cbs[io->nstaged++] = (struct io_commit){cb, ctx};
    return 0;
}

void io_poison(struct chat *c)
{
    c->io.poisoned = true;
}

static void fail_staged(struct chat *c, int err)
{
    struct io *io = &c->io;
    uint32_t n = io->nstaged;
    struct io_commit *cbs = io->staged_cbs;
    io->staged_cbs = NULL;
    io->nstaged = io->cap_staged = 0;
    io->poisoned = false;
    io->staged_dep = false;
    stg_batch_free(io->staged);
    io->staged = NULL;
    for (uint32_t i = 0; i < n; i++)
        cbs[i].cb(c, cbs[i].ctx, err);
    free(cbs);
}

/* Take the oldest batch in flight off the ring and run its callbacks with err. */
static void complete_oldest(struct chat *c, int err)
{
    struct io *io = &c->io;
    struct io_flight *f = &io->flight[io->flight_head];
    io->flight_head = (io->flight_head + 1) % IO_FLIGHT_MAX;
    io->nflight--;
    uint32_t n = f->n;
    f->n = 0;
    /* the slot is not reused before the callbacks end: callbacks never submit */
    for (uint32_t i = 0; i < n; i++)
        f->cbs[i].cb(c, f->cbs[i].ctx, err);
}

void io_abort(struct chat *c)
{
    struct io *io = &c->io;
    io->closed = true;
    io->retry_head = io->retry_tail = NIL;
    bool any = true;
    /* a callback may release something whose own callback is still pending: repeat */
    while (any) {
        any = false;
        while (io->nflight) {
            complete_oldest(c, -RP_ECLOSED);
            any = true;
        }
        if (io->nstaged || io->staged) {
            any |= io->nstaged > 0;
            fail_staged(c, -RP_ECLOSED);
        }
        for (uint32_t i = 0; i < io->nslots; i++) {
            struct io_read_slot *s = &io->slots[i];
            if (!s->used)
                continue;
            io_read_cb cb = s->cb;
            void *ctx = s->ctx;
            uint64_t arg = s->arg;
            slot_free(io, i);
            cb(c, ctx, arg, -RP_ECLOSED, NULL);
            any = true;
        }
        while (io->wait_head) {
            struct io_wait *w = wait_pop(io);
            io_read_cb cb = w->cb;
            void *ctx = w->ctx;
            uint64_t arg = w->arg;
            free(w);
            cb(c, ctx, arg, -RP_ECLOSED, NULL);
            any = true;
        }
    }
}

void io_settle(struct chat *c)
{
    struct io *io = &c->io;
    if (io->nflight)
        return;
    io->draining = false;
    /* seqs are given back only when nothing after them is in flight */
    if (io->poisoned)
        fail_staged(c, -RP_ESTORAGE);
}

void io_flush(struct chat *c)
{
    struct io *io = &c->io;
    retry_reads(c);
    admit_waiting(c);
    io_settle(c);
    if (io->poisoned || io->draining || io->nflight >= pipeline_of(c) || !io->staged ||
        (stg_batch_count(io->staged) == 0 && io->nstaged == 0))
        return;
    if (stg_batch_count(io->staged) == 0 && io->nflight == 0) {
        /* Nothing to write (e.g. only dup replies) and nothing ahead: complete at once. */
        uint32_t n = io->nstaged;
        struct io_commit *cbs = io->staged_cbs;
        io->staged_cbs = NULL;
        io->nstaged = io->cap_staged = 0;
        io->staged_dep = false;
        for (uint32_t i = 0; i < n; i++)
            cbs[i].cb(c, cbs[i].ctx, 0);
        free(cbs);
        return;
    }
    uint64_t tag = TAG_WRITE | (io->write_tag + 1);
    /* Only work that took seqs depends on the batches ahead of it, and only
     * on those that took seqs too; one without seqs stays out of the chain. */
    bool dep_ahead = false;
    for (uint32_t i = 0; i < io->nflight; i++)
        dep_ahead |= io->flight[(io->flight_head + i) % IO_FLIGHT_MAX].dep;
    stg_batch_set_after_prev(io->staged, dep_ahead && io->staged_dep);
    stg_batch_set_indep(io->staged, !io->staged_dep);
    bool dep = io->staged_dep;
    if (c->env.write(c->env.rt, io->staged, tag) < 0)
        return; /* the queue is full: the batch stays staged and is retried next flush */
    io->write_tag++;
    io->staged = NULL;
    io->staged_dep = false;
    /* the slot's callback array becomes the staging one (memory reused) */
    struct io_flight *f = &io->flight[(io->flight_head + io->nflight) % IO_FLIGHT_MAX];
    struct io_commit *t = f->cbs;
    uint32_t tc = f->cap;
    f->cbs = io->staged_cbs;
    f->cap = io->cap_staged;
    f->n = io->nstaged;
    f->tag = tag;
    f->dep = dep;
    io->staged_cbs = t;
    io->cap_staged = tc;
    io->nstaged = 0;
    io->nflight++;
}

bool io_on_storage(struct chat *c, struct stg_done *d)
{
    struct io *io = &c->io;
    if (d->tag & TAG_WRITE) {
        if (!io->nflight || d->tag != io->flight[io->flight_head].tag) {
            /* storage completes a shard's writes in submit order */
            log_error("chat_write_tag_unexpected", "tag=%llu",
                      (unsigned long long)(d->tag & ~TAG_WRITE));
            return false;
        }
        /* After a failure, the batches still in flight took their seqs after
         * the failed ones, and storage fails them (after_prev); staged work
         * that took seqs fails once they are all back. */
        if (d->err < 0 && io->nflight > 1)
            io->draining = true;
        if (d->err < 0 && io->staged_dep)
            io->poisoned = true;
        complete_oldest(c, d->err);
        return true;
    }
    uint32_t i = (uint32_t)d->tag;
    uint32_t gen = (uint32_t)(d->tag >> 32);
    if (i >= io->nslots || !io->slots[i].used || io->slots[i].gen != gen) {
        stg_result_free(d->res);
        d->res = NULL;
        return false;
    }
    struct io_read_slot *s = &io->slots[i];
    io_read_cb cb = s->cb;
    void *ctx = s->ctx;
    uint64_t arg = s->arg;
    slot_free(io, i);
    struct stg_result *res = d->res;
    d->res = NULL;
    cb(c, ctx, arg, d->err, res);
    return true;
}
