/*
 * stg_batch: ops packed back to back in one growable buffer, each as
 *   u8 kind | u8 cf | u32 klen | u32 vlen | key | val
 * (lengths in host order: the buffer never leaves the process). One buffer
 * means one allocation to hand across threads and a cache-friendly walk
 * for the writer that copies the ops into a RocksDB write batch.
 */
#include "storage/batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { OP_PUT = 1, OP_DEL = 2 };

#define OP_HEAD_SIZE 10

struct stg_batch {
    struct buf ops;
    size_t count;
    size_t bytes;
    bool after_prev, indep;
    uint8_t fail; /* enum stg_fail */
};

struct stg_batch *stg_batch_new(void)
{
    struct stg_batch *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    buf_init(&b->ops);
    b->count = 0;
    b->bytes = 0;
    b->after_prev = b->indep = false;
    b->fail = STG_FAIL_NONE;
    return b;
}

void stg_batch_free(struct stg_batch *b)
{
    if (!b)
        return;
    buf_deinit(&b->ops);
    free(b);
}

void stg_batch_clear(struct stg_batch *b)
{
    buf_reset(&b->ops);
    b->count = 0;
    b->bytes = 0;
    b->after_prev = b->indep = false;
    b->fail = STG_FAIL_NONE;
}

static int append(struct stg_batch *b, uint8_t kind, enum stg_cf cf, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
    if ((unsigned)cf >= STG_CF__COUNT || klen == 0 || klen > UINT32_MAX || vlen > UINT32_MAX)
        return -EINVAL;
    size_t need = OP_HEAD_SIZE + klen + vlen;
    if (buf_reserve(&b->ops, need) < 0) {
        b->ops.oom = false; /* the batch is unchanged; later appends may still fit */
        return -ENOMEM;
    }
    unsigned char *p = b->ops.data + b->ops.len;
    uint32_t k32 = (uint32_t)klen, v32 = (uint32_t)vlen;
    p[0] = kind;
    p[1] = (uint8_t)cf;
    memcpy(p + 2, &k32, 4);
    memcpy(p + 6, &v32, 4);
    memcpy(p + OP_HEAD_SIZE, key, klen);
    if (vlen)
        memcpy(p + OP_HEAD_SIZE + klen, val, vlen);
    b->ops.len += need;
    b->count++;
    b->bytes += klen + vlen;
    return 0;
}

int stg_batch_put(struct stg_batch *b, enum stg_cf cf, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
    if (!val && vlen)
        return -EINVAL;
    return append(b, OP_PUT, cf, key, klen, val, vlen);
}

int stg_batch_del(struct stg_batch *b, enum stg_cf cf, const void *key, size_t klen)
{
    return append(b, OP_DEL, cf, key, klen, NULL, 0);
}

size_t stg_batch_count(const struct stg_batch *b)
{
    return b->count;
}

size_t stg_batch_bytes(const struct stg_batch *b)
{
    return b->bytes;
}

void stg_batch_set_after_prev(struct stg_batch *b, bool on)
{
    b->after_prev = on;
}

void stg_batch_set_indep(struct stg_batch *b, bool on)
{
    b->indep = on;
}

bool stg_batch_indep(const struct stg_batch *b)
{
    return b->indep;
}

bool stg_batch_after_prev(const struct stg_batch *b)
{
    return b->after_prev;
}

void stg_batch_inject_failure(struct stg_batch *b, enum stg_fail how)
{
    b->fail = (uint8_t)how;
}

enum stg_fail stg_batch_failure_injected(const struct stg_batch *b)
{
    return (enum stg_fail)b->fail;
}

bool stg_batch_next(const struct stg_batch *b, size_t *pos, struct stg_op *op)
{
    if (*pos + OP_HEAD_SIZE > b->ops.len)
        return false;
    const unsigned char *p = b->ops.data + *pos;
    uint32_t klen, vlen;
    memcpy(&klen, p + 2, 4);
    memcpy(&vlen, p + 6, 4);
    op->cf = (enum stg_cf)p[1];
    op->put = p[0] == OP_PUT;
    op->key = p + OP_HEAD_SIZE;
    op->klen = klen;
    op->val = op->put ? p + OP_HEAD_SIZE + klen : NULL;
    op->vlen = op->put ? vlen : 0;
    *pos += OP_HEAD_SIZE + (size_t)klen + vlen;
    return true;
}
