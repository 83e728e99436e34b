/*
 * Fuzz target for the storage key codec (storage/key.h). Byte 0 picks the mode:
 *
 * even: the rest is an arbitrary key. stg_key_split with 0-4 strings, with and
 * without a seq, stg_key_split_log, stg_key_log_prefix_len and
 * stg_key_successor must not crash, and whatever splits must encode back to
 * the very same bytes (split is the inverse of encode on its whole domain).
 *
 * odd: the rest is [len a][a][len b][b][len c][c][seq be64 x2], ids of 0-255
 * bytes. Every key kind is encoded from those parts: an encoder fails with
 * -EINVAL exactly when one of its ids is empty or over STG_ID_MAX; what it
 * encodes splits into the same parts. Order properties the storage layer
 * relies on: two log keys of one conversation compare like their seqs; every
 * key of a conversation starts with its prefix and sorts below the prefix's
 * successor; the prefix of one id never starts a key of another id.
 */
#include "base/buf.h"
#include "storage/key.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cursor {
    const uint8_t *p;
    size_t n;
};

/* Takes a length byte and up to that many bytes; short input gives short ids. */
static struct stg_view take_id(struct cursor *c)
{
    struct stg_view v = {"", 0};
    if (!c->n)
        return v;
    size_t len = c->p[0];
    c->p++;
    c->n--;
    if (len > c->n)
        len = c->n;
    v.p = (const char *)c->p;
    v.len = len;
    c->p += len;
    c->n -= len;
    return v;
}

static uint64_t take_u64(struct cursor *c)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | (c->n ? c->p[0] : 0);
        if (c->n) {
            c->p++;
            c->n--;
        }
    }
    return v;
}

static bool valid(struct stg_view v)
{
    return v.len >= 1 && v.len <= STG_ID_MAX;
}

static bool view_eq(struct stg_view a, struct stg_view b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static int cmp_bytes(const struct buf *a, const struct buf *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->data, b->data, n);
    if (r)
        return r;
    return a->len < b->len ? -1 : a->len > b->len;
}

static bool starts_with(const struct buf *k, const struct buf *prefix)
{
    return k->len >= prefix->len && memcmp(k->data, prefix->data, prefix->len) == 0;
}

/* Encodes parts[0..n) (and seq) back with the generic layout; k gets the bytes. */
static void reencode(struct buf *k, const struct stg_view *parts, unsigned n, const uint64_t *seq)
{
    buf_reset(k);
    for (unsigned i = 0; i < n; i++) {
        uint8_t l = (uint8_t)parts[i].len;
        buf_append(k, &l, 1);
        buf_append(k, parts[i].p, parts[i].len);
    }
    if (seq)
        buf_put_be64(k, *seq);
}

static void arbitrary(const uint8_t *p, size_t n)
{
    struct buf k;
    buf_init(&k);
    for (unsigned nstr = 0; nstr <= 4; nstr++) {
        for (int with_seq = 0; with_seq < 2; with_seq++) {
            struct stg_view parts[4];
            uint64_t seq;
            int r = stg_key_split(p, n, parts, nstr, with_seq ? &seq : NULL);
            if (r != 0 && r != -EINVAL)
                abort();
            if (r)
                continue;
            for (unsigned i = 0; i < nstr; i++)
                if (parts[i].len == 0 || (const uint8_t *)parts[i].p < p ||
                    (const uint8_t *)parts[i].p + parts[i].len > p + n)
                    abort();
            reencode(&k, parts, nstr, with_seq ? &seq : NULL);
            if (k.len != n || (n && memcmp(k.data, p, n) != 0))
                abort();
        }
    }
    struct stg_view conv;
    uint64_t seq;
    int r = stg_key_split_log(p, n, &conv, &seq);
    size_t pl = stg_key_log_prefix_len(p, n);
    if (r == 0 && pl != 1 + conv.len)
        abort();
    if (pl > n || (pl && (pl < 2 || p[0] != pl - 1)))
        abort();

    buf_reset(&k);
    buf_append(&k, p, n);
    r = stg_key_successor(&k);
    bool all_ff = true;
    for (size_t i = 0; i < n; i++)
        all_ff = all_ff && p[i] == 0xff;
    if (all_ff != (r == -ERANGE))
        abort();
    if (r == 0) {
        /* greater than the key, and not a prefix-extension of it */
        struct buf orig = {.data = (uint8_t *)p, .len = n};
        if (cmp_bytes(&k, &orig) <= 0 || starts_with(&k, &orig))
            abort();
    }
    buf_deinit(&k);
}

