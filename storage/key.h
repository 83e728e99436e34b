/*
 * Key codec for the storage column families.
 *
 * Keys are binary and compare correctly with memcmp (RocksDB's default
 * comparator): every string is one length byte followed by its bytes, every
 * integer is big-endian. Because the length comes first, strings order by
 * (length, bytes); what matters is that all keys of one conversation (or user)
 * are contiguous and never interleave with another id's keys, even when one id
 * is a prefix of another, and that log keys of one conversation sort by seq.
 *
 *   log      conv | seq(be64)          -> entry (opaque)
 *   conv     conv                      -> conversation metadata (opaque)
 *   member   conv | user               -> membership (opaque)
 *   userconv user | conv               -> the user's conversation list (opaque)
 *   cursor   user | device | conv      -> ack cursor (opaque)
 *   dedup    h | conv | user | cmid    -> be64 ts_ms, then opaque bytes
 *   friend   user | peer               -> friendship (opaque)
 *   friend   0 | user | peer | ts      -> a side of user's still to be written
 *                                         (opaque); the 0 byte keeps these apart
 *                                         from every friendship key
 *
 * Dedup records are only ever read by point lookups, so their keys need no
 * order; they start with h, a big-endian 32-bit hash of the encoded
 * conv | user (STG_DEDUP_HASH_BYTES), so that the memtable can find where a
 * sender's next record goes from where its last one went (an insert hint
 * keyed by those bytes) instead of descending the skiplist from the top.
 *
 * Every id passed in must be 1..STG_ID_MAX bytes. All functions may be called
 * from any thread; they touch only their arguments.
 */
#ifndef RP_STORAGE_KEY_H
#define RP_STORAGE_KEY_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Longest id (user, group, conversation, device, cmid) the codec accepts. A
 * direct conversation's id holds two user ids ("d:<a>:<b>", up to 131
 * bytes). One less than its length byte can say, so that every prefix has a
 * successor (stg_key_successor): an id of 0xff bytes then ends below the
 * next length. */
#define STG_ID_MAX 254
/* Bytes of the sender hash in front of a dedup key. */
#define STG_DEDUP_HASH_BYTES 4

enum stg_cf {
    STG_CF_LOG,
    STG_CF_CONV,
    STG_CF_MEMBER,
    STG_CF_USERCONV,
    STG_CF_CURSOR,
    STG_CF_DEDUP,
    STG_CF_FRIEND,
    STG_CF_LEFT, /* user|conv -> 8-byte big-endian ms timestamp, then the record */
    STG_CF__COUNT
};

/* Records of STG_CF_LEFT older than this (by their leading timestamp) are
 * dropped when compaction meets them: 30 days. */
#define STG_LEFT_KEEP_MS (30ull * 24 * 3600 * 1000)

/* The column family's name in the database ("log", "conv", ...); NULL if out of range. */
const char *stg_cf_name(enum stg_cf cf);

/*
 * Encoders. Each one replaces the contents of k with the encoded key.
 * Returns 0, -EINVAL (an id empty or longer than STG_ID_MAX) or -ENOMEM.
 * k is borrowed for the call; the id pointers are borrowed for the call.
 */
int stg_key_log(struct buf *k, const char *conv, size_t convlen, uint64_t seq);
int stg_key_conv(struct buf *k, const char *conv, size_t convlen);
int stg_key_member(struct buf *k, const char *conv, size_t convlen, const char *user,
                   size_t userlen);
int stg_key_userconv(struct buf *k, const char *user, size_t userlen, const char *conv,
                     size_t convlen);
int stg_key_cursor(struct buf *k, const char *user, size_t userlen, const char *device,
                   size_t devlen, const char *conv, size_t convlen);
int stg_key_dedup(struct buf *k, const char *conv, size_t convlen, const char *user, size_t userlen,
                  const char *cmid, size_t cmidlen);
int stg_key_friend(struct buf *k, const char *user, size_t userlen, const char *peer,
                   size_t peerlen);

/* The encoded string alone: the common prefix of every key that starts with s. */
int stg_key_prefix(struct buf *k, const char *s, size_t len);

/*
 * Turn k into the smallest byte string greater than every key that starts
 * with k (the exclusive upper bound of a prefix scan): the last byte that is
 * not 0xff is incremented and everything after it dropped.
 * Returns 0, or -ERANGE when k is empty or all 0xff (no such bound exists).
 */
int stg_key_successor(struct buf *k);

/* A view into a key: valid as long as the key's bytes are. */
struct stg_view {
    const char *p;
    size_t len;
};

/*
 * Split a key into nstr length-prefixed strings followed, when seq is not
 * NULL, by one big-endian u64. The key must be consumed exactly.
 * Returns 0 or -EINVAL (truncated, an empty string, or bytes left over).
 * parts must hold nstr views; they point into key.
 */
int stg_key_split(const void *key, size_t klen, struct stg_view *parts, unsigned nstr,
                  uint64_t *seq);

/* A pending side of user's friendship with peer, from an op at ts; the
 * prefix form is the common prefix of every pending key of user (of every
 * pending key when user is NULL).
 * stg_key_split_friend_pending takes one apart: 0 or -EINVAL. */
int stg_key_friend_pending(struct buf *k, const char *user, size_t userlen, const char *peer,
                           size_t peerlen, uint64_t ts);
int stg_key_friend_pending_prefix(struct buf *k, const char *user, size_t userlen);
int stg_key_split_friend_pending(const void *key, size_t klen, struct stg_view *user,
                                 struct stg_view *peer, uint64_t *ts);

/* Shorthand for a log key: 0 or -EINVAL. */
int stg_key_split_log(const void *key, size_t klen, struct stg_view *conv, uint64_t *seq);

/* Length of the conversation prefix of a log key (1 + id length), or 0 if malformed. */
size_t stg_key_log_prefix_len(const void *key, size_t klen);

#endif
