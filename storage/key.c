/*
 * Key codec. The layout of every key is documented in key.h; this file only
 * writes and reads it. The length byte in front of each string is what keeps
 * the keys of "ab" and "abc" apart: they differ in their first byte, so a
 * prefix scan over one id can never run into the keys of another.
 */
#include "storage/key.h"

#include "base/hash.h"

#include <errno.h>
#include <string.h>

static const char *const cf_names[STG_CF__COUNT] = {
    [STG_CF_LOG] = "log",           [STG_CF_CONV] = "conv",     [STG_CF_MEMBER] = "member",
    [STG_CF_USERCONV] = "userconv", [STG_CF_CURSOR] = "cursor", [STG_CF_DEDUP] = "dedup",
    [STG_CF_FRIEND] = "friend",     [STG_CF_LEFT] = "left",
};
_Static_assert(sizeof(cf_names) / sizeof(cf_names[0]) == STG_CF__COUNT, "cf name table");

const char *stg_cf_name(enum stg_cf cf)
{
    if ((unsigned)cf >= STG_CF__COUNT)
        return NULL;
    return cf_names[cf];
}

static bool id_valid(size_t len)
{
    return len >= 1 && len <= STG_ID_MAX;
}

static void put_str(struct buf *k, const char *s, size_t len)
{
    buf_put_u8(k, (uint8_t)len);
    buf_append(k, s, len);
}

/* Encode up to three strings and an optional seq into k, after validating all of them. */
/* Append the strings (and seq) to k. */
static int encode_more(struct buf *k, const struct stg_view *parts, unsigned n, const uint64_t *seq)
{
    for (unsigned i = 0; i < n; i++)
        if (!id_valid(parts[i].len))
            return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        put_str(k, parts[i].p, parts[i].len);
    if (seq)
        buf_put_be64(k, *seq);
    return buf_failed(k) ? -ENOMEM : 0;
}

static int encode(struct buf *k, const struct stg_view *parts, unsigned n, const uint64_t *seq)
{
    buf_reset(k);
    return encode_more(k, parts, n, seq);
}

int stg_key_log(struct buf *k, const char *conv, size_t convlen, uint64_t seq)
{
    struct stg_view p[1] = {{conv, convlen}};
    return encode(k, p, 1, &seq);
}

int stg_key_conv(struct buf *k, const char *conv, size_t convlen)
{
    struct stg_view p[1] = {{conv, convlen}};
    return encode(k, p, 1, NULL);
}

int stg_key_member(struct buf *k, const char *conv, size_t convlen, const char *user,
                   size_t userlen)
{
    struct stg_view p[2] = {{conv, convlen}, {user, userlen}};
    return encode(k, p, 2, NULL);
}

int stg_key_userconv(struct buf *k, const char *user, size_t userlen, const char *conv,
                     size_t convlen)
{
    struct stg_view p[2] = {{user, userlen}, {conv, convlen}};
    return encode(k, p, 2, NULL);
}

int stg_key_cursor(struct buf *k, const char *user, size_t userlen, const char *device,
                   size_t devlen, const char *conv, size_t convlen)
{
    struct stg_view p[3] = {{user, userlen}, {device, devlen}, {conv, convlen}};
    return encode(k, p, 3, NULL);
}

int stg_key_dedup(struct buf *k, const char *conv, size_t convlen, const char *user, size_t userlen,
                  const char *cmid, size_t cmidlen)
{
    struct stg_view p[3] = {{conv, convlen}, {user, userlen}, {cmid, cmidlen}};
    buf_reset(k);
    buf_put_be32(k, 0); /* the sender hash, filled in below */
    int rc = encode_more(k, p, 3, NULL);
    if (rc < 0)
        return rc;
    uint32_t h = (uint32_t)hash_bytes(k->data + STG_DEDUP_HASH_BYTES, 2 + convlen + userlen);
    uint8_t *d = k->data;
    d[0] = (uint8_t)(h >> 24);
    d[1] = (uint8_t)(h >> 16);
    d[2] = (uint8_t)(h >> 8);
    d[3] = (uint8_t)h;
    return 0;
}

int stg_key_friend(struct buf *k, const char *user, size_t userlen, const char *peer,
                   size_t peerlen)
{
    struct stg_view p[2] = {{user, userlen}, {peer, peerlen}};
    return encode(k, p, 2, NULL);
}

int stg_key_friend_pending(struct buf *k, const char *user, size_t userlen, const char *peer,
                           size_t peerlen, uint64_t ts)
{
    struct stg_view p[2] = {{user, userlen}, {peer, peerlen}};
    buf_reset(k);
    buf_put_u8(k, 0);
    return encode_more(k, p, 2, &ts);
}

int stg_key_friend_pending_prefix(struct buf *k, const char *user, size_t userlen)
{
    struct stg_view p[1] = {{user, userlen}};
    buf_reset(k);
    buf_put_u8(k, 0);
    if (!user)
        return buf_failed(k) ? -ENOMEM : 0;
    return encode_more(k, p, 1, NULL);
}

int stg_key_split_friend_pending(const void *key, size_t klen, struct stg_view *user,
                                 struct stg_view *peer, uint64_t *ts)
{
    const uint8_t *d = key;
    if (klen < 1 || d[0] != 0)
        return -EINVAL;
    struct stg_view p[2];
    int rc = stg_key_split(d + 1, klen - 1, p, 2, ts);
    if (rc == 0) {
        *user = p[0];
        *peer = p[1];
    }
    return rc;
}

int stg_key_prefix(struct buf *k, const char *s, size_t len)
{
    struct stg_view p[1] = {{s, len}};
    return encode(k, p, 1, NULL);
}

int stg_key_successor(struct buf *k)
{
    size_t n = k->len;
    while (n > 0 && k->data[n - 1] == 0xff)
        n--;
    if (n == 0)
        return -ERANGE;
    k->data[n - 1]++;
    k->len = n;
    return 0;
}

int stg_key_split(const void *key, size_t klen, struct stg_view *parts, unsigned nstr,
                  uint64_t *seq)
{
    const unsigned char *p = key;
    size_t off = 0;

    for (unsigned i = 0; i < nstr; i++) {
        if (off >= klen)
            return -EINVAL;
        size_t len = p[off++];
        if (len == 0 || len > klen - off)
            return -EINVAL;
        parts[i].p = (const char *)p + off;
        parts[i].len = len;
        off += len;
    }
    if (seq) {
        if (klen - off != 8)
            return -EINVAL;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | p[off + i];
        *seq = v;
        off += 8;
    }
    return off == klen ? 0 : -EINVAL;
}

int stg_key_split_log(const void *key, size_t klen, struct stg_view *conv, uint64_t *seq)
{
    return stg_key_split(key, klen, conv, 1, seq);
}

size_t stg_key_log_prefix_len(const void *key, size_t klen)
{
    const unsigned char *p = key;
    if (klen < 1 || p[0] == 0 || (size_t)p[0] + 1 > klen)
        return 0;
    return (size_t)p[0] + 1;
}
