/*
 * Encoders for server-to-client frames. A frame is built in a struct buf as a
 * 4-byte big-endian length prefix followed by one msgpack map, packed with a
 * msgpack_packer that writes through buf_msgpack_write. Several frames may be
 * appended to one buf one after the other; each encoder appends exactly one.
 *
 * Replies with many fields (sync, history, group results) are packed by their
 * caller between enc_begin and enc_end; stored entries are spliced in whole
 * with enc_raw, since msgpack values concatenate.
 *
 * Every encoder returns 0 or -ENOMEM (the buf failed; its content is then
 * undefined and it must be reset). buf failure is sticky, so a caller may
 * pack many values and check once in enc_end.
 *
 * Thread: pure functions on caller-owned buffers, any thread.
 */
#ifndef RP_PROTOCOL_ENC_H
#define RP_PROTOCOL_ENC_H

#include "base/buf.h"
#include "protocol/strv.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Starts a frame at b->len: appends a 4-byte placeholder prefix and sets up pk
 * to pack into b. The frame's start offset is the b->len seen before the call;
 * pass it to enc_end.
 */
void enc_begin(struct buf *b, msgpack_packer *pk);

/*
 * Fills in the prefix of the frame that began at offset start (the length of
 * everything appended after the prefix). 0; -ENOMEM if the buf failed;
 * -RP_ETOOLARGE if the payload is empty or over 4 GiB - 1 (a caller bug).
 */
int enc_end(struct buf *b, size_t start);

/*
 * Starts an ok reply: enc_begin, then a map header for `fields` more pairs
 * after {"op":"ok","id":id}, which it packs. Returns the frame's start for
 * enc_end. The caller packs exactly `fields` key/value pairs.
 */
size_t enc_ok_begin(struct buf *b, msgpack_packer *pk, uint32_t id, uint32_t fields);

/* Appends raw bytes, e.g. a stored entry map inside a frame being packed. */
int enc_raw(struct buf *b, const void *p, size_t n);

/* Packs a view as a msgpack str. */
void enc_pack_strv(msgpack_packer *pk, struct strv s);
/* Packs a NUL-terminated string as a msgpack str (key or value). */
/* Inline, so that the length of a literal is known when compiling. */
static inline void enc_pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

enum err_code {
    CODE_BAD_FRAME,
    CODE_BAD_REQUEST,
    CODE_UNAUTHORIZED,
    CODE_FORBIDDEN,
    CODE_NOT_FOUND,
    CODE_CONFLICT,
    CODE_TOO_LARGE,
    CODE_RATE_LIMITED,
    CODE_EXPIRED,
    CODE_UNAVAILABLE,
    CODE_INTERNAL,
    CODE__COUNT
};

/* The wire name of a code ("bad_frame", ...); "internal" when out of range. */
const char *code_name(enum err_code c);

/*
 * The reply code for a negative error: -RP_EFRAME bad_frame, -RP_EREQUEST and
 * -EINVAL bad_request, -RP_EAUTH unauthorized, -EPERM and -EACCES forbidden,
 * -ENOENT not_found, -EEXIST conflict, -RP_ETOOLARGE, -E2BIG and -EMSGSIZE
 * too_large, -EAGAIN rate_limited, -RP_EEXPIRED and -ETIME expired,
 * -RP_ESTORAGE, -RP_EFULL, -RP_ECLOSED and -EBUSY unavailable; anything else
 * internal.
 */
enum err_code code_from_err(int err);

/* {"op":"error","id":id (only if has_id),"code":C,"msg":msg}; msg NULL → the code name. */
int enc_error(struct buf *b, bool has_id, uint32_t id, enum err_code code, const char *msg);
/* {"op":"ok","id":id} */
int enc_ok(struct buf *b, uint32_t id);
/* {"op":"pong","id":id} */
int enc_pong(struct buf *b, uint32_t id);
/* {"op":"bye","reason":reason} */
int enc_bye(struct buf *b, const char *reason);
/* {"op":"synced"} */
int enc_synced(struct buf *b);
/* {"op":"ok","id","user","device","heartbeat_ms","server_time","max_frame","shard"}:
 * "shard" is the home shard index, an extension that clients ignore. */
int enc_hello_ok(struct buf *b, uint32_t id, struct strv user, struct strv device,
                 uint32_t heartbeat_ms, uint64_t server_time, uint32_t max_frame, unsigned shard);
/* {"op":"ok","id","conv","seq","ts"} plus "dup":true when dup. */
int enc_send_ok(struct buf *b, uint32_t id, struct strv conv, uint64_t seq, uint64_t ts, bool dup);

/*
 * A log entry. Its stored form IS the msgpack map of its `msg` push (PROTOCOL
 * §5), without prefix: {"op":"msg","conv","seq","from","dev","cmid","type",
 * "body","ts"} plus "data" (raw msgpack map bytes, for type "event") when
 * data_raw is not NULL, plus "target" (for type "recall") when has_target.
 * `dev` is empty for entries with no sending device (admin API, server events).
 * data_raw, when set, must hold exactly one msgpack map of data_len bytes
 * (it is copied as is); views are borrowed for the call.
 */
struct entry {
    struct strv conv;
    uint64_t seq;
    struct strv from, dev, cmid, type, body;
    bool body_bin;
    uint64_t ts;
    const uint8_t *data_raw;
    uint32_t data_len;
    bool has_target;
    uint64_t target;
};

/* Appends the entry's map only (no prefix): the stored form. */
int enc_entry(struct buf *b, const struct entry *e);

/* Appends a whole `msg` push frame (prefix + entry map). */
int enc_entry_frame(struct buf *b, const struct entry *e);

/* Appends a frame whose payload is the given, already encoded map (e.g. a stored entry). */
int enc_frame_raw(struct buf *b, const void *map, uint32_t len);

/*
 * Decodes a stored entry map p[0..len) into views into p. 0, or -RP_EFRAME
 * (not exactly one well-formed map, `op` not "msg", a required field missing
 * or of the wrong type, `data` not a map, `target` not an unsigned integer).
 * Unknown keys are ignored.
 */
int entry_decode(const uint8_t *p, uint32_t len, struct entry *out);

/* {"op":"read","conv","user","seq"} */
int enc_read_push(struct buf *b, struct strv conv, struct strv user, uint64_t seq);

/* {"op":"friend","event":event, <user_key>:user} plus "note" when has_note;
 * user_key is "from" for requests, "user" for added/removed. */
int enc_friend_push(struct buf *b, const char *event, struct strv user_key, struct strv user,
                    struct strv note, bool has_note);

#endif