/* The encoder must fail exactly when an id is invalid, and split back when it succeeds. */
static void expect(int r, bool ok, const struct buf *k, const struct stg_view *want, unsigned n,
                   const uint64_t *seq)
{
    if (!ok) {
        if (r != -EINVAL)
            abort();
        return;
    }
    if (r != 0)
        abort();
    struct stg_view got[3];
    uint64_t s;
    if (stg_key_split(k->data, k->len, got, n, seq ? &s : NULL) != 0)
        abort();
    for (unsigned i = 0; i < n; i++)
        if (!view_eq(got[i], want[i]))
            abort();
    if (seq && s != *seq)
        abort();
}

static void from_parts(const uint8_t *p, size_t n)
{
    struct cursor c = {p, n};
    struct stg_view a = take_id(&c), b = take_id(&c), d = take_id(&c);
    uint64_t s1 = take_u64(&c), s2 = take_u64(&c);
    bool va = valid(a), vb = valid(b), vd = valid(d);
    struct buf k, k2, pre;
    buf_init(&k);
    buf_init(&k2);
    buf_init(&pre);

    struct stg_view one[1] = {a}, two[2] = {a, b}, three[3] = {a, b, d};
    expect(stg_key_log(&k, a.p, a.len, s1), va, &k, one, 1, &s1);
    if (va) {
        struct stg_view conv;
        uint64_t seq;
        if (stg_key_split_log(k.data, k.len, &conv, &seq) || !view_eq(conv, a) || seq != s1 ||
            stg_key_log_prefix_len(k.data, k.len) != 1 + a.len)
            abort();
        /* log keys of one conversation order by seq */
        if (stg_key_log(&k2, a.p, a.len, s2))
            abort();
        int c12 = cmp_bytes(&k, &k2);
        if ((s1 < s2) != (c12 < 0) || (s1 == s2) != (c12 == 0))
            abort();
        /* the conversation's prefix starts its keys and its successor bounds them */
        if (stg_key_prefix(&pre, a.p, a.len) || !starts_with(&k, &pre) || !starts_with(&k2, &pre))
            abort();
        if (stg_key_successor(&pre) || cmp_bytes(&k, &pre) >= 0 || cmp_bytes(&k2, &pre) >= 0)
            abort();
        /* another id's prefix never starts this conversation's keys */
        if (vb && !view_eq(a, b)) {
            if (stg_key_prefix(&pre, b.p, b.len) || starts_with(&k, &pre))
                abort();
        }
    }
    expect(stg_key_conv(&k, a.p, a.len), va, &k, one, 1, NULL);
    expect(stg_key_member(&k, a.p, a.len, b.p, b.len), va && vb, &k, two, 2, NULL);
    expect(stg_key_userconv(&k, a.p, a.len, b.p, b.len), va && vb, &k, two, 2, NULL);
    expect(stg_key_friend(&k, a.p, a.len, b.p, b.len), va && vb, &k, two, 2, NULL);
    expect(stg_key_cursor(&k, a.p, a.len, b.p, b.len, d.p, d.len), va && vb && vd, &k, three, 3,
           NULL);
    /* a dedup key is the sender hash, then the three strings; one sender's keys share it */
    int r = stg_key_dedup(&k, a.p, a.len, b.p, b.len, d.p, d.len);
    if (va && vb && vd) {
        struct stg_view got[3];
        if (r != 0 || k.len < STG_DEDUP_HASH_BYTES ||
            stg_key_split(k.data + STG_DEDUP_HASH_BYTES, k.len - STG_DEDUP_HASH_BYTES, got, 3,
                          NULL) != 0)
            abort();
        for (unsigned i = 0; i < 3; i++)
            if (!view_eq(got[i], three[i]))
                abort();
        if (stg_key_dedup(&k2, a.p, a.len, b.p, b.len, a.p, a.len) != 0 ||
            memcmp(k.data, k2.data, STG_DEDUP_HASH_BYTES) != 0)
            abort();
    } else if (r != -EINVAL) {
        abort();
    }
    expect(stg_key_prefix(&k, a.p, a.len), va, &k, one, 1, NULL);
    buf_deinit(&k);
    buf_deinit(&k2);
    buf_deinit(&pre);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* the key in its own exact-size allocation, so an over-read is caught */
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, data + 1, n);
    if (data[0] & 1)
        from_parts(p, n);
    else
        arbitrary(p, n);
    free(p);
    return 0;
}
